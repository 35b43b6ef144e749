#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, after `scripts/gpu/build_probe.sh` here:
#   bash scripts/gpu/run_probe.sh .device/gpu-kernels
# Unpacks the carried release binaries, runs the CUDA correctness tests, then the timing probe,
# then the PyTorch/bitsandbytes references; logs and tables go to $OUT.
set -uo pipefail
DIR=${1:-.device/gpu-kernels}
OUT=${OUT:-/tmp/gk-out}
mkdir -p "$OUT" /tmp/gk
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in "$DIR"/*.gz; do gunzip -c "$f" > "/tmp/gk/$(basename "$f" .gz)"; done
chmod +x /tmp/gk/*
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
echo "== correctness (cargo test binary, tests/cuda.rs)"
timeout 140 /tmp/gk/cuda --test-threads=1 2>&1 | tee "$OUT/tests.log"
echo "tests exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tests.log"
echo "== probe"
timeout 210 /tmp/gk/gpu_probe "$OUT" 2>&1 | tee "$OUT/probe.log"
echo "probe exit: ${PIPESTATUS[0]}" | tee -a "$OUT/probe.log"
echo "== torch / bitsandbytes reference"
PYTHONPATH="$DIR/site" PYTHONUNBUFFERED=1 timeout 100 python3 scripts/gpu/torch_ref.py "$OUT" 2>&1 | tee "$OUT/torch.log"
nvidia-smi --query-gpu=clocks.sm,temperature.gpu --format=csv >> "$OUT/device.txt" 2>&1
