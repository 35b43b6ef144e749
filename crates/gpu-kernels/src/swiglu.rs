//! SwiGLU's gate: `h = silu(g) ⊙ u = g·σ(g) ⊙ u`, one kernel forward and one backward on CUDA.
//!
//! Backward for upstream `dh`: `du = dh ⊙ g·σ(g)`, `dg = dh ⊙ u ⊙ σ(g)·(1 + g·(1 − σ(g)))`,
//! in f32, written in the inputs' dtype. As burn ops the forward is three kernels and autodiff's
//! backward about seven.

use burn::tensor::{Tensor, activation::silu};

/// `silu(gate) ⊙ up`.
///
/// # Shapes
/// - `gate`, `up`: `[..., f]` (one shape) → `[..., f]`.
///
/// # Panics
/// If the shapes differ.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(gate.dims(), up.dims(), "swiglu: gate and up differ in shape");
    if crate::gemm::uses_extension(&gate.device()) && gate.dtype() == up.dtype() {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            let dims = gate.dims();
            let n = dims.iter().product::<usize>();
            let (g, u) = (gate.reshape([n]), up.reshape([n]));
            let h: Tensor<1> = Tensor::from_dispatch(<Dispatch as KernelBackend>::swiglu(g.into_dispatch(), u.into_dispatch()));
            return h.reshape(dims);
        }
    }
    portable_swiglu(gate, up)
}

/// [`swiglu`] as burn ops (every backend; differentiable).
pub fn portable_swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    #[test]
    fn fused_swiglu_and_its_gradients_match_the_ops_path() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let [g0, u0, w] = [1, 2, 3].map(|_| Tensor::<3>::random([2, 3, 7], Distribution::Normal(0.0, 3.0), &plain));
        let run = |fast: bool| {
            let g = Tensor::<3>::from_data(g0.to_data(), &device).require_grad();
            let u = Tensor::<3>::from_data(u0.to_data(), &device).require_grad();
            let h = if fast { swiglu(g.clone(), u.clone()) } else { portable_swiglu(g.clone(), u.clone()) };
            let grads = (h.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
            (h.into_data(), g.grad(&grads).expect("dg").into_data(), u.grad(&grads).expect("du").into_data())
        };
        let (fast, slow) = (run(true), run(false));
        let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
        fast.0.assert_approx_eq::<f32>(&slow.0, tol);
        fast.1.assert_approx_eq::<f32>(&slow.1, tol);
        fast.2.assert_approx_eq::<f32>(&slow.2, tol);
    }
}
