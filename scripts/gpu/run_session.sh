#!/usr/bin/env bash
# One device call: kindling's checks, its 8B workloads, then the Python anchor's same workloads,
# so every ratio is measured side by side; with time left, decoding through the separate ops
# (KINDLING_DECODE=unfused), then kernel profiles of a training step and of decoding. Stops early (saving device time) when a check fails.
#   bash scripts/gpu/run_session.sh .device/bench .device/anchors
# KEEP_2K=0 drops the 1×2048 workload without recomputation; ANCHOR_VARIANTS picks the anchor's
# variants; TESTS=mt runs only the multi-thread test pass, TESTS=single only the one-thread pass; CKPT=0 drops the layer-recomputation workloads;
# AB=1 adds the all-linear workload on the host-synchronized cuBLASLt route ($OUT/bench-sync.jsonl).
# Results: $OUT/bench.jsonl (ours), $OUT/bench-unfused.jsonl (decode A/B),
# $OUT/anchor.jsonl (Python), $OUT/profile.jsonl (profiles),
# $OUT/stages.txt, $OUT/logs.tgz (smi.csv: GPU memory and busy % every 200 ms; one log per
# stage).
DIR=${1:-.device/bench}
ANCHORS=${2:-.device/anchors}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
TRAIN="$X bench --suite train --device cuda --shape llama3-8b --model-dir $M"
DECODE="$X bench --suite decode --device cuda --shape llama3-8b --model-dir $M"
echo "host tools: $(command -v perf nsys ncu | tr '\n' ' ')" | tee -a "$OUT/stages.txt"
if [ "${TESTS:-all}" != mt ]; then stage gk-tests 180 /tmp/kb/cuda --test-threads=1 || true; fi
# Several test threads: several burn streams, each found and checked on its own.
if [ "${TESTS:-all}" != single ]; then stage gk-tests-mt 60 env KINDLING_GEMM_TRACE=1 /tmp/kb/cuda --test-threads=4 || true; fi
stage parity 60 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl" || true
stage train-seed 180 $TRAIN --targets q_proj,v_proj --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl"
SEED_RC=$?
stage decode 90 $DECODE --new-tokens 128 --out "$OUT/bench.jsonl" || true
if [ $SEED_RC -eq 0 ]; then
  stage train-all 120 $TRAIN --targets all-linear --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" || true
  if [ "${KEEP_2K:-1}" = 1 ]; then
    stage train-2k 120 $TRAIN --targets all-linear --batch 1 --seq 2048 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" || true
  fi
  if [ "${CKPT:-1}" = 1 ]; then
    # The same three workloads with layer recomputation (as the anchor trains).
    stage train-seed-ckpt 120 $TRAIN --targets q_proj,v_proj --batch 4 --seq 512 --warmup 2 --steps 5 --checkpointing --out "$OUT/bench.jsonl" || true
    stage train-all-ckpt 120 $TRAIN --targets all-linear --batch 4 --seq 512 --warmup 2 --steps 5 --checkpointing --out "$OUT/bench.jsonl" || true
    stage train-2k-ckpt 120 $TRAIN --targets all-linear --batch 1 --seq 2048 --warmup 2 --steps 5 --checkpointing --out "$OUT/bench.jsonl" || true
  fi
  if [ "${AB:-0}" = 1 ]; then
    # The same all-linear workload with every cuBLASLt call host-synchronized (the old route).
    stage train-all-sync 120 env KINDLING_GEMM_SYNC=1 $TRAIN --targets all-linear --batch 4 --seq 512 --warmup 2 --steps 3 \
      --out "$OUT/bench-sync.jsonl" || true
  fi
  if [ -d "$ANCHORS/site" ] && [ "$(left)" -gt 60 ]; then
    stage anchor "$(($(left) - 10))" env PYTHONPATH=$PWD/$ANCHORS/site \
      bash "$ANCHORS/run_all.sh" "$OUT" ${ANCHOR_VARIANTS:-seed all all_2k decode all_liger} || true
  fi
  if [ "$(left)" -gt 60 ]; then
    # The same decode through the separate ops (the route before the fused decoding kernels).
    stage decode-unfused "$(($(left) - 5))" env KINDLING_DECODE=unfused $DECODE --new-tokens 128 --out "$OUT/bench-unfused.jsonl" || true
  fi
  if [ "$(left)" -gt 90 ]; then
    stage profile-train "$(($(left) - 45))" $TRAIN --targets all-linear --batch 4 --seq 512 --warmup 2 --steps 2 --profile \
      --out "$OUT/profile.jsonl" || true
  fi
  if [ "$(left)" -gt 50 ]; then
    stage profile-decode "$(($(left) - 5))" $DECODE --new-tokens 32 --profile --out "$OUT/profile.jsonl" || true
  fi
fi
finish
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/anchor.jsonl" 2>/dev/null
