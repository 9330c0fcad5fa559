#!/usr/bin/env bash
# The feature terms, compared along 32 principal directions (distill_components), on the
# cases protocol (ACDC, SSSEG_CASES labelled patients, default 3; the rest of `train`
# unlabelled; scored on `val`): `ssl` beside `ssl+distill+prototype-refine`, one torch thread
# each, --max-time 300 (SSSEG_BENCH_TIME). The bank's 16 embeddings are made inside the
# budget, as in a first run; predicted without refinement (the scored volumes carry no label
# to choose by).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-300}
N=${SSSEG_CASES:-3}

source benchmarks/sparse_sets.sh

cases_pair "$N" distill ssl ssl+distill+prototype-refine --max-time "$TIME"
