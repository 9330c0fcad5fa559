#!/usr/bin/env bash
# Engine v2 benchmarks (teachers + 3-D connectivity filter at inference): sparse protocol on
# LA (k = 5) and ACDC (k = 2), two streams side by side with one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSSEG_SHARED_DATA:-../shared/data}
OUT=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
mkdir -p "$OUT"

(
  napari-ssseg bench --data "$DATA/LA" --split train --protocol sparse --k 5 --max-volumes 10 \
    --methods interp,unet,shape,ssl --max-time "$TIME" --threads 1 --json "$OUT/la_sparse_v2.json"
) > "$OUT/la_sparse_v2.log" 2>&1 &
(
  napari-ssseg bench --data "$DATA/ACDC" --split val --protocol sparse --k 2 --max-volumes 10 \
    --methods interp,sam-box,unet,shape,ssl --max-time "$TIME" --threads 1 \
    --json "$OUT/acdc_sparse_v2.json"
) > "$OUT/acdc_sparse_v2.log" 2>&1 &
wait
python benchmarks/tables.py la_sparse_v2.json acdc_sparse_v2.json
