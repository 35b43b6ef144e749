//! A LoRA-adapted projection over a packed 4-bit base as one op:
//! `y = x · Wᵀ + (s · dropout(x) · Aᵀ) · Bᵀ`, whose backward joins the two paths' input
//! gradients inside one product instead of a separate add.
//!
//! Shapes: `x: [rows, in]`, `W: [out, in]` (packed), `A: [r, in]`, `B: [out, r]`, `y: [rows, out]`.
//! Forward (as the separate ops compute it): `x_d = s · m ⊙ x / (1 − p)` (the counter-hash mask
//! `m` of [`crate::dropout`]), `h = x_d · Aᵀ`, `y = h · Bᵀ + x · Wᵀ` (the second product
//! accumulating onto the base's, [`crate::gemm_add`]). Backward for upstream `dy`:
//! `dB = dyᵀ · h`, `dh = dy · B`, `dA = dhᵀ · x_d`, and
//! `dx = dy · W + s · m ⊙ (dh · A) / (1 − p)` — the dropout's backward first, then the base's
//! product accumulating onto it (`W` dequantized again, as [`crate::nf4_linear`]'s backward
//! does). As separate ops the two contributions to `dx` meet in an add of `[rows, in]`; here
//! the product's `beta = 1` does it. What is kept for the backward is what the separate ops keep:
//! `x_d`, `h` (`[rows, r]`) and the factors; no dense `W`.

use burn::tensor::{DType, Tensor};

use crate::nf4::PackedNf4;

/// The side path's settings: dropout probability `p` (in `(0, 1)`), scale `s`, the mask's seed,
/// and whether the value is wanted (`false`: [`crate::nf4_linear_gradient_only`]'s contract —
/// the op's value is zeros on the kernel path, its gradients are the product's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SidePath {
    /// Dropout probability.
    pub p: f64,
    /// The adapter's scale `s` (`α/r`).
    pub scale: f64,
    /// The dropout mask's seed.
    pub seed: u64,
    /// Whether the op's value is read.
    pub value: bool,
}

/// The side path's dropout of a `[rows, cols]` tensor, cast to `dtype` (the backend's dropout
/// takes and gives 1-D tensors).
#[cfg(any(test, feature = "cuda"))]
pub(crate) fn dropout_rows<B: crate::extension::KernelBackend>(
    x: burn::backend::tensor::FloatTensor<B>,
    side: SidePath,
    dtype: DType,
) -> burn::backend::tensor::FloatTensor<B> {
    use burn::backend::TensorMetadata;
    let shape = x.shape();
    let flat = B::float_reshape(x, [shape.num_elements()].into());
    B::float_reshape(B::dropout(flat, side.p, side.scale, side.seed, dtype), shape)
}

