#!/usr/bin/env bash
# CutMix on LA, a 5-volume pilot of the sparse protocol (k = 5, --max-time 120): `ssl` beside
# `ssl+cutmix`, volume by volume at the same time, one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${SSSEG_BENCH_TIME:-120}

source benchmarks/sparse_sets.sh

sparse_pair la cutmix_la_pilot la_sparse_cutmix_pilot_ssl.json ssl \
  la_sparse_cutmix_pilot_cutmix.json ssl+cutmix --max-time "$TIME" --max-volumes 5
