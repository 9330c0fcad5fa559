#!/usr/bin/env bash
# Engine v3 benchmarks: the sparse protocol on LA (k = 5) and ACDC (k = 2), --max-time 120.
# Two streams side by side, one torch thread each: one runs interp and unet, the other ssl,
# volume by volume at the same time, so whatever else loads the machine loads both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

SETS=${SSSEG_BENCH_SETS:-la acdc}  # which data sets to run, e.g. SSSEG_BENCH_SETS=acdc

source benchmarks/sparse_sets.sh

stream() {  # stream TAG METHODS
  for set in $SETS; do
    sparse_bench "$set" "$OUT/${set}_sparse_v3_$1.json" --methods "$2" --max-time "$TIME"
  done
}
stream unet interp,unet > "$OUT/sparse_v3_unet.log" 2>&1 &
stream ssl ssl > "$OUT/sparse_v3_ssl.log" 2>&1 &
wait
python benchmarks/tables.py la_sparse_v3_unet.json+la_sparse_v3_ssl.json \
  acdc_sparse_v3_unet.json+acdc_sparse_v3_ssl.json
