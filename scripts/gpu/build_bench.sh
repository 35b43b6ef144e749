#!/usr/bin/env bash
# Builds the release CUDA binaries here (no GPU needed) and packs them for the GPU machine:
#   bash scripts/gpu/build_bench.sh   → .device/bench/{xtask,cuda}.gz and .device/anchors/
# ~25 min on 2 cores from a cold target folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/targets/cuda}
cargo build --release --offline -p xtask --features cuda
cargo build --release --offline -p gpu-kernels --features cuda --test cuda --message-format=json-render-diagnostics > /tmp/gk-build.json
test_bin=$(grep -o '"executable":"[^"]*/deps/cuda-[^"]*"' /tmp/gk-build.json | tail -1 | cut -d'"' -f4)
mkdir -p .device/bench
for b in "$CARGO_TARGET_DIR/release/xtask" "$test_bin"; do
  name=$(basename "$b"); name=${name%%-*}
  strip -o "/tmp/$name" "$b"
  gzip -9 -c "/tmp/$name" > ".device/bench/$name.gz"
done
if [ -d ../shared/anchors ]; then rm -rf .device/anchors && cp -r ../shared/anchors .device/anchors; fi
ls -la .device/bench
