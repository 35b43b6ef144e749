//! Batch-1 decoding products: one input row against up to three packed 4-bit weights, with the
//! layer's neighbours of those products folded in, so that a decoder block takes five launches
//! for its seven projections, two norms, SwiGLU and two residual adds (each product a separate
//! launch otherwise: about twice as many, and decoding one token is bound by the host issuing them).
//!
//! For `x: [1, d]` and packed `W_i: [r_i, d]`:
//! - `x̂ = rms_norm(x; w, ε)` when a norm is given (HF's order: statistics in f32, the
//!   normalized row rounded to `x`'s dtype, then the scale), else `x̂ = x`;
//! - [`GemvEpilogue::Concat`]: `y = [x̂·W₀ᵀ, x̂·W₁ᵀ, x̂·W₂ᵀ]`, `[1, Σ r_i]` (q, k and v);
//! - [`GemvEpilogue::SwiGlu`]: `y = silu(x̂·W₀ᵀ) ⊙ x̂·W₁ᵀ`, `[1, r₀]` (gate and up, `r₀ = r₁`);
//! - [`GemvEpilogue::Residual`]: `y = res + x̂·W₀ᵀ`, `[1, r₀]` (o and down).
//!
//! Each product is rounded to `x`'s dtype before the epilogue, as the separate ops round it, so
//! the fused CUDA kernel gives the same values as the composition ([`compose`]) that every other
//! backend runs.
//!
//! [`decode_attention`] is the attention between those products for one new position `p`:
//! from `qkv = [q, k, v]` (`H`, `H_kv`, `H_kv` heads of `d_h`) it rotates `q` and `k` (RoPE at
//! `p`), writes `k`, `v` into row `p` of the cache buffers `[1, H_kv, capacity, d_h]` and returns
//! `o_h = softmax(q_h·K_{0..=p}ᵀ/√d_h)·V_{0..=p}` for every query head `h` (K/V head
//! `h / (H/H_kv)`), heads side by side `[1, H·d_h]` — one launch on CUDA instead of two RoPE
//! kernels, two cache writes, two batched GEMMs and a softmax.

use burn::tensor::Tensor;

use crate::nf4::PackedNf4;

/// What follows the products (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemvEpilogue {
    /// The outputs side by side.
    Concat,
    /// `silu(first) ⊙ second`.
    SwiGlu,
    /// The residual plus the one product.
    Residual,
}

/// The plan of one fused call: how many weights, whether a norm comes first, the epilogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemvPlan {
    /// Weights used (1–3); the unused slots repeat the first.
    pub parts: usize,
    /// `ε` of the RMSNorm applied to `x` first, if any.
    pub norm_eps: Option<f64>,
    /// What follows the products.
    pub epilogue: GemvEpilogue,
}

