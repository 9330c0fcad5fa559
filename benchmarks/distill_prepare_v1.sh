#!/usr/bin/env bash
# Both feature parts at once, as the dock can run them: the student pretrained by
# distillation before the run (`+prepare`: 16 embeddings and 200 steps, made before the run,
# outside its time, as while the user labels) and distillation kept on during the run
# (`+distill`). `ssl` beside `ssl+distill+prepare-refine` (predicted without refinement),
# volume by volume at the same time, one torch thread each, on the sparse protocol of one
# data set (SSSEG_SET: acdc, the default, or la), --max-time 120 (SSSEG_BENCH_TIME), seed
# SSSEG_SEED (0; another seed's files and logs end in _sN).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/sparse_sets.sh

ssl_beside distill_prepare_v1 distill_prepare ssl+distill+prepare-refine
