"""The Python baseline for `cargo xtask bench --suite train --device cpu`: trl's SFTTrainer with
peft LoRA on a bitsandbytes NF4 base (QLoRA, as the recipe), on this CPU, with the settings of
kindling's default finetune config: SmolLM2-135M-Instruct (from the same GGUF, dequantized to
f32 by transformers), the Alpaca-1k parquet `text` field, r 64 / α 16 / dropout 0.1 on q,v,
batch 4, max length 128 (transformers 5 has no group_by_length), AdamW 32-bit, lr 2e-4, constant schedule.

usage: PYTHONPATH=<bitsandbytes dir> python3 hf_train_cpu.py GGUF PARQUET [--steps 6] [--threads N]
Prints one JSON line: trained (non-padding) tokens per second over the steps after the first,
and the process's peak RSS.
"""
import argparse, json, os, resource, time

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
from trl import SFTConfig, SFTTrainer

p = argparse.ArgumentParser()
p.add_argument("gguf")
p.add_argument("parquet")
p.add_argument("--steps", type=int, default=6)
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--max-length", type=int, default=128)
p.add_argument("--no-4bit", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
folder, name = os.path.split(os.path.abspath(a.gguf))
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
tok.pad_token = tok.eos_token
quant = None if a.no_4bit else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                  bnb_4bit_compute_dtype=torch.float32)
# transformers cannot quantize while reading a GGUF: dequantize it to an HF folder once.
dense_dir = "/tmp/hf-train-cpu-dense"
if not os.path.exists(os.path.join(dense_dir, "config.json")):
    from transformers import LlamaConfig, LlamaForCausalLM
    g = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    cfg = LlamaConfig(**{k: v for k, v in g.config.to_dict().items() if k != "quantization_config"})
    plain = LlamaForCausalLM(cfg)
    plain.load_state_dict(g.state_dict(), strict=False)
    plain.save_pretrained(dense_dir)
model = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32, quantization_config=quant, device_map="cpu")
data = load_dataset("parquet", data_files=a.parquet, split="train")

class Clock(TrainerCallback):
    def __init__(self):
        self.t = []
        self.tokens = []
    def on_step_begin(self, args, state, control, **kw):
        self.t.append(time.time())
    def on_step_end(self, args, state, control, **kw):
        self.t.append(time.time())

clock = Clock()
cfg = SFTConfig(output_dir="/tmp/hf-train-cpu", max_steps=a.steps, per_device_train_batch_size=4,
                gradient_accumulation_steps=1, optim="adamw_torch", learning_rate=2e-4, weight_decay=0.001,
                max_grad_norm=0.3, lr_scheduler_type="constant",
                logging_steps=1, save_strategy="no", report_to=[], max_length=a.max_length,
                dataset_text_field="text", packing=False, use_cpu=True, seed=42, bf16=False, fp16=False)
trainer = SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok,
                     peft_config=LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, bias="none",
                                            task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"]),
                     callbacks=[clock])
# Count real tokens per step through the collator.
collate = trainer.data_collator
counts = []
def counting(features):
    batch = collate(features)
    counts.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel()))
    return batch
trainer.data_collator = counting
trainer.train()
steps = [(clock.t[2 * i + 1] - clock.t[2 * i]) for i in range(len(clock.t) // 2)]
timed = list(zip(steps[1:], counts[1:len(steps)]))
tps = sum(c for _, c in timed) / sum(s for s, _ in timed)
print(json.dumps({"suite": "train", "backend": "cpu", "impl": "trl+peft+bitsandbytes" + ("" if quant else " (dense)"),
                  "timed_steps": len(timed), "tokens_per_s": tps,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": a.threads}))