/// A fused batch-1 product; see the module docs.
///
/// `norm` is the RMSNorm scale `[d]` and `ε`; `residual` (`[1, r₀]`) is required by
/// [`GemvEpilogue::Residual`] and ignored otherwise.
///
/// # Panics
/// If `x` is not one row of the weights' width, the weights' count does not fit the epilogue
/// (Concat 1–3, SwiGlu 2 of one shape, Residual 1), or the residual is missing or misshapen.
pub fn nf4_gemv_fused(
    x: Tensor<2>,
    weights: &[&PackedNf4],
    norm: Option<(Tensor<1>, f64)>,
    epilogue: GemvEpilogue,
    residual: Option<Tensor<2>>,
) -> Tensor<2> {
    let [m, d] = x.dims();
    assert_eq!(m, 1, "nf4_gemv_fused: x must be one row, got {m}");
    assert!(weights.iter().all(|w| w.shape()[1] == d), "nf4_gemv_fused: every weight must have {d} columns");
    let ok = match epilogue {
        GemvEpilogue::Concat => (1..=3).contains(&weights.len()),
        GemvEpilogue::SwiGlu => weights.len() == 2 && weights[0].shape() == weights[1].shape(),
        GemvEpilogue::Residual => weights.len() == 1,
    };
    assert!(ok, "nf4_gemv_fused: {} weights do not fit {epilogue:?}", weights.len());
    if epilogue == GemvEpilogue::Residual {
        let dims = residual.as_ref().map(|r| r.dims());
        assert_eq!(dims, Some([1, weights[0].shape()[0]]), "nf4_gemv_fused: the residual must be [1, rows]");
    }
    if crate::gemm::uses_extension(&x.device()) {
        #[cfg(any(test, feature = "cuda"))]
        {
            let plan = GemvPlan { parts: weights.len(), norm_eps: norm.as_ref().map(|n| n.1), epilogue };
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            let dtype = crate::nf4::float_dtype(x.dtype());
            let pick = |i: usize| weights.get(i).copied().unwrap_or(weights[0]).parts(dtype);
            let norm_w = norm.map_or_else(|| x.clone().reshape([d]), |n| n.0);
            let residual = residual.unwrap_or_else(|| x.clone());
            let y = <Dispatch as KernelBackend>::nf4_gemv_fused(
                x.into_dispatch(),
                norm_w.into_dispatch(),
                residual.into_dispatch(),
                pick(0),
                pick(1),
                pick(2),
                plan,
            );
            return Tensor::from_dispatch(y);
        }
    }
    let x = match norm {
        Some((w, eps)) => crate::rms_norm(x, w, eps),
        None => x,
    };
    let mut outs: Vec<Tensor<2>> = weights.iter().map(|w| crate::nf4_linear(x.clone(), w)).collect();
    match epilogue {
        GemvEpilogue::Concat => Tensor::cat(outs, 1),
        GemvEpilogue::SwiGlu => {
            let up = outs.pop().expect("two products");
            crate::swiglu(outs.pop().expect("two products"), up)
        }
        GemvEpilogue::Residual => residual.expect("checked above") + outs.pop().expect("one product"),
    }
}

/// Attention of one decoded position (see the module docs): `(o, keys, values)` with the cache
/// buffers written at `pos`.
///
/// # Shapes
/// - `qkv`: `[1, (H + 2·H_kv)·d_h]`; `cos`, `sin`: `[1, 1, d_h]` (the tables at `pos`)
/// - `keys`, `values`: `[1, H_kv, capacity, d_h]`, `pos < capacity`
/// - output: `[1, H·d_h]` and the two buffers
///
/// # Panics
/// If the shapes disagree.
pub fn decode_attention(
    qkv: Tensor<2>,
    cos: Tensor<3>,
    sin: Tensor<3>,
    keys: Tensor<4>,
    values: Tensor<4>,
    pos: usize,
    heads: usize,
) -> (Tensor<2>, Tensor<4>, Tensor<4>) {
    let [_, hkv, capacity, dh] = keys.dims();
    assert!(
        pos < capacity && values.dims() == keys.dims(),
        "decode_attention: position {pos}, caches {:?} and {:?}",
        keys.dims(),
        values.dims()
    );
    assert_eq!(qkv.dims(), [1, (heads + 2 * hkv) * dh], "decode_attention: qkv for {heads} + 2·{hkv} heads of {dh}");
    #[cfg(feature = "cuda")]
    let (qkv, cos, sin, keys, values) =
        match cuda_decode_attention((qkv, cos, sin, keys, values), || crate::cuda::decode_attention::Position::Host(pos), heads) {
            Ok(out) => return out,
            Err(inputs) => inputs,
        };
    portable_decode_attention(qkv, cos, sin, keys, values, pos, heads)
}

/// The inputs of the decoding attention: `qkv`, `cos`, `sin`, `keys`, `values`.
#[cfg(feature = "cuda")]
pub(crate) type AttentionInputs = (Tensor<2>, Tensor<3>, Tensor<3>, Tensor<4>, Tensor<4>);

