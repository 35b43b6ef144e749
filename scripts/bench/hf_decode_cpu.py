"""The Python baseline for `cargo xtask bench --suite decode --device cpu`: transformers' greedy
batch-1 decoding of the same GGUF model (dequantized to f32 on load, as kindling does), same
prompt, same number of new tokens, on this machine's CPU threads.

usage: python3 hf_decode_cpu.py GGUF [--prompt TEXT] [--new-tokens 128] [--threads N]
Prints one JSON line like the Rust bench.
"""
import argparse, json, os, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

p = argparse.ArgumentParser()
p.add_argument("gguf")
p.add_argument("--prompt", default="The history of the printing press begins")
p.add_argument("--new-tokens", type=int, default=128)
p.add_argument("--threads", type=int, default=os.cpu_count())
a = p.parse_args()
torch.set_num_threads(a.threads)
folder, name = os.path.split(os.path.abspath(a.gguf))
t0 = time.time()
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
load_s = time.time() - t0
ids = tok(a.prompt, return_tensors="pt").input_ids

class Stamps(BaseStreamer):
    def __init__(self):
        self.times = []
    def put(self, value):
        self.times.append(time.time())
    def end(self):
        pass

gen = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
with torch.no_grad():
    model.generate(ids, **{**gen, "max_new_tokens": 4, "min_new_tokens": 4})
    s = Stamps()
    start = time.time()
    out = model.generate(ids, streamer=s, **gen)
    end = time.time()
new = out.shape[1] - ids.shape[1]
# The streamer's first put() is the prompt; the second is the first generated token.
first = s.times[1]
print(json.dumps({"suite": "decode", "backend": "cpu", "impl": f"transformers {__import__('transformers').__version__} / torch {torch.__version__}",
                  "prompt_tokens": ids.shape[1], "new_tokens": new, "load_s": load_s, "prefill_s": first - start,
                  "decode_tokens_per_s": (new - 1) / (end - first), "end_to_end_tokens_per_s": new / (end - start),
                  "threads": a.threads}))
