#!/usr/bin/env bash
# Co-training benchmarks v3: the presets not yet run on the sparse protocol with a cache of
# their own (first runs: every method starts every volume with an empty embedding cache and
# its budget covers every embedding it makes), and the distillation ablation on LA;
# --max-time 120, two streams side by side with one torch thread each.
#   stream a: LA sc-sam; then LA ssl+distill-refine+precompute (the part that added on ACDC,
#             its 16 embeddings made before the run, outside its time)
#   stream b: LA full; then ACDC sc-sam
# The unet / ssl rows to compare with are engine_v3.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
mkdir -p "$R"

source benchmarks/sparse_sets.sh

stream_a() {
  sparse_bench la $R/la_sparse_cotrain_v3_a.json --methods sc-sam --max-time "$TIME"
  sparse_bench la $R/la_sparse_ablation_v1_a.json \
    --methods ssl+distill-refine+precompute --max-time "$TIME"
}
stream_b() {
  sparse_bench la $R/la_sparse_cotrain_v3_b.json --methods full --max-time "$TIME"
  sparse_bench acdc $R/acdc_sparse_cotrain_v3_b.json --methods sc-sam --max-time "$TIME"
}
stream_a > $R/sparse_cotrain_v3_a.log 2>&1 &
stream_b > $R/sparse_cotrain_v3_b.log 2>&1 &
wait
python benchmarks/cotrain_tables.py
