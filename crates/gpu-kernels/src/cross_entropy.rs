//! Per-row cross-entropy over a large vocabulary without f32 logits: one kernel forward, one
//! backward on CUDA.
//!
//! For a row of logits `z ∈ ℝⱽ` (any float dtype, statistics in f32) and target `y`:
//! `ℓ = log Σⱼ exp(zⱼ) − z_y`, and `ℓ = 0` when `y = ignore`. Backward for upstream `g` (one per
//! row): `∂ℓ/∂zⱼ = g · (softmax(z)ⱼ − [j = y])`, written in the logits' dtype; the backward
//! recomputes the row's max and sum instead of keeping anything but the logits. As burn ops
//! (a cast to f32, `log_softmax`, a gather) a `[2048, 128256]` batch holds ≥ 2 GB of f32
//! logits and log-probabilities until the backward.

use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Int, Tensor};

/// `ℓᵣ` for every row of `logits: [n, V]` with `targets: [n]` (`ignore` → 0), in f32.
///
/// # Shapes
/// - `logits`: `[n, V]`, `targets`: `[n]` → `[n]`.
///
/// # Panics
/// If the row counts differ.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, ignore: i64) -> Tensor<1> {
    assert_eq!(logits.dims()[0], targets.dims()[0], "cross_entropy: {:?} logits for {:?} targets", logits.dims(), targets.dims());
    if crate::gemm::uses_extension(&logits.device()) {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            return Tensor::from_dispatch(<Dispatch as KernelBackend>::cross_entropy(
                logits.into_dispatch(),
                targets.into_dispatch(),
                ignore,
            ));
        }
    }
    portable_cross_entropy(logits, targets, ignore)
}

/// [`cross_entropy`] as burn ops (every backend; differentiable).
pub fn portable_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, ignore: i64) -> Tensor<1> {
    let [n, _] = logits.dims();
    let counted = targets.clone().not_equal_elem(ignore).float();
    let index = targets.clamp_min(0).reshape([n, 1]);
    let picked = log_softmax(logits.cast(DType::F32), 1).gather(1, index).reshape([n]);
    picked.neg() * counted
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    #[test]
    fn fused_loss_and_its_gradient_match_the_ops_path() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let z0 = Tensor::<2>::random([6, 37], Distribution::Normal(0.0, 3.0), &plain);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, -100, 0, 36, 5, -100], [6]), &device);
        let w = Tensor::<1>::random([6], Distribution::Normal(0.0, 1.0), &plain);
        let run = |fast: bool| {
            let z = Tensor::<2>::from_data(z0.to_data(), &device).require_grad();
            let l = if fast {
                cross_entropy(z.clone(), targets.clone(), -100)
            } else {
                portable_cross_entropy(z.clone(), targets.clone(), -100)
            };
            let grads = (l.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
            (l.into_data(), z.grad(&grads).expect("dz").into_data())
        };
        let (fast, slow) = (run(true), run(false));
        let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
        fast.0.assert_approx_eq::<f32>(&slow.0, tol);
        fast.1.assert_approx_eq::<f32>(&slow.1, tol);
        let l = fast.0.try_to_vec::<f32>().expect("f32");
        assert_eq!((l[1], l[5]), (0.0, 0.0));
    }
}
