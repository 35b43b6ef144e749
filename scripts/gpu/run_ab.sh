#!/usr/bin/env bash
# One device call comparing variants of our own workloads side by side (same machine, same call),
# each switched by an environment variable the code reads once per process:
#   bash scripts/gpu/run_ab.sh .device/bench
# KINDLING_LOSS=logits (the vocabulary loss over whole logits instead of row chunks),
# KINDLING_ATTENTION=whole (attention keeping its probabilities instead of recomputing them per
# block), KINDLING_GEMV_WORDS=1 (the one-word-per-lane NF4 GEMV). Stages: the CUDA tests, decode
# both ways, all-linear 4×512 with layer recomputation three ways, the seed without recomputation
# two ways, then kernel profiles. Results: $OUT/ab-<stage>.jsonl, $OUT/profile.jsonl,
# $OUT/stages.txt, $OUT/logs.tgz (with smi.csv).
DIR=${1:-.device/bench}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
TRAIN="$X bench --suite train --device cuda --shape llama3-8b --model-dir $M --batch 4 --seq 512 --warmup 2"
DECODE="$X bench --suite decode --device cuda --shape llama3-8b --model-dir $M"
stage gk-tests 90 /tmp/kb/cuda --test-threads=1 || true
stage decode 90 $DECODE --new-tokens 128 --out "$OUT/ab-decode.jsonl"
stage decode-words 90 env KINDLING_GEMV_WORDS=1 $DECODE --new-tokens 128 --out "$OUT/ab-decode-words.jsonl" || true
stage all-ckpt 120 $TRAIN --targets all-linear --checkpointing --steps 5 --out "$OUT/ab-all-ckpt.jsonl"
stage all-ckpt-logits 120 env KINDLING_LOSS=logits $TRAIN --targets all-linear --checkpointing --steps 5 --out "$OUT/ab-all-ckpt-logits.jsonl" || true
stage all-ckpt-whole 120 env KINDLING_ATTENTION=whole $TRAIN --targets all-linear --checkpointing --steps 5 --out "$OUT/ab-all-ckpt-whole.jsonl" || true
stage seed 120 $TRAIN --targets q_proj,v_proj --steps 5 --out "$OUT/ab-seed.jsonl" || true
stage seed-logits 120 env KINDLING_LOSS=logits $TRAIN --targets q_proj,v_proj --steps 5 --out "$OUT/ab-seed-logits.jsonl" || true
if [ "$(left)" -gt 80 ]; then
  stage profile-train "$(($(left) - 45))" $TRAIN --targets all-linear --checkpointing --steps 2 --profile --out "$OUT/profile.jsonl" || true
fi
if [ "$(left)" -gt 45 ]; then
  stage profile-decode "$(($(left) - 5))" $DECODE --new-tokens 32 --profile --out "$OUT/profile.jsonl" || true
fi
finish
cat "$OUT/stages.txt"; cat "$OUT"/ab-*.jsonl 2>/dev/null
