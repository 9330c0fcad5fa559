#!/usr/bin/env bash
# The foundation-model teacher in a fixed time, its embeddings made before the run (as the
# dock makes them while you label): `ssl` beside `ssl+sam-refine+precompute` on the sparse
# protocol of one data set (SSSEG_SET: acdc, the default, or la), volume by volume at the
# same time, one torch thread each, --max-time 120 (SSSEG_BENCH_TIME), seed SSSEG_SEED (0),
# both predicted unrefined. Argument: the teacher's variant, `lora` (its defaults: a refresh
# every 25 steps with the adapters tuned, results SET_sparse_sam_time_v1_*.json), `r100` (a
# refresh every 100 steps, sam_refresh_100.json; SET_sparse_sam_time_r100_v1_*.json) or
# `frozen` (no adapters, sam_no_lora.json; SET_sparse_sam_time_frozen_v1_*.json).
# sam_teacher_cost_v1.sh measured them at equal steps. About 35 minutes on ACDC.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/sparse_sets.sh

case ${1:-lora} in
  lora) ssl_beside sam_time_v1 sam ssl+sam-refine ;;
  r100) SSSEG_CONFIG=benchmarks/sam_refresh_100.json ssl_beside sam_time_r100_v1 sam ssl+sam-refine ;;
  frozen) SSSEG_CONFIG=benchmarks/sam_no_lora.json ssl_beside sam_time_frozen_v1 sam ssl+sam-refine ;;
  *) echo "variant must be lora, r100 or frozen" >&2; exit 2 ;;
esac
