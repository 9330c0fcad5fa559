#!/usr/bin/env bash
# Feature distillation before the labels (200 steps, `+pretrain`) on the cases protocol
# (ACDC, SSSEG_CASES labelled patients, default 3; the rest of `train` unlabelled; scored on
# `val`): `ssl` beside `ssl+pretrain-refine`, one torch thread each, --max-time 300
# (SSSEG_BENCH_TIME). The bank's 16 embeddings and the pretraining are inside the budget, as
# in a first run; predicted without refinement (the scored volumes carry no label to choose
# by).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-300}
N=${SSSEG_CASES:-3}

source benchmarks/sparse_sets.sh

cases_pair "$N" pretrain ssl ssl+pretrain-refine --max-time "$TIME"
