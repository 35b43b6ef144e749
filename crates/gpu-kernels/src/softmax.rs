//! Attention's softmax with the score scale and the causal mask in one kernel, and its backward.
//!
//! Rows of `S: [batch, s, t]` (query `i` of `s` sees keys `j ≤ i + t − s` when causal):
//! `P = softmax(scale · S)` with f32 statistics, returned in `S`'s dtype. Backward, for upstream
//! `dP`: `dS = scale · P ⊙ (dP − Σⱼ P ⊙ dP)` (masked entries have `P = 0`, so get 0). The
//! backward keeps `P` only. As burn ops this is a cast, a scale, a mask built from two aranges,
//! a fill, softmax's four reductions and maps, and a cast back, each differentiated by burn.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, DType, Int, Tensor};

/// `softmax(scale · S)` over the last axis, future keys masked when `causal`.
///
/// # Shapes
/// - `scores`: `[batch, s, t]` with `s ≤ t` when causal → `[batch, s, t]`.
pub fn scaled_softmax(scores: Tensor<3>, scale: f64, causal: bool) -> Tensor<3> {
    if crate::gemm::uses_extension(&scores.device()) {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            return Tensor::from_dispatch(<Dispatch as KernelBackend>::scaled_softmax(scores.into_dispatch(), scale, causal));
        }
    }
    portable_scaled_softmax(scores, scale, causal, None)
}

/// [`scaled_softmax`] as burn ops, with an optional extra mask (`true` = hidden) over the scores
/// (every backend; differentiable).
pub fn portable_scaled_softmax(scores: Tensor<3>, scale: f64, causal: bool, mask: Option<Tensor<3, Bool>>) -> Tensor<3> {
    let [batch, s, t] = scores.dims();
    let dtype = scores.dtype();
    let scores = scores.cast(DType::F32).mul_scalar(scale);
    let scores = if causal && s > 1 {
        let device = scores.device();
        let rows = Tensor::<1, Int>::arange(0..s as i64, &device).reshape([s, 1]).add_scalar((t - s) as i64);
        let cols = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let future: Tensor<2, Bool> = rows.lower(cols);
        scores.mask_fill(future.unsqueeze_dim::<3>(0).expand([batch, s, t]), f32::NEG_INFINITY)
    } else {
        scores
    };
    let scores = match mask {
        Some(m) => scores.mask_fill(m, f32::NEG_INFINITY),
        None => scores,
    };
    softmax(scores, 2).cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    #[test]
    fn fused_softmax_and_its_gradient_match_the_ops_path() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        for (s, t, causal) in [(5, 5, true), (3, 7, true), (4, 6, false), (1, 9, false)] {
            let s0 = Tensor::<3>::random([3, s, t], Distribution::Normal(0.0, 3.0), &plain);
            let w = Tensor::<3>::random([3, s, t], Distribution::Normal(0.0, 1.0), &plain);
            let run = |fast: bool| {
                let x = Tensor::<3>::from_data(s0.to_data(), &device).require_grad();
                let p = if fast { scaled_softmax(x.clone(), 0.3, causal) } else { portable_scaled_softmax(x.clone(), 0.3, causal, None) };
                let grads = (p.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
                (p.into_data(), x.grad(&grads).expect("dS").into_data())
            };
            let (fast, slow) = (run(true), run(false));
            let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
            fast.0.assert_approx_eq::<f32>(&slow.0, tol);
            fast.1.assert_approx_eq::<f32>(&slow.1, tol);
        }
    }
}
