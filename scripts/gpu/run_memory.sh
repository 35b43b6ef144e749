#!/usr/bin/env bash
# One device call on training memory: the device tests named in TESTS_FILTER (`none`: none), the parity check,
# the all-linear BATCH×SEQ (default 4×512) workload with layer recomputation as before (f32 AdamW states, embeddings
# on the device), with the embedding table in host memory, with bf16 AdamW states too, and with
# double-quantized NF4 scales on top;
# the seed workload in the leanest setting (or the RUNS given); then the Python anchor's `all`
# and `seed` variants (ANCHOR_VARIANTS; `none` for none). DECODE=1 adds a batch-1 decode before the
# anchor; ANCHOR_TF32="all …" runs those anchor variants again with TF32 products allowed
# (scripts/gpu/anchor_tf32.py) into $OUT/anchor_tf32.jsonl.
#   bash scripts/gpu/run_memory.sh .device/bench .device/anchors
# Results: $OUT/bench.jsonl (ours; each line names its optimizer and embedding placement, with
# the pool's load, step-end and sampled warm-up peaks), $OUT/anchor.jsonl, $OUT/stages.txt,
# $OUT/logs.tgz.
DIR=${1:-.device/bench}
ANCHORS=${2:-.device/anchors}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
TRAIN="$X bench --suite train --device cuda --shape llama3-8b --model-dir $M --batch ${BATCH:-4} --seq ${SEQ:-512} --warmup 2 --steps 5 --checkpointing"
if [ "${TESTS_FILTER:-}" != none ]; then stage gk-tests 150 /tmp/kb/cuda --test-threads=1 ${TESTS_FILTER:-} || true; fi
stage parity 60 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl" || true
# RUNS: `name:environment:flags` entries separated by `;` (the environment assignments, if
# any, set for that run; the flags appended to the workload above).
RUNS=${RUNS:-"all-f32-device::--targets all-linear;all-f32-host::--targets all-linear --host-embeddings;all-bf16-host::--targets all-linear --host-embeddings --optim adamw_bf16;all-bf16-host-dq::--targets all-linear --host-embeddings --optim adamw_bf16 --double-quant;seed-bf16-host::--targets q_proj,v_proj --host-embeddings --optim adamw_bf16"}
IFS=';' read -ra ENTRIES <<< "$RUNS"
for entry in "${ENTRIES[@]}"; do
  IFS=':' read -r name environment flags <<< "$entry"
  # The first stage also writes the random checkpoint.
  stage "$name" 150 env $environment $TRAIN $flags --out "$OUT/bench.jsonl" || true
done
if [ "${DECODE:-0}" = 1 ]; then
  stage decode 90 $X bench --suite decode --device cuda --shape llama3-8b --model-dir $M --new-tokens 128 --out "$OUT/bench.jsonl" || true
fi
if [ "${ANCHOR_VARIANTS:-}" != none ] && [ -d "$ANCHORS/site" ] && [ "$(left)" -gt 60 ]; then
  stage anchor "$(($(left) - 10))" env PYTHONPATH=$PWD/$ANCHORS/site bash "$ANCHORS/run_all.sh" "$OUT" ${ANCHOR_VARIANTS:-all seed} || true
fi
if [ -n "${ANCHOR_TF32:-}" ] && [ -d "$ANCHORS/site" ] && [ "$(left)" -gt 60 ]; then
  mkdir -p "$OUT/tf32"
  for v in $ANCHOR_TF32; do
    stage "anchor-tf32-$v" "$(($(left) - 10))" env PYTHONPATH=$PWD/$ANCHORS/site PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/anchor_tf32.py" "$ANCHORS/qlora_anchor.py" "$OUT/tf32" "$v" || true
  done
  mv "$OUT/tf32/anchor.jsonl" "$OUT/anchor_tf32.jsonl" 2>/dev/null; rm -rf "$OUT/tf32"
fi
finish
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/anchor.jsonl" "$OUT/anchor_tf32.jsonl" 2>/dev/null
