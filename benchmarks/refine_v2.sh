#!/usr/bin/env bash
# refine_v1.sh again after refine auto's trust rule (refine_trust 0.93: a class takes the
# refined masks when they reach that Dice on the annotated slices). Refined inference on its
# own: the same ssl model (fixed --max-iters, one thread, same seed:
# the same weights in both streams) predicted without and with the foundation model's refined
# masks (refine auto), on the sparse protocol. Two streams side by side, one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-900}
SETS=${SSSEG_BENCH_SETS:-acdc la}

source benchmarks/sparse_sets.sh

stream() {  # stream TAG METHODS
  for set in $SETS; do
    sparse_bench "$set" "$OUT/${set}_sparse_refine2_$1.json" --methods "$2" --max-iters "$ITERS"
  done
}
stream off ssl > "$OUT/sparse_refine2_off.log" 2>&1 &
stream auto ssl+refine > "$OUT/sparse_refine2_auto.log" 2>&1 &
wait
for set in $SETS; do
  python benchmarks/tables.py "${set}_sparse_refine2_off.json+${set}_sparse_refine2_auto.json"
done
