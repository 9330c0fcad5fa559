#!/usr/bin/env bash
# Engine v4: ssl with slice propagation (mean teacher + shape continuity + optical-flow
# propagation, teachers/flow.py) on the sparse protocol, --max-time 120. Two streams side by
# side, one torch thread each, volume by volume at the same time: on ACDC (k = 2) `unet`
# beside `ssl`; then on LA (k = 5) the previous ssl (`ssl-flow`) beside `ssl`.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSSEG_SHARED_DATA:-../shared/data}
OUT=benchmarks/results
TIME=${SSSEG_BENCH_TIME:-120}
mkdir -p "$OUT"

source benchmarks/sparse_sets.sh

{
  sparse_bench acdc "$OUT/acdc_sparse_v4_unet.json" --methods unet --max-time "$TIME"
  sparse_bench la "$OUT/la_sparse_v4_ssl-flow.json" --methods ssl-flow --max-time "$TIME"
} > "$OUT/sparse_v4_a.log" 2>&1 &
{
  sparse_bench acdc "$OUT/acdc_sparse_v4_ssl.json" --methods ssl --max-time "$TIME"
  sparse_bench la "$OUT/la_sparse_v4_ssl.json" --methods ssl --max-time "$TIME"
} > "$OUT/sparse_v4_b.log" 2>&1 &
wait
python benchmarks/tables.py acdc_sparse_v4_unet.json+acdc_sparse_v4_ssl.json \
  la_sparse_v4_ssl-flow.json+la_sparse_v4_ssl.json
