#!/usr/bin/env bash
# Distillation before the labels, made before the run as the dock makes it while the user
# labels (`+prepare`: the 16 embeddings and 200 steps of feature distillation before the
# run, outside its time; the run starts from that student and spends its whole budget on
# labelled steps). `ssl` beside `ssl+prepare-refine` (predicted without refinement), volume by
# volume at the same time, one torch thread each, on the sparse protocol of one data set
# (SSSEG_SET: acdc, the default, or la), --max-time 120 (SSSEG_BENCH_TIME), seed SSSEG_SEED
# (0; another seed's files and logs end in _sN). The untimed seconds are in each volume's
# JSON (`untimed_seconds`).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/sparse_sets.sh

ssl_beside prepare_v1 prepare ssl+prepare-refine
