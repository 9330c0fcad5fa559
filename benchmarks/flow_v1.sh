#!/usr/bin/env bash
# Slice propagation (teachers/flow.py) on the ACDC sparse protocol (k = 2), --max-time 120:
# two streams side by side, one torch thread each, volume by volume at the same time:
# `unet` beside `ssl+flow` (mean teacher + shape continuity + flow at flow_weight 3).
# The committed results (acdc_sparse_flow_v1_*.json) were made while the ssl preset itself
# held the flow teacher (commit d7dd812), so their method is labelled `ssl`; today that run
# is `ssl+flow`. Its LA half (previous ssl beside ssl with flow) was stopped once ACDC showed
# flow hurting.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_bench acdc "$OUT/acdc_sparse_flow_v1_unet.json" --methods unet --max-time "$TIME" \
  > "$OUT/sparse_flow_v1_a.log" 2>&1 &
sparse_bench acdc "$OUT/acdc_sparse_flow_v1_ssl.json" --methods ssl+flow --max-time "$TIME" \
  > "$OUT/sparse_flow_v1_b.log" 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_flow_v1_unet.json+acdc_sparse_flow_v1_ssl.json
