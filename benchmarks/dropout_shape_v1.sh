#!/usr/bin/env bash
# Whole-feature-map dropout against element-wise dropout, the default `ssl` either way, on
# the sparse protocol of one data set (SSSEG_SET: acdc, the default, or la): `ssl` beside
# `ssl` with the settings file {"dropout_shape": "channel"}, volume by volume at the same
# time, one torch thread each, --max-time 120 (SSSEG_BENCH_TIME), seed 0. Channel dropout
# draws one random number per feature map instead of one per activation: more steps in
# the same time on a CPU; this says whether the model is as good.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}
SET=${SSSEG_SET:-acdc}

source benchmarks/sparse_sets.sh

SETTINGS="$OUT/dropout_shape_channel.json"
echo '{"dropout_shape": "channel"}' > "$SETTINGS"
sparse_bench "$SET" "$OUT/${SET}_sparse_dropout_v1_element.json" --methods ssl \
  --max-time "$TIME" > "$OUT/${SET}_dropout_v1_a.log" 2>&1 &
sparse_bench "$SET" "$OUT/${SET}_sparse_dropout_v1_channel.json" --methods ssl \
  --max-time "$TIME" --config "$SETTINGS" > "$OUT/${SET}_dropout_v1_b.log" 2>&1 &
wait
python benchmarks/tables.py "${SET}_sparse_dropout_v1_element.json+${SET}_sparse_dropout_v1_channel.json"
