#!/usr/bin/env bash
# Which part of `full` carried it on the 3-patient cases protocol (cases_cotrain_v1.sh):
# `ssl+cutmix` beside `uncol+prototype` (full's parts without its cutmix; the teachers full
# adds, shape and curriculum, teach nothing in this protocol). Same settings as
# cases_cotrain_v1.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-300}
N=${SSSEG_CASES:-3}

source benchmarks/sparse_sets.sh

cases() {  # cases JSON METHODS
  cases_bench "$N" "$1" --methods "$2" --max-time "$TIME"
}
cases "$OUT/acdc_cases${N}_cutmix_a.json" ssl+cutmix > "$OUT/cases${N}_cutmix_v1_a.log" 2>&1 &
cases "$OUT/acdc_cases${N}_cutmix_b.json" uncol+prototype > "$OUT/cases${N}_cutmix_v1_b.log" 2>&1 &
wait
python benchmarks/tables.py "acdc_cases${N}_cutmix_a.json+acdc_cases${N}_cutmix_b.json"
