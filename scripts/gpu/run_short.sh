#!/usr/bin/env bash
# A short device call after a change: the CUDA tests, then one training workload of ours and
# the Python anchor's same workload in the same call (a ratio, not the whole table).
#   bash scripts/gpu/run_short.sh .device/bench .device/anchors [all|seed|decode]
# (decode: batch-1 decoding, then the same with the kernel profile, then the anchor's decode)
# Results: $OUT/bench.jsonl, $OUT/anchor.jsonl, $OUT/stages.txt, $OUT/logs.tgz (with smi.csv).
DIR=${1:-.device/bench}
ANCHORS=${2:-.device/anchors}
WORKLOAD=${3:-all}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
TARGETS=$([ "$WORKLOAD" = seed ] && echo q_proj,v_proj || echo all-linear)
stage gk-tests 90 /tmp/kb/cuda --test-threads=1
if [ "$WORKLOAD" = decode ]; then
  DECODE="/tmp/kb/xtask bench --suite decode --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b"
  stage decode 90 $DECODE --new-tokens 128 --out "$OUT/bench.jsonl"
  stage profile-decode 90 $DECODE --new-tokens 32 --profile --out "$OUT/profile.jsonl"
  stage anchor 100 env PYTHONPATH=$PWD/$ANCHORS/site bash "$ANCHORS/run_all.sh" "$OUT" decode
  finish
  cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/anchor.jsonl" 2>/dev/null
  exit 0
fi
stage train 150 /tmp/kb/xtask bench --suite train --device cuda --shape llama3-8b --model-dir /tmp/kindling-l3-8b \
  --targets "$TARGETS" --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" &&
  stage anchor 100 env PYTHONPATH=$PWD/$ANCHORS/site bash "$ANCHORS/run_all.sh" "$OUT" "$WORKLOAD"
finish
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/anchor.jsonl" 2>/dev/null
