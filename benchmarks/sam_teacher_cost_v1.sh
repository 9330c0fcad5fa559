#!/usr/bin/env bash
# What the foundation-model teacher's refresh costs buy, on ACDC at equal steps (900, seed 0,
# embeddings made before the run, predicted unrefined; pairs with refine_v4.sh's unrefined
# `ssl` and sam_teacher_steps_v1.sh's teacher at its defaults, refresh every 25 steps with
# LoRA tuning). A profile of one volume gave 7.9 s a refresh on one thread: 4.0 s tuning the
# decoder's adapters (2 steps), 3.8 s decoding the targets of 8 slices. Two streams side by
# side: refresh every 100 steps (sam_refresh_100.json: a quarter of the refreshes) and no
# adapters (sam_no_lora.json: the frozen decoder). Results acdc_sparse_sam_cost_{r100,frozen}_v1.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-900}
source benchmarks/sparse_sets.sh

sparse_bench acdc "$OUT/acdc_sparse_sam_cost_r100_v1.json" --methods ssl+sam-refine+precompute \
  --max-iters "$ITERS" --seed 0 --config benchmarks/sam_refresh_100.json \
  > "$OUT/sparse_sam_cost_r100_v1.log" 2>&1 &
sparse_bench acdc "$OUT/acdc_sparse_sam_cost_frozen_v1.json" --methods ssl+sam-refine+precompute \
  --max-iters "$ITERS" --seed 0 --config benchmarks/sam_no_lora.json \
  > "$OUT/sparse_sam_cost_frozen_v1.log" 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_refine4_off.json+acdc_sparse_sam_cost_r100_v1.json
python benchmarks/tables.py acdc_sparse_refine4_off.json+acdc_sparse_sam_cost_frozen_v1.json
