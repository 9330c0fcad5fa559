#!/usr/bin/env bash
# CutMix on LA, all 10 volumes of the sparse protocol (cutmix_la_pilot.sh had 5): `ssl`
# beside `ssl+cutmix`, volume by volume at the same time, one torch thread each, k = 5,
# --max-time 120, seed 1.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_pair la cutmix_la_v1 la_sparse_cutmix_v1_ssl.json ssl-cutmix \
  la_sparse_cutmix_v1_cutmix.json ssl+cutmix --max-time "$TIME" --seed 1
