"""Reference timings for docs/cuda.md, measured in the same call as gpu_probe.

PyTorch bf16 `F.linear(x, W)` (cuBLAS) on the probe's shapes, and bitsandbytes'
`dequantize_4bit` (NF4, blocksize 64) on a 14336x4096 weight. Same method as the probe: random
inputs (two sets, alternated), warm-up, rounds of >= 20 ms timed with CUDA events, median.
Usage: python3 torch_ref.py OUT_DIR
"""
import sys
import torch
import torch.nn.functional as F

ROUNDS = 15


def timed(fn):
    for i in range(3):
        fn(i)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(3):
        fn(i)
    e.record()
    e.synchronize()
    per = s.elapsed_time(e) / 3
    iters = max(3, min(2000, int(20.0 / max(per, 1e-4)) + 1))
    out = []
    for _ in range(ROUNDS):
        s.record()
        for i in range(iters):
            fn(i)
        e.record()
        e.synchronize()
        out.append(s.elapsed_time(e) / iters)
    out.sort()
    return out[len(out) // 2], out[0], out[-1]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    dev = torch.device("cuda")
    lines = [f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", "",
             "| M×K×N | torch F.linear bf16 ms (TFLOP/s) |", "|---|---|"]
    for m, k, n in [(2048, 4096, 14336), (2048, 14336, 4096), (2048, 4096, 4096), (1, 4096, 14336)]:
        sets = [(torch.randn(m, k, device=dev, dtype=torch.bfloat16),
                 torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02) for _ in range(2)]
        ref = (sets[0][0].double() @ sets[0][1].double().T)
        got = F.linear(*sets[0]).double()
        err = ((got - ref).norm() / ref.norm()).item()
        assert err < 1e-2, err
        med, lo, hi = timed(lambda i: F.linear(*sets[i % 2]))
        lines.append(f"| {m}×{k}×{n} | {med:.3f} ({2 * m * k * n / med / 1e9:.0f}) | rel err {err:.1e}, spread {lo:.3f}-{hi:.3f}")
        print(lines[-1], flush=True)
    try:
        import bitsandbytes.functional as bnbf
        rows, cols = 14336, 4096
        n = rows * cols
        lines += ["", "| bitsandbytes dequantize_4bit NF4 14336×4096 → bf16 | ms (GB/s) |", "|---|---|"]
        for double in (False, True):
            w = torch.randn(rows, cols, device=dev, dtype=torch.bfloat16) * 0.02
            q, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double)
            blocks = n // 64
            read = n // 2 + ((blocks + 4 * ((blocks + 255) // 256) + 1024) if double else 4 * blocks) + 64
            nbytes = read + 2 * n
            med, lo, hi = timed(lambda i: bnbf.dequantize_4bit(q, state, quant_type="nf4"))
            lines.append(f"| {'double-quant' if double else 'f32 absmax'} | {med:.4f} ({nbytes / med / 1e6:.0f}) | spread {lo:.4f}-{hi:.4f}")
            print(lines[-1], flush=True)
    except Exception as exc:  # bitsandbytes is optional here
        lines.append(f"bitsandbytes skipped: {exc!r}")
        print(lines[-1], flush=True)
    with open(f"{out_dir}/torch_ref.md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
