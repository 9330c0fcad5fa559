#!/usr/bin/env bash
# sam_teacher_steps_v1.sh on LA: `ssl+sam+precompute` (the foundation-model teacher, its
# embeddings of all ~88 slices a volume made before the run, outside it) for a fixed 900
# steps, seed 0, so it pairs with ssl_parts_v1.sh's LA `ssl` (the same seed and steps). Two
# streams of 5 volumes, one torch thread each; results la_sparse_sam_steps_v1_{a,b}.json,
# logs sparse_sam_steps_la_v1_{a,b}.log. About 8 minutes a volume and stream on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-900}
source benchmarks/sparse_sets.sh

half() {  # half a|b FIRST
  sparse_bench la "$OUT/la_sparse_sam_steps_v1_$1.json" --methods ssl+sam+precompute \
    --max-iters "$ITERS" --seed 0 --first-volume "$2" --max-volumes 5 \
    > "$OUT/sparse_sam_steps_la_v1_$1.log" 2>&1
}
half a 0 &
half b 5 &
wait
python benchmarks/tables.py \
  la_sparse_parts_v1_ssl.json+la_sparse_sam_steps_v1_a.json+la_sparse_sam_steps_v1_b.json
