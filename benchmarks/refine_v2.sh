#!/usr/bin/env bash
# refine_v1.sh again after refine auto's trust rule (refine_trust 0.93: a class takes the
# refined masks when they reach that Dice on the annotated slices), 900 steps (about what
# 120 s make here); results <set>_sparse_refine2_{off,auto}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SSSEG_BENCH_ITERS=${SSSEG_BENCH_ITERS:-900} SSSEG_REFINE_NAME=refine2 exec bash benchmarks/refine_v1.sh
