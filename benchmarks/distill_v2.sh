#!/usr/bin/env bash
# Feature distillation with the bank's embeddings reduced to 32 principal directions (the
# default distill_components) against the default `ssl`, on the sparse protocol of one data
# set (SSSEG_SET: acdc, the default, or la): `ssl` beside `ssl+distill-refine+precompute`
# (its 16 embeddings made before the run, outside its time; predicted without refinement),
# volume by volume at the same time, one torch thread each, --max-time 120
# (SSSEG_BENCH_TIME), seed SSSEG_SEED (0; another seed's files and logs end in _sN). With all
# 256 channels a distillation step cost twice a plain one on the CPU; this says whether the
# cheaper step teaches. SSSEG_EMBED=budget makes the embeddings inside the run's time
# instead (`ssl+distill-refine`, a first run from the command line; files end in _budget).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}
SET=${SSSEG_SET:-acdc}
SEED=${SSSEG_SEED:-0}
SUFFIX=$([ "$SEED" = 0 ] && echo "" || echo "_s$SEED")
DISTILL=ssl+distill-refine+precompute
case ${SSSEG_EMBED:-before} in
  before) ;;
  budget) DISTILL=ssl+distill-refine SUFFIX="${SUFFIX}_budget" ;;
  *) echo "SSSEG_EMBED must be before or budget" >&2; exit 2 ;;
esac

source benchmarks/sparse_sets.sh

sparse_pair "$SET" "${SET}_distill_v2$SUFFIX" "${SET}_sparse_distill_v2_ssl$SUFFIX.json" ssl \
  "${SET}_sparse_distill_v2_distill$SUFFIX.json" "$DISTILL" --max-time "$TIME" --seed "$SEED"
