#!/usr/bin/env bash
# A second, independent pair for CutMix on ACDC (cutmix_v1.sh's sparse pair had ssl+cutmix
# 85.0 against unet 84.6, ahead on 7 of 10): the same sparse protocol (k = 2, --max-time
# 120, `unet` beside `ssl+cutmix`, volume by volume at the same time, one torch thread
# each), with seed 1 instead of 0.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_bench acdc "$OUT/acdc_sparse_cutmix_v2_unet.json" --methods unet --max-time "$TIME" \
  --seed 1 > "$OUT/cutmix_v2_a.log" 2>&1 &
sparse_bench acdc "$OUT/acdc_sparse_cutmix_v2_ssl.json" --methods ssl+cutmix --max-time "$TIME" \
  --seed 1 > "$OUT/cutmix_v2_b.log" 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_cutmix_v2_unet.json+acdc_sparse_cutmix_v2_ssl.json
