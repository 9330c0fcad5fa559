#!/usr/bin/env bash
# The ceiling of refinement by the foundation model on the sparse protocol
# (benchmarks/refine_headroom.py): ssl trained for 120 s a volume, every unannotated slice
# refined by LiteMedSAM; LA (first 10 train volumes, k = 5), then ACDC (first 10 val, k = 2),
# each as two one-thread streams of 5 volumes; then the merged tables. SSSEG_FIRST=10 takes
# the next 10 volumes of each (result tags 10a, 10b); SSSEG_TAG another tag (a later run
# beside the earlier results); SSSEG_BENCH_SETS="acdc la" the order and sets.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-${SSSEG_SHARED_DATA:-../shared/data}}
OUT=benchmarks/results
mkdir -p "$OUT"
FIRST=${SSSEG_FIRST:-0}
TAG=${SSSEG_TAG:-$([ "$FIRST" = 0 ] || echo "$FIRST")}
run_set() {  # run_set DIR SPLIT K NAME
  local first=$FIRST-$((FIRST + 4)) second=$((FIRST + 5))-$((FIRST + 9))
  python benchmarks/refine_headroom.py --data "$DATA/$1" --split "$2" --k "$3" --volumes "$first" \
    --tag "${TAG}a" > "$OUT/refine_headroom_$4_${TAG}a.log" 2>&1 &
  python benchmarks/refine_headroom.py --data "$DATA/$1" --split "$2" --k "$3" --volumes "$second" \
    --tag "${TAG}b" > "$OUT/refine_headroom_$4_${TAG}b.log" 2>&1 &
  wait
  python benchmarks/refine_headroom.py --data "$DATA/$1" --merge \
    "$OUT/refine_headroom_$4_${TAG}a.json" "$OUT/refine_headroom_$4_${TAG}b.json"
}
for set in ${SSSEG_BENCH_SETS:-la acdc}; do
  case $set in
    la) run_set LA train 5 LA ;;
    acdc) run_set ACDC val 2 ACDC ;;
  esac
done
