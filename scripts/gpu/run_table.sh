#!/usr/bin/env bash
# One device call for the benchmark table: the parity check, kindling's anchor workloads with
# layer recomputation and TF32 side-path products (seed q,v 4×512; all-linear 4×512 with f32
# AdamW states and the embedding table on the device, and lean: table in host memory, bf16
# moments; all-linear 4×512 lean with the side path under bf16 autocast, --lora-autocast;
# all-linear 1×2048 lean; the goal's row, lean autocast, a second time), batch-1 decoding, then the Python anchor's `all seed all_2k
# decode` (ANCHOR_VARIANTS) in the same call (ANCHOR_FIRST=1: before kindling's). TESTS_FILTER runs those device tests first;
# DECODE_VARIANTS (environment assignments, `+` joining several of one variant) decode again
# under each, into $OUT/ab-decode.jsonl, before the anchor; DECODE_ARGS are added to every decode
# (e.g. --compare-steps).
#   bash scripts/gpu/run_table.sh .device/bench .device/anchors
# Results: $OUT/bench.jsonl, $OUT/ab-decode.jsonl, $OUT/anchor.jsonl, $OUT/stages.txt, $OUT/logs.tgz.
DIR=${1:-.device/bench}
ANCHORS=${2:-.device/anchors}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
TRAIN="$X bench --suite train --device cuda --shape llama3-8b --model-dir $M --warmup 2 --steps 5 --checkpointing --tf32 --out $OUT/bench.jsonl"
LEAN="--host-embeddings --optim adamw_bf16"
if [ -n "${TESTS_FILTER:-}" ]; then stage gk-tests 120 /tmp/kb/cuda --test-threads=1 $TESTS_FILTER || true; fi
stage parity 60 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl" || true
# ANCHOR_FIRST=1: the anchor before kindling's runs (a call cut short by the device budget then
# loses kindling's last workloads, not the anchor).
if [ "${ANCHOR_FIRST:-0}" = 1 ] && [ -d "$ANCHORS/site" ]; then
  stage anchor 260 env PYTHONPATH=$PWD/$ANCHORS/site bash "$ANCHORS/run_all.sh" "$OUT" ${ANCHOR_VARIANTS:-all seed all_2k decode} || true
fi
stage seed 150 $TRAIN --targets q_proj,v_proj --batch 4 --seq 512 || true
stage all 90 $TRAIN --targets all-linear --batch 4 --seq 512 || true
stage all-lean 90 $TRAIN --targets all-linear --batch 4 --seq 512 $LEAN || true
stage all-lean-autocast 90 $TRAIN --targets all-linear --batch 4 --seq 512 $LEAN --lora-autocast || true
stage all-2k-lean 90 $TRAIN --targets all-linear --batch 1 --seq 2048 $LEAN || true
# The goal's row again (GOAL_REPEAT=0: once): a second figure on the same machine.
if [ "${GOAL_REPEAT:-1}" = 1 ]; then
  stage all-lean-autocast-2 90 $TRAIN --targets all-linear --batch 4 --seq 512 $LEAN --lora-autocast || true
fi
DECODE="$X bench --suite decode --device cuda --shape llama3-8b --model-dir $M --new-tokens 128 ${DECODE_ARGS:-}"
stage decode 90 $DECODE --out "$OUT/bench.jsonl" || true
i=0
for v in ${DECODE_VARIANTS:-}; do
  i=$((i + 1))
  echo "{\"variant\": \"$v\"}" >> "$OUT/ab-decode.jsonl"
  stage "decode-v$i" 60 env ${v//+/ } $DECODE --out "$OUT/ab-decode.jsonl" || true
done
if [ "${ANCHOR_FIRST:-0}" != 1 ] && [ -d "$ANCHORS/site" ] && [ "$(left)" -gt 60 ]; then
  stage anchor "$(($(left) - 10))" env PYTHONPATH=$PWD/$ANCHORS/site bash "$ANCHORS/run_all.sh" "$OUT" ${ANCHOR_VARIANTS:-all seed all_2k decode} || true
fi
finish
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/ab-decode.jsonl" "$OUT/anchor.jsonl" 2>/dev/null
