#!/usr/bin/env bash
# One script for a CUDA machine (an H200 is the target), well under 8 minutes:
#   1. the test suite's CUDA-marked tests;
#   2. one full-size GDAS epoch on NAS-Bench-201 (25,000 search pairs of 32x32 images, batch 64, synthetic data on
#      the GPU) with fp32, bf16 and channels-last variants (goal: under 10 s per epoch on an H200; the original
#      reported about 115 s per epoch on a V100), then a profile of 20 iterations: busiest kernels, kernels and
#      ops per iteration;
#   3. the search-step benchmark against the reference implementation when its package folder is present.
# usage: bash benchmarks/gpu_check.sh [output folder for the logs]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-output/gpu_check}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))" || exit 1
status=0
echo "== CUDA-marked tests"
timeout 240 "$PY" -m pytest -q -m cuda tests/ -p no:cacheprovider 2>&1 | tee "$OUT_DIR/cuda_tests.txt" || status=1
echo "== full-size GDAS epoch (NAS-Bench-201, 391 iterations of batch 64)"
timeout 200 "$PY" benchmarks/gdas_epoch.py --device cuda --variants fp32 bf16 fp32+cl 2>&1 \
  | tee "$OUT_DIR/gdas_epoch.txt" || status=1
echo "== where a GDAS iteration's time goes (profiler, 20 iterations, fp32)"
timeout 90 "$PY" benchmarks/gdas_epoch.py --device cuda --variants fp32 --profile 20 2>&1 \
  | tee "$OUT_DIR/gdas_profile.txt" || status=1
if [ -n "${XAUTODL_REFERENCE_DIR:-}" ] && [ -d "$XAUTODL_REFERENCE_DIR" ]; then
  echo "== search step vs the reference implementation"
  timeout 180 "$PY" benchmarks/search_step.py --device cuda --repeats 3 2>&1 | tee "$OUT_DIR/search_step.txt" || status=1
fi
exit $status
