#!/usr/bin/env bash
# The foundation-model teacher on ACDC at equal steps, after overlapping masks went to the
# smaller one: `ssl+sam-refine+precompute` (its embeddings made before the run, outside it)
# for a fixed 900 steps, seed 0, predicted unrefined, so its Dice does not depend on the load
# and pairs with refine_v4.sh's unrefined `ssl` (the same seed and steps); result
# acdc_sparse_sam_steps_v1.json, log sparse_sam_steps_v1.log. About 30 minutes alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-900}
source benchmarks/sparse_sets.sh

sparse_bench acdc "$OUT/acdc_sparse_sam_steps_v1.json" --methods ssl+sam-refine+precompute \
  --max-iters "$ITERS" --seed 0 > "$OUT/sparse_sam_steps_v1.log" 2>&1
python benchmarks/tables.py acdc_sparse_refine4_off.json+acdc_sparse_sam_steps_v1.json
