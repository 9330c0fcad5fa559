#!/usr/bin/env bash
# Pilot of the strong student view (FixMatch-style, +strong) and of hard pseudo-labels at
# full weight for the mean teacher (+hard: CE toward its argmax, weight 1 instead of MSE at
# 0.1), on the first 4 ACDC val volumes of the sparse protocol (k = 2), each run bounded by
# 700 steps instead of a time budget so that the two streams' load does not change what
# each method learns.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSSEG_SHARED_DATA:-../shared/data}
R=benchmarks/results
pilot() {  # pilot TAG METHODS
  napari-ssseg bench --data "$DATA/ACDC" --split val --protocol sparse --k 2 --max-volumes 4 \
    --threads 1 --max-iters 700 --methods "$2" --json "$R/acdc_sparse_strong_pilot_$1.json"
}
pilot a unet,ssl+hard > $R/sparse_strong_pilot_a.log 2>&1 &
pilot b ssl+hard+strong,ssl+strong > $R/sparse_strong_pilot_b.log 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_strong_pilot_a.json+acdc_sparse_strong_pilot_b.json
