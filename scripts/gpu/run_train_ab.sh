#!/usr/bin/env bash
# One device call comparing training variants side by side (same machine, same call): the device
# tests named in TESTS_FILTER (`none`: none; empty: all), the parity check, then the all-linear
# 4×512 lean workload (layer recomputation, TF32 side path, embeddings in host memory, bf16
# moments) once per RUNS entry, then (PROFILE=1) a profile of the first entry's setting
# (environment and flags), (NCU=regex) Nsight Compute's kernel durations.
#   RUNS="new::;old:KINDLING_RECOMPUTE=whole+KINDLING_CLIP=sync:" bash scripts/gpu/run_train_ab.sh .device/bench
# RUNS: `name:environment:flags` entries separated by `;` (environment assignments joined by
# `+`, set for that run; flags appended to the workload). Results: $OUT/bench.jsonl (one line
# per run, preceded by its name), $OUT/profile.jsonl, $OUT/stages.txt, $OUT/logs.tgz.
DIR=${1:-.device/bench}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
sample_gpu
X=/tmp/kb/xtask
M=/tmp/kindling-l3-8b
TRAIN="$X bench --suite train --device cuda --shape llama3-8b --model-dir $M --batch 4 --seq 512 --warmup 2 --checkpointing --tf32 --targets all-linear --host-embeddings --optim adamw_bf16"
if [ "${TESTS_FILTER:-}" != none ]; then stage gk-tests 150 /tmp/kb/cuda --test-threads=1 ${TESTS_FILTER:-} || true; fi
stage parity 60 $X bench --suite parity --device cuda --out "$OUT/bench.jsonl" || true
IFS=';' read -ra ENTRIES <<< "${RUNS:-new::}"
first_env=""; first_flags=""
for entry in "${ENTRIES[@]}"; do
  IFS=':' read -r name environment flags <<< "$entry"
  [ -z "$first_env" ] && first_env="${environment:-_=}" && first_flags="$flags"
  echo "{\"run\": \"$name\", \"env\": \"$environment\"}" >> "$OUT/bench.jsonl"
  # The first stage also writes the random checkpoint.
  stage "$name" 150 env ${environment//+/ } $TRAIN --steps 5 $flags --out "$OUT/bench.jsonl" || true
done
# NCU=<kernel regex>: Nsight Compute's durations (speed of light) of the first entry's kernels
# matching it, NCU_COUNT of them after skipping NCU_SKIP matches (one training step, no warm-up).
if [ -n "${NCU:-}" ] && [ "$(left)" -gt 150 ]; then
  stage ncu 140 env ${first_env//+/ } /usr/local/cuda/bin/ncu --clock-control none -k "regex:$NCU" --launch-skip "${NCU_SKIP:-300}" \
    --launch-count "${NCU_COUNT:-120}" --section SpeedOfLight ${TRAIN/--warmup 2/--warmup 0} --steps 1 $first_flags || true
  grep -E "^  [A-Za-z_]|Duration|DRAM Throughput" "$LOGS/ncu.log" | cut -c1-140 > "$OUT/ncu.txt"
fi
if [ "${PROFILE:-0}" = 1 ] && [ "$(left)" -gt 60 ]; then
  stage profile "$(($(left) - 5))" env ${first_env//+/ } $TRAIN --steps 2 $first_flags --profile --out "$OUT/profile.jsonl" || true
fi
finish
cat "$OUT/stages.txt"; cat "$OUT/bench.jsonl" "$OUT/profile.jsonl" 2>/dev/null