/// `x · Wᵀ + (s · dropout(x) · Aᵀ) · Bᵀ` as one op on autodiff devices that take this crate's
/// kernels (CUDA training), when `x`, `A` and `B` share one float dtype (the base's compute
/// dtype) and `0 < p < 1`; `None` otherwise (the caller composes the separate ops). With `value`
/// false the value is zeros (nothing but what the backward needs is computed).
///
/// The mask's seed is drawn from [`crate::dropout`]'s stream, as [`crate::dropout::fused_dropout`]
/// draws it: one draw per call, so a sequence of calls masks as the separate ops would.
///
/// # Shapes
/// - `x`: `[..., in]`, `a`: `[r, in]`, `b`: `[out, r]` → `[..., out]`.
///
/// # Panics
/// If the shapes disagree, or a CUDA library call fails.
pub fn nf4_lora_linear<const D: usize>(
    x: Tensor<D>,
    w: &PackedNf4,
    a: Tensor<2>,
    b: Tensor<2>,
    p: f64,
    scale: f64,
    value: bool,
) -> Option<Tensor<D>> {
    let device = x.device();
    let dtype = x.dtype();
    let taken = p > 0.0
        && p < 1.0
        && device.is_autodiff()
        && crate::gemm::uses_extension(&device)
        && matches!(dtype, DType::BF16 | DType::F16 | DType::F32)
        && a.dtype() == dtype
        && b.dtype() == dtype
        && x.shape().num_elements() < u32::MAX as usize;
    if !taken {
        return None;
    }
    let dims = x.dims();
    let [out, inp] = w.shape;
    let ([r, a_in], [b_out, b_r]) = (a.dims(), b.dims());
    assert!(
        dims[D - 1] == inp && a_in == inp && b_out == out && b_r == r,
        "nf4_lora_linear: x {dims:?}, W [{out}, {inp}], A [{r}, {a_in}], B [{b_out}, {b_r}] disagree"
    );
    #[cfg(any(test, feature = "cuda"))]
    {
        use crate::extension::KernelBackend;
        use burn::backend::Dispatch;
        let rows: usize = dims[..D - 1].iter().product();
        let w = w.parts(crate::nf4::float_dtype(dtype));
        let side = SidePath { p, scale, seed: crate::dropout::next_seed(), value };
        let y = <Dispatch as KernelBackend>::nf4_lora_linear(
            x.reshape([rows, inp]).into_dispatch(),
            w.packed,
            w.code,
            w.absmax,
            w.qcodes,
            w.nested_code,
            w.meta,
            a.into_dispatch(),
            b.into_dispatch(),
            side,
        );
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        return Some(Tensor::<2>::from_dispatch(y).reshape(out_dims));
    }
    #[allow(unreachable_code)]
    {
        let _ = (value, scale, b);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropout::{STREAM_LOCK, fused_dropout, set_seed};
    use crate::nf4::tests::{upload, values};
    use crate::{gemm_add, linear, nf4_linear, nf4_linear_gradient_only};
    use burn::tensor::{Device, Distribution};
    use nf4_quant::{Nf4Tensor, QuantConfig};

    type Run = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn one_op_equals_the_separate_ops_value_and_gradients() {
        let _stream = STREAM_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let (rows, inp, out, r) = (6, 64, 24, 8);
        let t = Nf4Tensor::quantize(&values(out * inp, 3), &[out, inp], &QuantConfig::nf4().with_blocksize(32)).expect("quantize");
        let w = upload(&t, &plain);
        let x0 = Tensor::<3>::random([2, 3, inp], Distribution::Normal(0.0, 1.0), &plain);
        let a0 = Tensor::<2>::random([r, inp], Distribution::Normal(0.0, 0.3), &plain);
        let b0 = Tensor::<2>::random([out, r], Distribution::Normal(0.0, 0.3), &plain);
        let g0 = Tensor::<3>::random([2, 3, out], Distribution::Normal(0.0, 1.0), &plain);
        let (p, scale) = (0.3, 0.5);
        // `fused`: the one op; otherwise the separate ops it replaces (base, dropout, two products).
        let run = |fused: bool, value: bool, seed: u64| -> Run {
            let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let a = Tensor::<2>::from_data(a0.to_data(), &device).require_grad();
            let b = Tensor::<2>::from_data(b0.to_data(), &device).require_grad();
            set_seed(seed);
            let y = if fused {
                nf4_lora_linear(x.clone(), &w, a.clone(), b.clone(), p, scale, value).expect("the kernel path takes it")
            } else {
                let base = if value { nf4_linear(x.clone(), &w) } else { nf4_linear_gradient_only(x.clone(), &w) };
                let xd = fused_dropout(x.clone(), p, scale, DType::F32).expect("fused dropout");
                let h = linear(xd, a.clone());
                gemm_add(h.reshape([rows, r]), b.clone(), false, true, base.reshape([rows, out])).reshape([2, 3, out])
            };
            let grads = (y.clone() * Tensor::from_data(g0.to_data(), &device)).sum().backward();
            let grad = |t: Option<Tensor<2>>| host(t.expect("a gradient"));
            (host(y), host(x.grad(&grads).expect("dx")), grad(a.grad(&grads)), grad(b.grad(&grads)))
        };
        let close = |what: &str, got: &[f32], want: &[f32]| {
            assert_eq!(got.len(), want.len(), "{what}: length");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
            }
        };
        let (fused, separate) = (run(true, true, 11), run(false, true, 11));
        assert!(fused.0.iter().any(|&v| v != 0.0));
        close("y", &fused.0, &separate.0);
        close("dx", &fused.1, &separate.1);
        close("dA", &fused.2, &separate.2);
        close("dB", &fused.3, &separate.3);
        // The mask matters: another seed draws another, and A's gradient changes.
        assert_ne!(run(true, true, 12).2, fused.2, "the seed reaches the mask");
        let gradient_only = run(true, false, 11);
        assert!(gradient_only.0.iter().all(|&v| v == 0.0), "the value is not computed");
        close("dx (gradient only)", &gradient_only.1, &fused.1);
        close("dA (gradient only)", &gradient_only.2, &fused.2);
        close("dB (gradient only)", &gradient_only.3, &fused.3);
    }

    #[test]
    fn other_settings_are_left_to_the_separate_ops() {
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let t = Nf4Tensor::quantize(&values(24 * 64, 5), &[24, 64], &QuantConfig::nf4().with_blocksize(32)).expect("quantize");
        let w = upload(&t, &plain);
        let x = Tensor::<2>::ones([3, 64], &device);
        let (a, b) = (Tensor::<2>::ones([4, 64], &device), Tensor::<2>::ones([24, 4], &device));
        assert!(nf4_lora_linear(x.clone(), &w, a.clone(), b.clone(), 0.0, 1.0, true).is_none(), "no dropout");
        assert!(nf4_lora_linear(x.clone().cast(DType::BF16), &w, a.clone(), b.clone(), 0.1, 1.0, true).is_none(), "mixed dtypes");
        let untracked = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &plain);
        assert!(nf4_lora_linear(untracked(&x), &w, untracked(&a), untracked(&b), 0.1, 1.0, true).is_none(), "no autodiff");
        assert!(nf4_lora_linear(x, &w, a, b, 0.1, 1.0, true).is_some());
    }
}
