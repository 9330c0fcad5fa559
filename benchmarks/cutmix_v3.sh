#!/usr/bin/env bash
# The default `ssl` once it mixes slices by CutMix on multi-class projects (ACDC: three
# classes), against `unet`: the ACDC sparse protocol (k = 2, --max-time 120), volume by
# volume at the same time, one torch thread each, seed 2 (cutmix_v1.sh: seed 0,
# cutmix_v2.sh: seed 1, both as `ssl+cutmix`).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_pair acdc cutmix_v3 acdc_sparse_cutmix_v3_unet.json unet \
  acdc_sparse_cutmix_v3_ssl.json ssl --max-time "$TIME" --seed 2
