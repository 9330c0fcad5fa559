#!/usr/bin/env bash
# Co-training benchmarks v2 (each method on each volume with an empty embedding cache of its
# own; the time budget covers the feature bank's embeddings): the sparse protocol,
# --max-time 120, two streams side by side with one torch thread each.
#   stream a: ACDC uncol, full; then ACDC uncol+cap (encoder time capped at 30 % of the budget)
#             and ssl+prototype-refine+precompute
#   stream b: LA uncol, sam-box; then ACDC ssl+sam-refine+precompute, ssl+distill-refine+precompute
# The ablation rows add one part to ssl, predict without refinement (-refine) and have their
# embeddings made before the run, outside its time (+precompute): what the part teaches,
# apart from what its encoder costs (reported as untimed_seconds in the JSON).
# The unet / ssl rows to compare with are engine_v3.sh's; refinement alone: refine_v1.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
mkdir -p "$R"

source benchmarks/sparse_sets.sh

stream_a() {
  sparse_bench acdc $R/acdc_sparse_cotrain_v2_a.json --methods uncol,full --max-time "$TIME"
  sparse_bench acdc $R/acdc_sparse_ablation_v1_a.json \
    --methods uncol+cap,ssl+prototype-refine+precompute --max-time "$TIME"
}
stream_b() {
  sparse_bench la $R/la_sparse_cotrain_v2_b.json --methods uncol,sam-box --max-time "$TIME"
  sparse_bench acdc $R/acdc_sparse_ablation_v1_b.json \
    --methods ssl+sam-refine+precompute,ssl+distill-refine+precompute --max-time "$TIME"
}
stream_a > $R/sparse_cotrain_v2_a.log 2>&1 &
stream_b > $R/sparse_cotrain_v2_b.log 2>&1 &
wait
python benchmarks/tables.py \
  acdc_sparse_v3_unet.json+acdc_sparse_v3_ssl.json+acdc_sparse_cotrain_v2_a.json \
  la_sparse_v3_unet.json+la_sparse_v3_ssl.json+la_sparse_cotrain_v2_b.json \
  acdc_sparse_v3_unet.json+acdc_sparse_v3_ssl.json+acdc_sparse_ablation_v1_a.json+acdc_sparse_ablation_v1_b.json
