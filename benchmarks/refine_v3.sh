#!/usr/bin/env bash
# refine_v2.sh again after the foundation model's class masks became labels by the smaller
# mask where they overlap (napari_ssseg/foundation/mask_labels.py; before: the larger logit),
# 900 steps; results <set>_sparse_refine3_{off,auto}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SSSEG_BENCH_ITERS=${SSSEG_BENCH_ITERS:-900} SSSEG_REFINE_NAME=refine3 exec bash benchmarks/refine_v1.sh
