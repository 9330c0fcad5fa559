#!/usr/bin/env bash
# The curriculum's cost on the cases protocol: in cases_unlabelled_v1.sh it predicted 256
# slices a refresh and made a quarter fewer steps than `ssl`. Here `ssl` beside `ssl+self`
# predicting SSSEG_CURRICULUM_SLICES (default 64) slices a refresh (a settings file), 300 s
# each, SSSEG_CASES (default 3) labelled patients; two one-thread streams.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-300}
N=${SSSEG_CASES:-3}
SLICES=${SSSEG_CURRICULUM_SLICES:-64}

source benchmarks/sparse_sets.sh

SETTINGS="$OUT/curriculum_slices_${SLICES}.json"
echo "{\"curriculum_slices\": $SLICES}" > "$SETTINGS"
cases_bench "$N" "$OUT/acdc_cases${N}_curriculum${SLICES}_a.json" --methods ssl \
  --max-time "$TIME" > "$OUT/cases${N}_curriculum${SLICES}_v1_a.log" 2>&1 &
cases_bench "$N" "$OUT/acdc_cases${N}_curriculum${SLICES}_b.json" --methods ssl+self \
  --max-time "$TIME" --config "$SETTINGS" > "$OUT/cases${N}_curriculum${SLICES}_v1_b.log" 2>&1 &
wait
python benchmarks/tables.py "acdc_cases${N}_curriculum${SLICES}_a.json+acdc_cases${N}_curriculum${SLICES}_b.json"
