//! RMSNorm as in HF Llama, forward and input gradient, as one kernel each on CUDA.
//!
//! For a row `x ∈ ℝᵈ` (statistics in f32 whatever the dtype), scale `w`:
//! `r = 1/√(mean(x²) + ε)`, `y = cast(x·r) ⊙ w` (the cast to `x`'s dtype before the scale, as HF
//! does). With upstream `g` and `u = g ⊙ w` (f32), the input gradient is
//! `dx = r·u − x · r³ · mean(x ⊙ u)`.
//!
//! Written as burn ops the forward is ~11 kernels and autodiff's backward ~20, for each of a
//! Llama's `2L + 1` norms per step; on CUDA [`rms_norm`] is one kernel forward and one backward,
//! and the backward keeps only `x`. The scale is treated as a constant there: a tracked
//! (trainable) scale takes the burn-ops path, which differentiates it too.

use burn::tensor::{DType, Tensor};

/// RMSNorm over the last axis: `y = cast(x / √(mean(x²) + ε)) ⊙ w`.
///
/// # Shapes
/// - `x`: `[..., d]`, `w`: `[d]` → `[..., d]`.
///
/// # Panics
/// If `w`'s length is not `x`'s last dimension.
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f64) -> Tensor<D> {
    let dims = x.dims();
    let d = dims[D - 1];
    assert_eq!(w.dims()[0], d, "rms_norm: x is {dims:?}, the scale has {} entries", w.dims()[0]);
    if crate::gemm::uses_extension(&x.device()) && !w.is_require_grad() {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            let rows = dims[..D - 1].iter().product::<usize>();
            let w = if w.dtype() == x.dtype() { w } else { w.cast(x.dtype()) };
            let x2 = x.reshape([rows, d]);
            let y: Tensor<2> = Tensor::from_dispatch(<Dispatch as KernelBackend>::rms_norm(x2.into_dispatch(), w.into_dispatch(), eps));
            return y.reshape(dims);
        }
    }
    portable_rms_norm(x, w, eps)
}

/// [`rms_norm`] as burn ops (every backend; differentiable in `x` and `w`).
pub fn portable_rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x32 = if dtype == DType::F32 { x } else { x.cast(DType::F32) };
    let variance = mean_of_squares(x32.clone());
    let normed = x32 * variance.add_scalar(eps).sqrt().recip();
    let normed = if dtype == DType::F32 { normed } else { normed.cast(dtype) };
    normed * w.unsqueeze::<D>()
}

/// The input gradient of [`rms_norm`] for upstream `g`, as burn ops (the reference the CUDA
/// kernel is tested against).
///
/// # Shapes
/// - `x`, `g`: `[rows, d]`, `w`: `[d]` → `[rows, d]`.
pub fn portable_rms_norm_backward(x: Tensor<2>, w: Tensor<1>, g: Tensor<2>, eps: f64) -> Tensor<2> {
    let dtype = x.dtype();
    let x32 = x.cast(DType::F32);
    let u = g.cast(DType::F32) * w.cast(DType::F32).unsqueeze::<2>();
    let r = mean_of_squares(x32.clone()).add_scalar(eps).sqrt().recip();
    let dot = (x32.clone() * u.clone()).mean_dim(1);
    let dx = (u - x32 * r.clone().square() * dot) * r;
    dx.cast(dtype)
}

/// Columns summed per partial in [`mean_of_squares`]'s first stage.
const PARTIAL: usize = 64;

/// `mean(x²)` over the last axis, kept as a size-1 axis. For wide rows it sums in two stages
/// (`d/64`-wide partials, then the 64 partials of each row): CubeCL reduces a few long rows with
/// one small block (91 µs per 4096-wide row on an H200), and 64× more, 64× shorter rows spread
/// over the GPU. (Used by the burn-ops paths: wgpu, and CUDA with a trainable scale.)
///
/// # Shapes
/// - x: `[..., d]`
/// - output: `[..., 1]`
pub fn mean_of_squares<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let d = dims[D - 1];
    if !d.is_multiple_of(PARTIAL) || d < 16 * PARTIAL {
        return x.square().mean_dim(D - 1);
    }
    let rows = dims[..D - 1].iter().product::<usize>();
    let mut out_dims = dims;
    out_dims[D - 1] = 1;
    let partials = x.square().reshape([rows * PARTIAL, d / PARTIAL]).sum_dim(1);
    partials.reshape([rows, PARTIAL]).sum_dim(1).div_scalar(d as f64).reshape(out_dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    #[test]
    fn two_stage_mean_of_squares_equals_the_plain_mean() {
        let device = Device::flex();
        for d in [64, 1024, 4096, 1000] {
            let x = Tensor::<3>::random([2, 3, d], Distribution::Normal(0.0, 2.0), &device);
            let want = x.clone().square().mean_dim(2);
            mean_of_squares(x).into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-5, 1e-6));
        }
    }

    #[test]
    fn extension_forward_and_backward_match_burns_autodiff() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let x0 = Tensor::<3>::random([2, 5, 48], Distribution::Normal(0.5, 2.0), &plain);
        let w0 = Tensor::<1>::random([48], Distribution::Normal(1.0, 0.3), &plain);
        let t = Tensor::<3>::random([2, 5, 48], Distribution::Normal(0.0, 1.0), &plain);
        let run = |fast: bool| {
            let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let w = Tensor::<1>::from_data(w0.to_data(), &device);
            let y = if fast { rms_norm(x.clone(), w, 1e-5) } else { portable_rms_norm(x.clone(), w, 1e-5) };
            let grads = (y.clone() * Tensor::from_data(t.to_data(), &device)).sum().backward();
            (y.into_data(), x.grad(&grads).expect("dx").into_data())
        };
        let (fast, slow) = (run(true), run(false));
        let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-5);
        fast.0.assert_approx_eq::<f32>(&slow.0, tol);
        fast.1.assert_approx_eq::<f32>(&slow.1, tol);
    }

    #[test]
    fn a_trainable_scale_still_gets_its_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([3, 8], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<1>::ones([8], &device).require_grad();
        let grads = rms_norm(x, w.clone(), 1e-6).sum().backward();
        assert!(w.grad(&grads).is_some());
    }
}
