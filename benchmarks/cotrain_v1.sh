#!/usr/bin/env bash
# Co-training benchmarks (foundation-model presets and sam-box) on the sparse protocol,
# --max-time 120: two streams side by side, one torch thread each, each running its list of
# methods on every data set in turn. Presets that load the foundation model predict with
# refine auto (their default). Compare with engine_v3.sh's unet/ssl of the same data set.
#   SSSEG_BENCH_SETS   data sets (default "acdc la")
#   SSSEG_STREAM_A/B   comma-separated methods of each stream
#   SSSEG_BENCH_TAG    file name tag (default cotrain_v1)
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}
SETS=${SSSEG_BENCH_SETS:-acdc la}
TAG=${SSSEG_BENCH_TAG:-cotrain_v1}
A=${SSSEG_STREAM_A:-sc-sam,full}
B=${SSSEG_STREAM_B:-uncol,sam-box}

source benchmarks/sparse_sets.sh

stream() {  # stream NAME METHODS
  for set in $SETS; do
    sparse_bench "$set" "$OUT/${set}_sparse_${TAG}_$1.json" --methods "$2" --max-time "$TIME"
  done
}
stream a "$A" > "$OUT/sparse_${TAG}_a.log" 2>&1 &
stream b "$B" > "$OUT/sparse_${TAG}_b.log" 2>&1 &
wait
for set in $SETS; do
  python benchmarks/tables.py "${set}_sparse_v3_unet.json+${set}_sparse_v3_ssl.json+${set}_sparse_${TAG}_a.json+${set}_sparse_${TAG}_b.json"
done
