//! `bench --suite ops --op NAME`: one layer operation on the chosen backend, in its compute dtype,
//! at the tiny fixtures' and at Llama-3-8B's attention shapes, compared with the CPU in f32.
//! For finding which kernel of a backend fails or hangs (run each op in its own process under a
//! host timeout, as `scripts/gpu/run_diagnose.sh` does).

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{Args, emit, xorshift};
use crate::backend::Backend;

/// The operations `--op` takes.
pub const OPS: [&str; 7] = ["bmm", "attention", "attention-backward", "burn-attention", "burn-matmul", "softmax", "cross-entropy"];

/// `[batch, heads, len, head_dim]` shapes: the tiny fixtures' and the 8B training step's.
const SHAPES: [[usize; 4]; 2] = [[1, 4, 7, 16], [4, 32, 512, 128]];

fn draw(shape: [usize; 4], seed: u64) -> TensorData {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..n).map(|_| (xorshift(&mut x) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).collect();
    TensorData::new(values, shape)
}

fn on(data: &TensorData, device: &Device, backend: Backend) -> Tensor<4> {
    Tensor::<4>::from_data(data.clone(), device).cast(backend.dtype())
}

/// A tensor's values as f32 on the host.
pub(super) fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.cast(burn::tensor::FloatDType::F32).into_data().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// `‖a − b‖ / ‖b‖`.
pub(super) fn rel(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// One op on `[q, k, v]` draws → a flat result.
fn apply(op: &str, qkv: [Tensor<4>; 3]) -> Result<Vec<f32>> {
    let [q, k, v] = qkv;
    let [b, h, s, d] = q.dims();
    let causal = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
    match op {
        "bmm" => host(gpu_kernels::bmm(q.reshape([b * h, s, d]), k.reshape([b * h, s, d]), false, true)),
        "attention" => host(gpu_kernels::attention(q, k, v, true, None)),
        "attention-backward" => {
            let (q, k, v) = (q.require_grad(), k.require_grad(), v.require_grad());
            let grads = gpu_kernels::attention(q.clone(), k, v, true, None).sum().backward();
            host(q.grad(&grads).ok_or_else(|| anyhow::anyhow!("no gradient"))?)
        }
        "burn-attention" => host(attention(q, k, v, None, None, causal)),
        "burn-matmul" => host(q.matmul(k.transpose())),
        "softmax" => host(softmax(q.matmul(k.transpose()), 3)),
        "cross-entropy" => {
            let logits = q.reshape([b * h * s, d]);
            let targets = Tensor::<1, Int>::arange(0..(b * h * s) as i64, &logits.device()).remainder_scalar(d as i64);
            let picked = log_softmax(logits, 1).gather(1, targets.reshape([b * h * s, 1]));
            host(picked)
        }
        other => bail!("unknown op `{other}`; ops: {}", OPS.join(", ")),
    }
}

/// Runs `--op` on the backend at each shape and on the CPU, printing one JSON line per shape.
pub fn run(args: &Args, op: &str) -> Result<()> {
    if !OPS.contains(&op) {
        bail!("unknown op `{op}`; ops: {}", OPS.join(", "));
    }
    let autodiff = op.ends_with("-backward");
    for shape in SHAPES {
        let data = [draw(shape, 1), draw(shape, 2), draw(shape, 3)];
        let mut results = Vec::new();
        for backend in [args.backend, Backend::Cpu] {
            let device = if autodiff { backend.device()?.autodiff() } else { backend.device()? };
            let start = Instant::now();
            let out = apply(op, data.clone().map(|d| on(&d, &device, backend)))?;
            results.push((out, start.elapsed().as_secs_f64()));
            eprintln!("ops: {op} {shape:?} on {backend:?} done in {:.2}s", start.elapsed().as_secs_f64());
        }
        let (ours, cpu) = (&results[0], &results[1]);
        emit(
            args,
            serde_json::json!({
                "suite": "ops", "backend": format!("{:?}", args.backend).to_lowercase(), "op": op, "shape": shape,
                "seconds_first_call": ours.1, "relative_error_vs_cpu_f32": rel(&ours.0, &cpu.0),
                "finite": ours.0.iter().all(|v| v.is_finite()),
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_runs_on_the_cpu_and_unknown_ones_are_named() {
        let device = Backend::Cpu.device().expect("cpu");
        for op in OPS {
            let device = if op.ends_with("-backward") { device.clone().autodiff() } else { device.clone() };
            let data = [draw(SHAPES[0], 1), draw(SHAPES[0], 2), draw(SHAPES[0], 3)];
            let out = apply(op, data.map(|d| on(&d, &device, Backend::Cpu))).expect(op);
            assert!(!out.is_empty() && out.iter().all(|v| v.is_finite()), "{op}");
        }
        // Ours and burn's attention agree on the CPU.
        let data = [draw(SHAPES[0], 1), draw(SHAPES[0], 2), draw(SHAPES[0], 3)];
        let ours = apply("attention", data.clone().map(|d| on(&d, &device, Backend::Cpu))).expect("ours");
        let burns = apply("burn-attention", data.map(|d| on(&d, &device, Backend::Cpu))).expect("burn");
        assert!(rel(&ours, &burns) < 1e-5);
        let err =
            apply("conv", [draw(SHAPES[0], 1), draw(SHAPES[0], 2), draw(SHAPES[0], 3)].map(|d| on(&d, &device, Backend::Cpu))).unwrap_err();
        assert!(err.to_string().contains("unknown op `conv`"), "{err}");
    }
}
