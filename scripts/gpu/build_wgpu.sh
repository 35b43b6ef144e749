#!/usr/bin/env bash
# Builds the release wgpu xtask here and packs it for the GPU machine: .device/wgpu/xtask.gz
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/targets/wgpu}
cargo build --release --offline -p xtask --features wgpu
mkdir -p .device/wgpu
strip -o /tmp/xtask-wgpu "$CARGO_TARGET_DIR/release/xtask"
gzip -9 -c /tmp/xtask-wgpu > .device/wgpu/xtask.gz
ls -la .device/wgpu
