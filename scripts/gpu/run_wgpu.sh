#!/usr/bin/env bash
# The wgpu backend on the GPU machine's Vulkan (NVIDIA driver), beside CUDA in the same call:
# tiny-model parity, then decode and QLoRA training on a random SmolLM2-135M-shaped checkpoint
# (f32 on wgpu, bf16 on CUDA).
#   bash scripts/gpu/build_wgpu.sh here, then (carry .device/wgpu .device/bench .gl):
#   bash scripts/gpu/run_wgpu.sh
set -uo pipefail
OUT=${OUT:-/tmp/kindling-out}
mkdir -p "$OUT" /tmp/kb
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
gunzip -c .device/wgpu/xtask.gz > /tmp/kb/xtask-wgpu; gunzip -c .device/bench/xtask.gz > /tmp/kb/xtask-cuda
chmod +x /tmp/kb/*
M=/tmp/kindling-smollm2
for dev in wgpu cuda; do
  X=/tmp/kb/xtask-$dev
  echo "== $dev parity"; timeout 90 $X bench --suite parity --device $dev --out "$OUT/bench.jsonl" 2>&1 | tail -2
  echo "== $dev decode"; timeout 90 $X bench --suite decode --device $dev --shape smollm2-135m --model-dir $M \
    --new-tokens 64 --out "$OUT/bench.jsonl" 2>&1 | tail -1
  echo "== $dev train"; timeout 120 $X bench --suite train --device $dev --shape smollm2-135m --model-dir $M \
    --targets q_proj,v_proj --batch 4 --seq 128 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" 2>&1 | tail -1
done
cat "$OUT/bench.jsonl"
