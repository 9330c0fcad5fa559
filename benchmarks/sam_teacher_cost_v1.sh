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

variant() {  # variant NAME CONFIG: one stream, the teacher with the settings of CONFIG
  sparse_bench acdc "$OUT/acdc_sparse_sam_cost_$1_v1.json" --methods ssl+sam-refine+precompute \
    --max-iters "$ITERS" --seed 0 --config "benchmarks/$2" > "$OUT/sparse_sam_cost_$1_v1.log" 2>&1
}
variant r100 sam_refresh_100.json &
variant frozen sam_no_lora.json &
wait
for name in r100 frozen; do
  python benchmarks/tables.py "acdc_sparse_refine4_off.json+acdc_sparse_sam_cost_${name}_v1.json"
done
