#!/usr/bin/env bash
# Feature distillation with the bank's embeddings reduced to 32 principal directions (the
# default distill_components) against the default `ssl`, on the sparse protocol of one data
# set (SSSEG_SET: acdc, the default, or la): `ssl` beside `ssl+distill-refine+precompute`
# (its 16 embeddings made before the run, outside its time; predicted without refinement),
# volume by volume at the same time, one torch thread each, --max-time 120
# (SSSEG_BENCH_TIME), seed SSSEG_SEED (0; another seed's files and logs end in _sN). With all
# 256 channels a distillation step cost twice a plain one on the CPU; this says whether the
# cheaper step teaches. SSSEG_EMBED=budget makes the embeddings inside the run's time
# instead (`ssl+distill-refine`, a first run from the command line; files end in _budget).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/sparse_sets.sh

ssl_beside distill_v2 distill ssl+distill-refine
