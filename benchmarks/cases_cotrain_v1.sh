#!/usr/bin/env bash
# The cases protocol on ACDC for the co-training presets: SSSEG_CASES (default 7) labelled
# patients of `train` (both frames), the rest of `train` unlabelled, one model per method,
# scored on `val`.
# Two streams side by side, one torch thread each: unet, sc-sam, uncol beside ssl,
# curriculum, full. Training budget SSSEG_BENCH_TIME (default 300 s) per method.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-300}
N=${SSSEG_CASES:-7}

source benchmarks/sparse_sets.sh

cases_pair "$N" cotrain unet,sc-sam,uncol ssl,curriculum,full --max-time "$TIME"
