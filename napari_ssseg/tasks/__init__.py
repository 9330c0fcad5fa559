"""The tasks every front end runs: train, predict and save, prepare ahead (embeddings and a
pretrained student), and data-parallel training; the command line, the background worker,
the Ray driver, the benchmark and the demo all call these."""
