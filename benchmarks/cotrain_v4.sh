#!/usr/bin/env bash
# Co-training benchmarks v4: the foundation-teacher presets on ACDC's sparse protocol re-run
# after overlapping masks of the foundation model went to the smaller one (their rows in
# cotrain_v2.sh / cotrain_v3.sh came before). First runs, as there: every method starts every
# volume with an empty embedding cache and its budget covers every embedding it makes;
# --max-time 120, two streams side by side with one torch thread each, predicting with each
# preset's own refinement. The `unet` / `ssl` rows to compare with are cutmix_v3.sh's (the
# same protocol, seed and two-stream load).
#   stream a: sc-sam, then uncol
#   stream b: full, then ssl+sam
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}
source benchmarks/sparse_sets.sh

stream_a() {
  sparse_bench acdc "$OUT/acdc_sparse_cotrain_v4_a.json" --methods sc-sam,uncol \
    --max-time "$TIME" --seed 2
}
stream_b() {
  sparse_bench acdc "$OUT/acdc_sparse_cotrain_v4_b.json" --methods full,ssl+sam \
    --max-time "$TIME" --seed 2
}
stream_a > "$OUT/sparse_cotrain_v4_a.log" 2>&1 &
stream_b > "$OUT/sparse_cotrain_v4_b.log" 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_cutmix_v3_unet.json+acdc_sparse_cutmix_v3_ssl.json+acdc_sparse_cotrain_v4_a.json+acdc_sparse_cotrain_v4_b.json
