#!/usr/bin/env bash
# The default's own parts turned off one at a time: `ssl` (mean teacher + shape continuity;
# CutMix with two classes or more) against `ssl-mean` and `ssl-shape`, on both sparse sets,
# predicted without refinement (so the change is what the part teaches). A fixed 900 steps
# (--max-iters, seed 0), so the Dice does not depend on what the other stream runs. ACDC's
# `ssl` is refine_v4.sh's unrefined stream (acdc_sparse_refine4_off.json, the same seed and
# steps: the same weights; the first run of this script repeated its first 5 volumes and got
# the same Dice to 5 decimals, acdc_sparse_parts_v1_ssl-refine.json). Two streams side by
# side, one torch thread each; results <set>_sparse_parts_v1_<method>.json, logs
# sparse_parts_v1_a/b.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-900}
source benchmarks/sparse_sets.sh

run() {  # run la|acdc METHOD
  sparse_bench "$1" "$OUT/$1_sparse_parts_v1_$2.json" --methods "$2" --max-iters "$ITERS" --seed 0
}
stream_a() { run acdc ssl-mean-refine; run la ssl-shape; }
stream_b() { run la ssl; run la ssl-mean; run acdc ssl-shape-refine; }
stream_a > "$OUT/sparse_parts_v1_a.log" 2>&1 &
stream_b > "$OUT/sparse_parts_v1_b.log" 2>&1 &
wait
python benchmarks/tables.py \
  acdc_sparse_refine4_off.json+acdc_sparse_parts_v1_ssl-mean-refine.json+acdc_sparse_parts_v1_ssl-shape-refine.json \
  la_sparse_parts_v1_ssl.json+la_sparse_parts_v1_ssl-mean.json+la_sparse_parts_v1_ssl-shape.json
