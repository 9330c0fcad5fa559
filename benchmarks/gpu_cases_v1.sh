#!/usr/bin/env bash
# The issue's GPU target, run on a lent GPU machine: the ACDC cases protocol (SSSEG_CASES
# labelled patients of `train`, 7 by default, both frames; the other patients unlabelled;
# scored on the 20 `val` volumes) with `ssl` (SSSEG_METHODS) at 256 pixels, the published
# 2-D methods' size (benchmarks/gpu_cases.json: 24 labelled + 12 unlabelled slices a step,
# EMA 0.99), --max-time SSSEG_GPU_TIME (300 s) on --device SSSEG_DEVICE (cuda).
#
# Here, first: `python benchmarks/device_pack.py` (writes .device/: ACDC as 8-bit images and
# the MONAI and nibabel wheels the machine lacks). Then, through the device tool:
#   run(command="bash benchmarks/gpu_cases_v1.sh", carry=[".device"], timeout_s=480)
# The log and the JSON come back under $OUT. On this CPU the same script runs with
# SSSEG_DEVICE=cpu (a dry run: SSSEG_GPU_TIME=20). Delete .device afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
LOG="$OUT/gpu_cases_v1.log"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/ssseg-site .device/wheels/*.whl
export PYTHONPATH="/tmp/ssseg-site:$PWD" PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  echo "CPU cores: $(nproc)"
} 2>&1 | tee "$LOG"
python3 -m napari_ssseg.cli bench --data .device/ACDC --protocol cases \
  --labeled-cases "${SSSEG_CASES:-7}" --train-split train --split val \
  --methods "${SSSEG_METHODS:-ssl}" --device "${SSSEG_DEVICE:-cuda}" \
  --max-time "${SSSEG_GPU_TIME:-300}" --config benchmarks/gpu_cases.json \
  --json "$OUT/acdc_cases${SSSEG_CASES:-7}_gpu_v1.json" 2>&1 | tee -a "$LOG"
