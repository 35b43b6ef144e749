#!/usr/bin/env bash
# Runs kindling's GPU checks and benchmarks on the GPU machine (repository root), after
# `scripts/gpu/build_bench.sh` here:  bash scripts/gpu/run_bench.sh .device/bench
# Stages (each with its own time limit; a failing stage does not stop the others):
#   1. gpu-kernels CUDA correctness tests     2. tiny-model parity on CUDA vs CPU and HF
#   3. Llama-3-8B shape, random weights: QLoRA training q,v r64 4×512, then all-linear r64 4×512
#   4. 8B NF4 batch-1 decode, 128 new tokens
# Results: one JSON line per measurement in $OUT/bench.jsonl; GPU memory sampled by nvidia-smi
# every 200 ms in $OUT/smi.csv.
set -uo pipefail
DIR=${1:-.device/bench}
OUT=${OUT:-/tmp/kindling-out}
mkdir -p "$OUT" /tmp/kb
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for f in "$DIR"/*.gz; do gunzip -c "$f" > "/tmp/kb/$(basename "$f" .gz)"; done
chmod +x /tmp/kb/*
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 200 > "$OUT/smi.csv" 2>/dev/null &
SMI=$!
stage() { local name=$1 limit=$2; shift 2; echo "== $name ($(date +%T))"; timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -25; echo "$name exit: ${PIPESTATUS[0]}" | tee -a "$OUT/stages.txt"; }
X=/tmp/kb/xtask
stage gk-tests 90 /tmp/kb/cuda --test-threads=1
stage parity 90 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl"
stage train-seed 170 $X bench --suite train --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b \
  --targets q_proj,v_proj --batch 4 --seq 512 --warmup 3 --steps 5 --out "$OUT/bench.jsonl"
stage train-all 110 $X bench --suite train --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b \
  --targets all-linear --batch 4 --seq 512 --warmup 3 --steps 5 --out "$OUT/bench.jsonl"
stage decode 80 $X bench --suite decode --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b \
  --new-tokens 128 --out "$OUT/bench.jsonl"
kill $SMI 2>/dev/null
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" 2>/dev/null
