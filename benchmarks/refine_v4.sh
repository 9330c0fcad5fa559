#!/usr/bin/env bash
# refine_v3.sh again after refine auto's per-slice guard (refine_agreement 0.5: a refined class
# keeps the U-Net's masks on a slice where the two agree less than that), 900 steps; results
# <set>_sparse_refine4_{off,auto}.json; with SSSEG_FIRST=N (volumes N to N+9) refine4_fromN.
set -euo pipefail
cd "$(dirname "$0")/.."
SSSEG_BENCH_ITERS=${SSSEG_BENCH_ITERS:-900} SSSEG_REFINE_NAME=refine4${SSSEG_FIRST:+_from$SSSEG_FIRST} exec bash benchmarks/refine_v1.sh
