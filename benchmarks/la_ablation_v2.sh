#!/usr/bin/env bash
# The LA ablation beyond distillation (cotrain_v3.sh had ssl+distill): prototype alignment
# (10 volumes) beside the foundation-model teacher (first 5 volumes: each embeds all 88
# slices first), each added to `ssl`, predicted without refinement, embeddings made before
# the run and outside its time (+precompute); sparse protocol, k = 5, --max-time 120, seed 1,
# one torch thread each; paired with `ssl` of cutmix_la_v1.sh (seed 1, same day).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_bench la "$OUT/la_sparse_ablation_v2_prototype.json" --seed 1 --max-time "$TIME" \
  --methods ssl+prototype-refine+precompute > "$OUT/la_ablation_v2_a.log" 2>&1 &
sparse_bench la "$OUT/la_sparse_ablation_v2_sam.json" --seed 1 --max-time "$TIME" \
  --max-volumes 5 --methods ssl+sam-refine+precompute > "$OUT/la_ablation_v2_b.log" 2>&1 &
wait
python benchmarks/tables.py la_sparse_cutmix_v1_ssl.json+la_sparse_ablation_v2_prototype.json+la_sparse_ablation_v2_sam.json
