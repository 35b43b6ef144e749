#!/usr/bin/env bash
# The follow-up device call after run_session.sh: the two training workloads with burn's balanced
# gradient checkpointing, a decode (GPU busy % from nvidia-smi), the decode's per-kernel GPU
# times (Nsight Compute, a few tokens), and the Python anchor's training workloads again in the
# same call.
#   bash scripts/gpu/run_followup.sh .device/bench .device/anchors
# Results: $OUT/bench.jsonl, $OUT/anchor.jsonl, $OUT/ncu.csv, $OUT/stages.txt, $OUT/logs.tgz (with smi.csv)
# (timestamp, memory used, GPU busy % every 200 ms).
DIR=${1:-.device/bench}
ANCHORS=${2:-.device/anchors}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
stage ckpt-seed 150 $X bench --suite train --device cuda --shape llama3-8b --model-dir $M --checkpointing \
  --targets q_proj,v_proj --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" || true
stage ckpt-all 100 $X bench --suite train --device cuda --shape llama3-8b --model-dir $M --checkpointing \
  --targets all-linear --batch 4 --seq 512 --warmup 2 --steps 5 --out "$OUT/bench.jsonl" || true
stage decode 70 $X bench --suite decode --device cuda --shape llama3-8b --model-dir $M \
  --new-tokens 64 --out "$OUT/bench.jsonl" || true
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
stage ncu-decode 120 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
  --launch-count 12000 --log-file "$OUT/ncu.csv" \
  $X bench --suite decode --device cuda --shape llama3-8b --model-dir $M --new-tokens 4 || true
rm -rf $M
if [ -d "$ANCHORS/site" ] && [ "$(left)" -gt 60 ]; then
  export PYTHONPATH=$PWD/$ANCHORS/site
  stage anchor "$(left)" bash "$ANCHORS/run_all.sh" "$OUT" seed all || true
fi
finish
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/anchor.jsonl" 2>/dev/null; wc -l "$OUT/ncu.csv" 2>/dev/null
