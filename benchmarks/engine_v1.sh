#!/usr/bin/env bash
# Engine v1 benchmarks: sparse protocol on LA (k = 5) and ACDC (k = 2), cases protocol on ACDC.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSSEG_SHARED_DATA:-../shared/data}
OUT=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
CASES_TIME=${SSSEG_CASES_TIME:-600}
mkdir -p "$OUT"

(
  napari-ssseg bench --data "$DATA/LA" --split train --protocol sparse --k 5 --max-volumes 10 \
    --methods interp,interp-nn,unet,ssl --max-time "$TIME" --threads 1 --json "$OUT/la_sparse.json"
) > "$OUT/la_sparse.log" 2>&1 &
(
  napari-ssseg bench --data "$DATA/ACDC" --split val --protocol sparse --k 2 --max-volumes 10 \
    --methods interp,interp-nn,unet,ssl --max-time "$TIME" --threads 1 --json "$OUT/acdc_sparse.json"
  napari-ssseg bench --data "$DATA/ACDC" --split val --protocol cases --labeled-cases 7 \
    --train-split train --methods unet,ssl --max-time "$CASES_TIME" --threads 1 \
    --json "$OUT/acdc_cases7.json"
) > "$OUT/acdc.log" 2>&1 &
wait
python benchmarks/tables.py
