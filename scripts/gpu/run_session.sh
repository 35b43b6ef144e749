#!/usr/bin/env bash
# One device call: kindling's checks, its 8B workloads, then the Python anchor's same workloads,
# so every ratio is measured side by side. Stops early (saving device time) when a check fails.
#   bash scripts/gpu/run_session.sh .device/bench .device/anchors
# Results: $OUT/bench.jsonl (ours), $OUT/anchor.jsonl (Python), $OUT/stages.txt, $OUT/smi.csv
# (GPU memory and busy % every 200 ms), one log per stage.
DIR=${1:-.device/bench}
ANCHORS=${2:-.device/anchors}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
stage gk-tests 60 /tmp/kb/cuda --test-threads=1 || true
stage parity 60 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl" || true
stage train-seed 180 $X bench --suite train --device cuda --shape llama3-8b --model-dir $M \
  --targets q_proj,v_proj --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl"
SEED_RC=$?
stage decode 90 $X bench --suite decode --device cuda --shape llama3-8b --model-dir $M \
  --new-tokens 128 --out "$OUT/bench.jsonl" || true
if [ $SEED_RC -eq 0 ]; then
  stage train-all 120 $X bench --suite train --device cuda --shape llama3-8b --model-dir $M \
    --targets all-linear --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" || true
  rm -rf $M
  if [ -d "$ANCHORS/site" ] && [ "$(left)" -gt 60 ]; then
    export PYTHONPATH=$PWD/$ANCHORS/site
    stage anchor "$(left)" bash "$ANCHORS/run_all.sh" "$OUT" seed all decode || true
  fi
fi
stop_sampling
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/anchor.jsonl" 2>/dev/null
