#!/usr/bin/env bash
# The ceiling of refinement by the foundation model on the sparse protocol
# (benchmarks/refine_headroom.py): ssl trained for 120 s a volume, every unannotated slice
# refined by LiteMedSAM; LA (first 10 train volumes, k = 5), then ACDC (first 10 val, k = 2),
# each as two one-thread streams of 5 volumes; then the merged tables.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-${SSSEG_SHARED_DATA:-../shared/data}}
OUT=benchmarks/results
mkdir -p "$OUT"
run_set() {  # run_set DIR SPLIT K NAME
  python benchmarks/refine_headroom.py --data "$DATA/$1" --split "$2" --k "$3" --volumes 0-4 \
    --tag a > "$OUT/refine_headroom_$4_a.log" 2>&1 &
  python benchmarks/refine_headroom.py --data "$DATA/$1" --split "$2" --k "$3" --volumes 5-9 \
    --tag b > "$OUT/refine_headroom_$4_b.log" 2>&1 &
  wait
  python benchmarks/refine_headroom.py --data "$DATA/$1" --merge \
    "$OUT/refine_headroom_$4_a.json" "$OUT/refine_headroom_$4_b.json"
}
run_set LA train 5 LA
run_set ACDC val 2 ACDC
