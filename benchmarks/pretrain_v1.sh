#!/usr/bin/env bash
# Feature distillation before the labels (pretrain_steps 200, the bench part `+pretrain`):
# the student's decoder features pulled toward LiteMedSAM's embeddings of 16 slices for 200
# steps of batch_size slices, inside the run's time, then `ssl` as usual. `ssl` beside
# `ssl+pretrain-refine+precompute` (the embeddings made before the run, outside its time, as
# the dock makes them while the user labels; predicted without refinement), volume by volume
# at the same time, one torch thread each, on the sparse protocol of one data set
# (SSSEG_SET: acdc, the default, or la), --max-time 120 (SSSEG_BENCH_TIME), seed SSSEG_SEED
# (0; another seed's files and logs end in _sN). SSSEG_EMBED=budget makes the embeddings
# inside the run's time instead (`ssl+pretrain-refine`, a first run from the command line;
# files end in _budget).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/sparse_sets.sh

ssl_beside pretrain_v1 pretrain ssl+pretrain-refine
