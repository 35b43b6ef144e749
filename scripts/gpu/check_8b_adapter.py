"""Loads a kindling run's PEFT adapter with peft onto its base checkpoint (transformers, bf16,
CUDA) and checks that every saved tensor found its module and that the adapter changes the logits.

usage: python3 scripts/gpu/check_8b_adapter.py RUN_DIR BASE_DIR
Exits non-zero when peft attaches nothing, reports unexpected keys, or the adapter is a no-op.
"""
import json, sys

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

run, base_dir = sys.argv[1:3]
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16, device_map={"": 0}).eval()
ids = torch.randint(0, base.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0)).cuda()
with torch.no_grad():
    plain = base(ids).logits.float()
model = PeftModel.from_pretrained(base, run).eval()
state = load_file(f"{run}/adapter_model.safetensors")
result = set_peft_model_state_dict(model, state)
lora = [m for m, _ in model.named_modules() if m.endswith("lora_A")]
with torch.no_grad():
    tuned = model(ids).logits.float()
rel = ((tuned - plain).norm() / plain.norm()).item()
report = {"lora_modules": len(lora), "saved_tensors": len(state), "unexpected_keys": len(result.unexpected_keys),
          "adapter_config": json.load(open(f"{run}/adapter_config.json")).get("target_modules"),
          "relative_logit_change": rel}
print(json.dumps(report), flush=True)
if not lora or result.unexpected_keys or not rel > 0:
    sys.exit("the adapter did not load as a working peft adapter")