/// The CUDA kernel's route of [`decode_attention`] and [`crate::decode_attention_at`]: the
/// inputs back when they are not plain CUDA tensors or the kernel does not take their shapes
/// (the caller then composes the ops). `position` gives the kernel's position source.
#[cfg(feature = "cuda")]
#[allow(clippy::result_large_err)]
pub(crate) fn cuda_decode_attention(
    (qkv, cos, sin, keys, values): AttentionInputs,
    position: impl FnOnce() -> crate::cuda::decode_attention::Position,
    heads: usize,
) -> Result<(Tensor<2>, Tensor<4>, Tensor<4>), AttentionInputs> {
    let plain = [qkv.is_autodiff(), cos.is_autodiff(), sin.is_autodiff(), keys.is_autodiff(), values.is_autodiff()].iter().all(|a| !a);
    if !crate::gemm::is_cuda(&qkv.device()) || !plain {
        return Err((qkv, cos, sin, keys, values));
    }
    type B = burn_cubecl::CubeBackend;
    let parts = (
        qkv.try_into_primitive::<B>().expect("a CUDA tensor"),
        cos.try_into_primitive::<B>().expect("a CUDA tensor"),
        sin.try_into_primitive::<B>().expect("a CUDA tensor"),
        keys.try_into_primitive::<B>().expect("a CUDA tensor"),
        values.try_into_primitive::<B>().expect("a CUDA tensor"),
    );
    match crate::cuda::decode_attention::decode_attention(parts.0, parts.1, parts.2, parts.3, parts.4, position(), heads) {
        Ok((o, k, v)) => Ok((Tensor::from_primitive::<B>(o), Tensor::from_primitive::<B>(k), Tensor::from_primitive::<B>(v))),
        Err((q, c, s, k, v)) => Err((
            Tensor::from_primitive::<B>(q),
            Tensor::from_primitive::<B>(c),
            Tensor::from_primitive::<B>(s),
            Tensor::from_primitive::<B>(k),
            Tensor::from_primitive::<B>(v),
        )),
    }
}

/// [`decode_attention`] as the separate ops (RoPE, slice assignments, [`crate::attention`]):
/// every backend, and the reference of the CUDA kernel.
///
/// # Panics
/// As [`decode_attention`].
pub fn portable_decode_attention(
    qkv: Tensor<2>,
    cos: Tensor<3>,
    sin: Tensor<3>,
    keys: Tensor<4>,
    values: Tensor<4>,
    pos: usize,
    heads: usize,
) -> (Tensor<2>, Tensor<4>, Tensor<4>) {
    let [_, hkv, _, dh] = keys.dims();
    let (nq, nkv) = (heads * dh, hkv * dh);
    let q = crate::rope_heads(qkv.clone().narrow(1, 0, nq).reshape([1, 1, heads, dh]), cos.clone(), sin.clone());
    let k = crate::rope_heads(qkv.clone().narrow(1, nq, nkv).reshape([1, 1, hkv, dh]), cos, sin);
    let v = qkv.narrow(1, nq + nkv, nkv).reshape([1, hkv, 1, dh]);
    let keys = keys.slice_assign([0..1, 0..hkv, pos..pos + 1, 0..dh], k);
    let values = values.slice_assign([0..1, 0..hkv, pos..pos + 1, 0..dh], v);
    let (kt, vt) = (keys.clone().narrow(2, 0, pos + 1), values.clone().narrow(2, 0, pos + 1));
    let o = crate::attention(q.reshape([1, hkv, heads / hkv, dh]), kt, vt, false, None);
    (o.reshape([1, nq]), keys, values)
}

