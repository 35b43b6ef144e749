"""Runs the Python anchor (qlora_anchor.py) with TF32 matrix products allowed, the equivalent of
`bench --suite train --tf32`: peft's LoRA side path is an f32 product, which this turns into a
TF32 tensor-core product (torch's `allow_tf32`; bf16 products are unaffected).

usage: python3 anchor_tf32.py ANCHOR_SCRIPT OUTDIR [variant ...]
"""
import runpy
import sys

import torch

torch.backends.cuda.matmul.allow_tf32 = True
script = sys.argv[1]
sys.argv = [script] + sys.argv[2:]
print(f"allow_tf32={torch.backends.cuda.matmul.allow_tf32}", flush=True)
runpy.run_path(script, run_name="__main__")
