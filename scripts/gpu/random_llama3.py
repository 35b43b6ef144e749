"""Writes a random-weight Llama-3-8B-shaped checkpoint with transformers (sharded bf16
safetensors, as `save_pretrained` writes them), for runs of the real loader on the GPU machine.

usage: python3 scripts/gpu/random_llama3.py OUT_DIR
"""
import sys, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
cfg = LlamaConfig(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=128000, eos_token_id=128001,
)
t = time.time()
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)
print(f"random Llama-3-8B checkpoint in {out} ({time.time() - t:.1f} s)", flush=True)