/// [`nf4_gemv_fused`] as the backend's separate primitives (RMSNorm, packed linear, SwiGLU,
/// concatenation, addition): the default of `KernelBackend::nf4_gemv_fused`, and what the CUDA
/// kernel falls back to for shapes it does not take.
#[cfg(any(test, feature = "cuda"))]
pub(crate) fn compose<B: crate::extension::KernelBackend>(
    x: burn::backend::tensor::FloatTensor<B>,
    norm_w: burn::backend::tensor::FloatTensor<B>,
    residual: burn::backend::tensor::FloatTensor<B>,
    weights: [crate::extension::Nf4Parts<B>; 3],
    plan: GemvPlan,
) -> burn::backend::tensor::FloatTensor<B> {
    let x = match plan.norm_eps {
        Some(eps) => B::rms_norm(x, norm_w, eps),
        None => x,
    };
    let mut outs: Vec<_> = weights
        .into_iter()
        .take(plan.parts)
        .map(|w| B::nf4_linear(x.clone(), w.packed, w.code, w.absmax, w.qcodes, w.nested_code, w.meta))
        .collect();
    match plan.epilogue {
        GemvEpilogue::Concat => B::float_cat(outs, 1),
        GemvEpilogue::SwiGlu => {
            let up = outs.pop().expect("two products");
            let gate = outs.pop().expect("two products");
            let rows = burn::backend::TensorMetadata::shape(&gate).num_elements();
            let h = B::swiglu(B::float_reshape(gate, [rows].into()), B::float_reshape(up, [rows].into()));
            B::float_reshape(h, [1, rows].into())
        }
        GemvEpilogue::Residual => B::float_add(residual, outs.pop().expect("one product")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostScales, PackedNf4, nf4_linear, rms_norm, swiglu};
    use burn::tensor::{Device, Distribution, Tolerance};
    use nf4_quant::{Absmax, Nf4Tensor, QuantConfig};

    fn packed(rows: usize, cols: usize, seed: u64, device: &Device) -> PackedNf4 {
        let values: Vec<f32> = (0..rows * cols).map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0) * 0.1).collect();
        let t = Nf4Tensor::quantize(&values, &[rows, cols], &QuantConfig::nf4().with_double_quant(true)).expect("quantize");
        let Absmax::Double(d) = t.absmax() else { panic!("double quantization asked") };
        let scales = HostScales::Double {
            codes: &d.codes,
            nested_absmax: &d.nested_absmax,
            nested_code: &d.nested_code,
            nested_blocksize: d.nested_blocksize,
            offset: d.offset,
        };
        PackedNf4::upload(t.packed(), scales, t.quant_type().decode_table(), [rows, cols], t.blocksize(), device).expect("upload")
    }

    /// The extension's composed path (what Flex and autodiff run) equals the public ops one by one.
    #[test]
    fn fused_products_equal_the_separate_ops() {
        let device = Device::flex();
        let d = 128;
        let x = Tensor::<2>::random([1, d], Distribution::Normal(0.0, 1.0), &device);
        let nw = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.2), &device);
        let (q, k, v) = (packed(64, d, 1, &device), packed(32, d, 2, &device), packed(32, d, 3, &device));
        let tol = Tolerance::<f32>::rel_abs(1e-6, 1e-6);
        let xn = rms_norm(x.clone(), nw.clone(), 1e-5);

        let y = nf4_gemv_fused(x.clone(), &[&q, &k, &v], Some((nw.clone(), 1e-5)), GemvEpilogue::Concat, None);
        let want = Tensor::cat(vec![nf4_linear(xn.clone(), &q), nf4_linear(xn.clone(), &k), nf4_linear(xn.clone(), &v)], 1);
        assert_eq!(y.dims(), [1, 128]);
        y.into_data().assert_approx_eq::<f32>(&want.into_data(), tol);

        let (g, u) = (packed(96, d, 4, &device), packed(96, d, 5, &device));
        let y = nf4_gemv_fused(x.clone(), &[&g, &u], Some((nw, 1e-5)), GemvEpilogue::SwiGlu, None);
        let want = swiglu(nf4_linear(xn.clone(), &g), nf4_linear(xn, &u));
        y.into_data().assert_approx_eq::<f32>(&want.into_data(), tol);

        let res = Tensor::<2>::random([1, 64], Distribution::Normal(0.0, 1.0), &device);
        let y = nf4_gemv_fused(x.clone(), &[&q], None, GemvEpilogue::Residual, Some(res.clone()));
        let want = res + nf4_linear(x, &q);
        y.into_data().assert_approx_eq::<f32>(&want.into_data(), tol);
    }

    #[test]
    #[should_panic(expected = "do not fit SwiGlu")]
    fn a_swiglu_of_one_weight_is_refused() {
        let device = Device::flex();
        let w = packed(8, 64, 1, &device);
        let x = Tensor::<2>::zeros([1, 64], &device);
        let _ = nf4_gemv_fused(x, &[&w], None, GemvEpilogue::SwiGlu, None);
    }
}
