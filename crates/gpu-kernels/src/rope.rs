//! Rotary position embedding (HF's `rotate_half` form) fused with the head transpose.
//!
//! For a head vector `x = [x₁, x₂]` (halves of `d_h/2`) at a position with angles `θ`:
//! `y₁ = x₁·cos θ − x₂·sin θ`, `y₂ = x₂·cos θ + x₁·sin θ` (the tables repeat `cos θ`, `sin θ` over
//! both halves, HF's layout). The backward is the inverse rotation (`sin → −sin`) and the inverse
//! transpose. On CUDA each is one kernel; as burn ops the forward is a transpose copy, two
//! narrows, a negation, a concatenation and three arithmetic kernels.

use burn::tensor::Tensor;

/// `[b, s, n, d_h]` projections → rotated `[b, n, s, d_h]` heads.
///
/// # Shapes
/// - `x`: `[b, s, n, d_h]`; `cos`, `sin`: `[1 or b, s, d_h]` → `[b, n, s, d_h]`.
///
/// # Panics
/// If the shapes disagree or `d_h` is odd.
pub fn rope_heads(x: Tensor<4>, cos: Tensor<3>, sin: Tensor<3>) -> Tensor<4> {
    let [b, s, _, d] = x.dims();
    let [rows, ts, td] = cos.dims();
    assert!(d.is_multiple_of(2) && ts == s && td == d && (rows == 1 || rows == b), "rope: x {:?}, tables {:?}", x.dims(), cos.dims());
    assert_eq!(cos.dims(), sin.dims(), "rope: cos and sin tables differ in shape");
    if crate::gemm::uses_extension(&x.device()) && !cos.is_require_grad() && !sin.is_require_grad() {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            let (cos, sin) = if cos.dtype() == x.dtype() { (cos, sin) } else { (cos.cast(x.dtype()), sin.cast(x.dtype())) };
            return Tensor::from_dispatch(<Dispatch as KernelBackend>::rope(
                x.into_dispatch(),
                cos.into_dispatch(),
                sin.into_dispatch(),
                false,
            ));
        }
    }
    portable_rope(x.swap_dims(1, 2), cos, sin)
}

/// The rotation as burn ops on `[b, n, s, d_h]` heads (every backend; differentiable).
pub fn portable_rope(x: Tensor<4>, cos: Tensor<3>, sin: Tensor<3>) -> Tensor<4> {
    let [_, _, _, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.unsqueeze_dim::<4>(1) + rotated * sin.unsqueeze_dim::<4>(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    #[test]
    fn fused_rope_and_its_gradient_match_the_ops_path() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        for rows in [1, 2] {
            let x0 = Tensor::<4>::random([2, 5, 3, 8], Distribution::Normal(0.0, 1.0), &plain);
            let angles = Tensor::<3>::random([rows, 5, 4], Distribution::Uniform(-3.0, 3.0), &plain);
            let full = Tensor::cat(vec![angles.clone(), angles], 2);
            let (cos, sin) = (full.clone().cos(), full.sin());
            let t = Tensor::<4>::random([2, 3, 5, 8], Distribution::Normal(0.0, 1.0), &plain);
            let run = |fast: bool| {
                let x = Tensor::<4>::from_data(x0.to_data(), &device).require_grad();
                let (c, s) = (Tensor::<3>::from_data(cos.to_data(), &device), Tensor::<3>::from_data(sin.to_data(), &device));
                let y = if fast { rope_heads(x.clone(), c, s) } else { portable_rope(x.clone().swap_dims(1, 2), c, s) };
                let grads = (y.clone() * Tensor::from_data(t.to_data(), &device)).sum().backward();
                (y.into_data(), x.grad(&grads).expect("dx").into_data())
            };
            let (fast, slow) = (run(true), run(false));
            let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
            fast.0.assert_approx_eq::<f32>(&slow.0, tol);
            fast.1.assert_approx_eq::<f32>(&slow.1, tol);
        }
    }
}
