#!/usr/bin/env bash
# CutMix on top of ssl, after it led on 3 labelled patients (cases_cutmix_v1.sh): the ACDC
# sparse protocol (k = 2, --max-time 120) with `unet` beside `ssl+cutmix`, volume by volume
# at the same time, one torch thread each; then the 7-patient cases protocol for
# `ssl+cutmix` (same settings as cases_cotrain_v1.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

{
  sparse_bench acdc "$OUT/acdc_sparse_cutmix_v1_unet.json" --methods unet --max-time "$TIME"
  cases_bench 7 "$OUT/acdc_cases7_cutmix.json" --methods ssl+cutmix --max-time 300
} > "$OUT/cutmix_v1_a.log" 2>&1 &
sparse_bench acdc "$OUT/acdc_sparse_cutmix_v1_ssl.json" --methods ssl+cutmix --max-time "$TIME" \
  > "$OUT/cutmix_v1_b.log" 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_cutmix_v1_unet.json+acdc_sparse_cutmix_v1_ssl.json \
  acdc_cases7_cutmix.json
