#!/usr/bin/env bash
# The confidence-curriculum preset (`curriculum`: whole-volume EMA pseudo-labels admitted by
# image-level confidence) on the sparse protocol, then `unet` again in the same conditions
# (engine_v3's unet rows ran on a busier machine and made about 30 % fewer steps): two
# streams, LA and ACDC side by side, --max-time 120, one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
mkdir -p "$R"

source benchmarks/sparse_sets.sh

stream() {  # stream la|acdc
  sparse_bench "$1" "$R/$1_sparse_curriculum_v1.json" --methods curriculum --max-time "$TIME" \
    > "$R/sparse_curriculum_v1_$1.log" 2>&1
  sparse_bench "$1" "$R/$1_sparse_unet_v4.json" --methods unet --max-time "$TIME" \
    > "$R/sparse_unet_v4_$1.log" 2>&1
}
stream la &
stream acdc &
wait
# unet from this run; ssl is engine_v3's (the busier machine).
python benchmarks/tables.py \
  la_sparse_unet_v4.json+la_sparse_v3_ssl.json+la_sparse_curriculum_v1.json \
  acdc_sparse_unet_v4.json+acdc_sparse_v3_ssl.json+acdc_sparse_curriculum_v1.json
