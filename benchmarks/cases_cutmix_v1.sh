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

cases_pair "$N" cutmix ssl+cutmix uncol+prototype --max-time "$TIME"
