#!/usr/bin/env bash
# CutMix on LA, a 5-volume pilot of the sparse protocol (k = 5, --max-time 120): `ssl` beside
# `ssl+cutmix`, volume by volume at the same time, one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_bench la "$OUT/la_sparse_cutmix_pilot_ssl.json" --methods ssl --max-time "$TIME" \
  --max-volumes 5 > "$OUT/cutmix_la_pilot_a.log" 2>&1 &
sparse_bench la "$OUT/la_sparse_cutmix_pilot_cutmix.json" --methods ssl+cutmix \
  --max-time "$TIME" --max-volumes 5 > "$OUT/cutmix_la_pilot_b.log" 2>&1 &
wait
python benchmarks/tables.py la_sparse_cutmix_pilot_ssl.json+la_sparse_cutmix_pilot_cutmix.json
