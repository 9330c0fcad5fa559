#!/usr/bin/env bash
# What the foundation teacher and the curriculum teach on the cases protocol apart from what
# they cost (cases_unlabelled_v1.sh bounds time, and they bought fewer steps): every method
# trains for the same SSSEG_BENCH_ITERS (default 1200) steps, no time limit, so the encoder's
# seconds do not count. `ssl` then `ssl+self` beside `ssl+sam+trust`; SSSEG_CASES (default
# 3) labelled patients; two one-thread streams.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${SSSEG_BENCH_ITERS:-1200}
N=${SSSEG_CASES:-3}

source benchmarks/sparse_sets.sh

cases_pair "$N" steps ssl,ssl+self ssl+sam+trust --max-iters "$ITERS"
