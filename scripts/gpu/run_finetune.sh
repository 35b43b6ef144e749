#!/usr/bin/env bash
# `cargo xtask finetune --preset llama3-8b --backend cuda` on the GPU machine, end to end: a random
# Llama-3-8B checkpoint written by transformers, the real Llama-3 tokenizer and the Alpaca-1k
# parquet (carried in .device/assets), a bounded number of steps, the adapter saved, then loaded
# by peft onto the same base.
#   bash scripts/gpu/run_finetune.sh .device/bench .device/assets [STEPS]
DIR=${1:-.device/bench}
ASSETS=${2:-.device/assets}
STEPS=${3:-20}
source "$(dirname "$0")/lib.sh"
unpack "$DIR"
BASE=/tmp/l3-8b-rand
RUN=/tmp/runs/llama3-8b-qlora
python3 scripts/gpu/random_llama3.py $BASE 2>&1 | grep -v Warning | tee "$OUT/checkpoint.log"
KINDLING_ASSETS=$PWD/$ASSETS timeout 300 /tmp/kb/xtask finetune --preset llama3-8b \
  --set model.name=$BASE --set "tokenizer.path=$PWD/$ASSETS/llama3-tokenizer/tokenizer.json" \
  --set dataset.source=asset:data/alpaca-llama2-1k.parquet --set training.max_steps=$STEPS \
  --set training.logging_steps=5 --set training.save_steps=$STEPS --set try_model.max_length=24 \
  --set run.output_dir=$RUN 2>&1 | tee "$OUT/finetune.log" | grep -v "^\s*$" | tail -30
echo "finetune exit: ${PIPESTATUS[0]}"
ls -la $RUN
cp $RUN/adapter_config.json $RUN/metrics.jsonl "$OUT/" 2>/dev/null
python3 scripts/gpu/check_8b_adapter.py $RUN $BASE 2>&1 | grep -v Warning | tee "$OUT/peft.log" | tail -5
