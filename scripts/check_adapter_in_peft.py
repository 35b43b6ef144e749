"""Loads a kindling fine-tuning run's adapter with peft on the same base model in transformers
and compares peft's greedy answer with kindling's (`cargo xtask generate --adapter RUN`).

usage: python3 scripts/check_adapter_in_peft.py RUN_DIR GGUF "PROMPT" "KINDLING_ANSWER" [N]
Exits non-zero when peft reports missing/unexpected adapter keys or the first N (default 16)
generated tokens differ.
"""
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
import os

run, gguf, prompt, ours = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 16
folder, name = os.path.split(os.path.abspath(gguf))
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
model = PeftModel.from_pretrained(base, run).eval()
lora_modules = [m for m, _ in model.named_modules() if m.endswith("lora_A")]
assert lora_modules, "peft attached no LoRA modules"
ids = tok(prompt, return_tensors="pt").input_ids
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.eos_token_id)
theirs = out[0, ids.shape[1]:].tolist()
mine = tok(ours, add_special_tokens=False).input_ids[: len(theirs)]
print(f"peft attached {len(lora_modules)} LoRA modules")
print("peft:     ", repr(tok.decode(theirs)))
print("kindling: ", repr(ours))
if mine[: len(theirs)] != theirs[: len(mine)] or not mine:
    sys.exit("the greedy answers differ")
print(f"the first {min(len(mine), len(theirs))} tokens agree")
