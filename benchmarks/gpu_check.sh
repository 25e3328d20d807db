#!/usr/bin/env bash
# The one prepared GPU check (issue 20, items 3 and 5). On a machine with an NVIDIA GPU:
#   1. the GPU-marked tests (pytest -m gpu), 140 s at most;
#   2. benchmarks/bench_gpu.py: RealESRGANer vs engine vs the streaming pipeline (CUDA
#      streams on and off) vs the whole job (streaming and plain) at 1080p -> 4K with
#      realesr-animevideov3 and RealESRGAN_x4plus, and the encoder ceiling (NVENC when the
#      GPU has it, else x264 alone on the machine's cores), 190 s at most;
#   3. the streaming pipeline again with torch.compile + CUDA graphs (COMPILE_MODE, default
#      reduce-overhead) for realesr-animevideov3, 90 s at most: a slow compile only costs
#      its own row;
# and writes the GPU section of docs/benchmarks.md. Under 8 minutes in all (420 s of limits).
# Usage: benchmarks/gpu_check.sh [OUTDIR]   (results land in OUTDIR, default ./gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.csv" || true
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.get_arch_list())" | tee "$out/torch.txt"
status=0
timeout 140 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/integration/test_gpu_engine.py \
    tests/unit/test_gpu_fallbacks.py tests/integration/test_hardware_encoders.py \
    2>&1 | tee "$out/tests.txt" || status=$?
timeout 190 "$py" -m benchmarks.bench_gpu --frames "${FRAMES:-24}" --json "$out/gpu_bench.json" \
    --doc docs/benchmarks.md 2>&1 | tee "$out/bench.txt" || status=$?
if [ -f "$out/gpu_bench.json" ]; then
    timeout 90 "$py" -m benchmarks.bench_gpu --frames "${FRAMES:-24}" --json "$out/gpu_bench.json" \
        --doc docs/benchmarks.md --compile "${COMPILE_MODE:-reduce-overhead}" \
        2>&1 | tee "$out/bench_compile.txt" || status=$?
fi
cp docs/benchmarks.md "$out/benchmarks.md"
exit "$status"
