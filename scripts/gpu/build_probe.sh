#!/usr/bin/env bash
# Builds the CUDA test and probe binaries here (no GPU needed) and packs them for the device:
#   bash scripts/gpu/build_probe.sh        # → .device/gpu-kernels/{cuda,gpu_probe}.gz + site/
# ~20 min on 2 cores. The `autotune` feature lets burn tune its own matmul (its best case).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/targets/cuda}
cargo build --release --offline -p gpu-kernels --features cuda,autotune --bin gpu_probe --test cuda \
  --message-format=json-render-diagnostics > /tmp/gk-build.json
test_bin=$(grep -o '"executable":"[^"]*/deps/cuda-[^"]*"' /tmp/gk-build.json | tail -1 | cut -d'"' -f4)
mkdir -p .device/gpu-kernels
for b in "$CARGO_TARGET_DIR/release/gpu_probe" "$test_bin"; do
  name=$(basename "$b"); name=${name%%-*}
  strip -o "/tmp/$name" "$b"
  gzip -9 -c "/tmp/$name" > ".device/gpu-kernels/$name.gz"
done
rm -rf .device/gpu-kernels/site && cp -r ../shared/anchors/site .device/gpu-kernels/site
ls -la .device/gpu-kernels
