#!/usr/bin/env bash
# The confidence-curriculum preset (`curriculum`: whole-volume EMA pseudo-labels admitted by
# image-level confidence) on the sparse protocol, LA and ACDC side by side, --max-time 120,
# one torch thread per stream; the rows to compare with are engine_v3.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSSEG_SHARED_DATA:-../shared/data}
R=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
mkdir -p "$R"

source benchmarks/sparse_sets.sh

sparse_bench la $R/la_sparse_curriculum_v1.json --methods curriculum --max-time "$TIME" \
  > $R/sparse_curriculum_v1_la.log 2>&1 &
sparse_bench acdc $R/acdc_sparse_curriculum_v1.json --methods curriculum --max-time "$TIME" \
  > $R/sparse_curriculum_v1_acdc.log 2>&1 &
wait
python benchmarks/tables.py la_sparse_v3_unet.json+la_sparse_v3_ssl.json+la_sparse_curriculum_v1.json \
  acdc_sparse_v3_unet.json+acdc_sparse_v3_ssl.json+acdc_sparse_curriculum_v1.json
