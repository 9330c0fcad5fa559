#!/usr/bin/env bash
# Refined inference on its own: the same ssl model (fixed --max-iters, one thread, same seed:
# the same weights in both streams) predicted without and with the foundation model's refined
# masks (refine auto), on the sparse protocol. Two streams side by side, one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-700}
SETS=${SSSEG_BENCH_SETS:-acdc la}
NAME=${SSSEG_REFINE_NAME:-refine}  # result files <set>_sparse_<NAME>_{off,auto}.json

source benchmarks/sparse_sets.sh

stream() {  # stream TAG METHODS
  for set in $SETS; do
    sparse_bench "$set" "$OUT/${set}_sparse_${NAME}_$1.json" --methods "$2" --max-iters "$ITERS"
  done
}
stream off ssl-refine > "$OUT/sparse_${NAME}_off.log" 2>&1 &
stream auto ssl+refine > "$OUT/sparse_${NAME}_auto.log" 2>&1 &
wait
for set in $SETS; do
  python benchmarks/tables.py "${set}_sparse_${NAME}_off.json+${set}_sparse_${NAME}_auto.json"
done
