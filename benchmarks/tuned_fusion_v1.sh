#!/usr/bin/env bash
# Pixel-wise fusion of the U-Net's probability with LiteMedSAM's masks, frozen or tuned on the
# annotated slices (benchmarks/tuned_fusion_headroom.py), on LA (sparse protocol, k = 5, ssl
# 900 steps): volumes 0-9 with every decoder variant, then volumes 10-19 with the frozen and
# LoRA decoders (the U-Net's probability cut at 0.4/0.5/0.6 as the control); each as two
# one-thread streams of 5 volumes, then the merged tables. About 40 + 25 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-${SSSEG_SHARED_DATA:-../shared/data}}
OUT=benchmarks/results
mkdir -p "$OUT"
stream() {  # stream TAG VOLUMES [VARIANT...]
  local tag=$1 volumes=$2
  shift 2
  python benchmarks/tuned_fusion_headroom.py --data "$DATA/LA" --volumes "$volumes" \
    --tune-steps 150 --tag "$tag" ${1:+--variants "$@"} > "$OUT/tuned_fusion_LA_$tag.log" 2>&1
}
stream a 0-4 & stream b 5-9 & wait
stream 10a 10-14 frozen lora & stream 10b 15-19 frozen lora & wait
for pair in "a b" "10a 10b"; do
  set -- $pair
  python benchmarks/tuned_fusion_headroom.py --data "$DATA/LA" \
    --merge "$OUT/tuned_fusion_LA_$1.json" "$OUT/tuned_fusion_LA_$2.json"
done
