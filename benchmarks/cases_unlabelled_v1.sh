#!/usr/bin/env bash
# The cases protocol on ACDC (SSSEG_CASES, default 3, labelled patients of `train`, the rest
# unlabelled, scored on `val`) once the foundation teacher and the confidence curriculum also
# learn from volumes nobody labelled: `ssl` then `ssl+self` (the curriculum added) beside
# `ssl+sam+trust+cap` (the foundation teacher added, per-class trust, encoder capped at 30 %
# of the budget) then `sc-sam`. Two one-thread streams, SSSEG_BENCH_TIME (default 300 s).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-300}
N=${SSSEG_CASES:-3}

source benchmarks/sparse_sets.sh

cases_pair "$N" unlabelled ssl,ssl+self ssl+sam+trust+cap,sc-sam --max-time "$TIME"
