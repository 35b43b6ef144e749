#!/usr/bin/env bash
# A short GPU session's checks, most informative first (the call may be cut when the session's
# device time runs out; each stage writes its log to $OUT as it goes):
#   1. the batched-GEMM and attention CUDA tests   2. tiny-model parity on CUDA
#   3. single ops at the tiny and 8B attention shapes (ours, then burn's attention and matmul)
#   4. the 8B QLoRA training step (q,v r64, 4×512)
#   bash scripts/gpu/run_diagnose.sh .device/bench
DIR=${1:-.device/bench}
STAGE_TAIL=6
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
X=/tmp/kb/xtask
stage gk-new 45 /tmp/kb/cuda --test-threads=1 strided_batched attention_and
stage parity 45 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl"
for op in attention-backward burn-matmul burn-attention; do
  stage "op-$op" 20 $X bench --suite ops --op $op --device cuda --out "$OUT/bench.jsonl"
done
stage train-seed 200 $X bench --suite train --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b \
  --targets q_proj,v_proj --batch 4 --seq 512 --warmup 1 --steps 3 --out "$OUT/bench.jsonl"
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" 2>/dev/null
