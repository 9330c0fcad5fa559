#!/usr/bin/env bash
# A second, independent pair for CutMix on ACDC (cutmix_v1.sh's sparse pair had ssl+cutmix
# 85.0 against unet 84.6, ahead on 7 of 10): the same sparse protocol (k = 2, --max-time
# 120, `unet` beside `ssl+cutmix`, volume by volume at the same time, one torch thread
# each), with seed 1 instead of 0.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_pair acdc cutmix_v2 acdc_sparse_cutmix_v2_unet.json unet \
  acdc_sparse_cutmix_v2_ssl.json ssl+cutmix --max-time "$TIME" --seed 1
