//! The backend extension every fused op of this crate goes through, [`KernelBackend`]: one
//! method per primitive (GEMM, RMSNorm, RoPE, softmax, SwiGLU, dropout, cross-entropy, blocked
//! attention, NF4), implemented by burn's CubeCL backend on CUDA (`crate::cuda`), by Flex in this
//! crate's tests (`flex`: the burn-ops references), and for `Autodiff` (`autodiff`: each op's
//! hand-written backward, keeping only what it needs).
//!
//! Formulas and shapes are documented with the public functions that call these (`gemm`,
//! `norm`, `rope`, `softmax`, `swiglu`, `dropout`, `cross_entropy`, `attention_blocks`, `linear_cross_entropy`, `nf4`).

mod autodiff;
#[cfg(test)]
mod flex;

use burn::backend::{
    Backend, ExtensionType, backend_extension,
    tensor::{FloatTensor, IntTensor},
};

use burn::backend::TensorMetadata;

use crate::decode::GemvPlan;
use crate::gemm::reference_gemm;
use crate::lora_nf4::SidePath;
use crate::nf4::Nf4Meta;

/// A packed 4-bit weight as backend tensors: the arguments of [`KernelBackend::nf4_linear`].
#[derive(ExtensionType)]
pub struct Nf4Parts<B: Backend> {
    /// Packed nibbles, u8.
    pub packed: IntTensor<B>,
    /// The 16-entry code.
    pub code: FloatTensor<B>,
    /// The scales (the nested ones under double quantization).
    pub absmax: FloatTensor<B>,
    /// The u8 scale codes under double quantization.
    pub qcodes: IntTensor<B>,
    /// The 256-entry nested code under double quantization.
    pub nested_code: FloatTensor<B>,
    /// The layout.
    pub meta: Nf4Meta,
}

/// Backends with this crate's primitives: a (possibly library-backed) general matrix product,
/// the layer's fused element-wise kernels, and packed 4-bit linear layers.
#[backend_extension(Flex: cfg(test), Cube: cfg(feature = "cuda"), Autodiff)]
pub trait KernelBackend: Backend {
    /// `op(a) · op(b)`, where `op(x)` is `xᵀ` (the last two dimensions swapped) when its flag
    /// is set.
    ///
    /// # Shapes
    /// - `op(a)`: `[m, k]`, `op(b)`: `[k, n]` → `[m, n]`;
    /// - batched: `op(a)`: `[batch, m, k]`, `op(b)`: `[batch, k, n]` → `[batch, m, n]`.
    fn gemm(a: FloatTensor<Self>, b: FloatTensor<Self>, transpose_a: bool, transpose_b: bool) -> FloatTensor<Self> {
        reference_gemm::<Self>(a, b, transpose_a, transpose_b)
    }

    /// `op(a) · op(b) + y` on 2-D tensors of one dtype, the sum rounded once where the backend
    /// can (cuBLASLt's `beta = 1`; see [`crate::gemm_add`]).
    ///
    /// # Shapes
    /// - `op(a)`: `[m, k]`, `op(b)`: `[k, n]`, `y`: `[m, n]` → `[m, n]`.
    fn gemm_add(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        transpose_a: bool,
        transpose_b: bool,
        y: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        crate::gemm::reference_gemm_add::<Self>(a, b, transpose_a, transpose_b, y)
    }

    /// RMSNorm of the rows of `x: [rows, d]` with a constant scale `w: [d]` of `x`'s dtype
    /// (see [`crate::norm`]).
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;

    /// The input gradient of [`KernelBackend::rms_norm`] for upstream `g: [rows, d]`.
    fn rms_norm_backward(x: FloatTensor<Self>, w: FloatTensor<Self>, g: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;

    /// RoPE fused with the head transpose (see [`crate::rope`]): `x: [b, s, n, d_h]` →
    /// `[b, n, s, d_h]`; with `inverse`, the backward: `[b, n, s, d_h]` → `[b, s, n, d_h]`
    /// rotated by `−θ`. Tables `[1 or b, s, d_h]` in `x`'s dtype, halves repeated.
    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self>;

    /// `softmax(scale · S)` over the rows of `S: [batch, s, t]`, causal when asked (see
    /// [`crate::softmax`]).
    fn scaled_softmax(scores: FloatTensor<Self>, scale: f64, causal: bool) -> FloatTensor<Self>;

    /// The scores' gradient of [`KernelBackend::scaled_softmax`] from its output `P` and `dP`.
    fn scaled_softmax_backward(probs: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;

    /// `silu(gate) ⊙ up` on 1-D tensors of one length (see [`crate::swiglu`]).
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradients `(dg, du)` of [`KernelBackend::swiglu`] for upstream `grad` (one pass
    /// over the three inputs).
    fn swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// A one-element root whose backward gives `y` the gradient `upstream` of `y`'s shape and
    /// dtype (see [`crate::gradient_root`]): off autodiff, `⟨y, upstream⟩`; under autodiff a
    /// zero that is never computed, the backward registering `upstream` itself.
    fn gradient_root(y: FloatTensor<Self>, upstream: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_sum(Self::float_mul(y, upstream))
    }

    /// `base + delta` of two 1-D tensors of one length in f32, rounded once to `base`'s dtype
    /// (see [`crate::add_cast`]).
    fn add_cast(base: FloatTensor<Self>, delta: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Inverted dropout of a 1-D tensor with the counter-hash mask of `seed`, times `scale`,
    /// the result cast to `dtype` (see [`crate::dropout`]).
    fn dropout(x: FloatTensor<Self>, p: f64, scale: f64, seed: u64, dtype: burn::tensor::DType) -> FloatTensor<Self>;

    /// Per-row cross-entropy of `logits: [n, V]` against `targets: [n]` (`ignore` → 0), f32
    /// `[n]` (see [`crate::cross_entropy`]).
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>, ignore: i64) -> FloatTensor<Self>;

    /// The logits' gradient of [`KernelBackend::cross_entropy`] for upstream `grad: [n]`.
    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
    ) -> FloatTensor<Self>;

    /// `softmax(scale · q·kᵀ)·v`, causal when asked, over blocks of `rows` queries (see
    /// [`crate::attention_blocks`]); under autodiff only `q`, `k` and `v` are kept. With
    /// `groups > 1` each matrix's rows are `groups` query heads of `s` positions sharing one key
    /// and value head (grouped-query attention; one block).
    ///
    /// # Shapes
    /// - `q`: `[n, groups·s, d]`, `k`: `[n, t, d]`, `v`: `[n, t, d_v]` → `[n, groups·s, d_v]`
    ///   (`s ≤ t` when causal).
    fn blocked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
        causal: bool,
        rows: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        crate::attention_blocks::forward::<Self>(q, k, v, scale, causal, rows, groups)
    }

    /// `(dq, dk, dv)` of [`KernelBackend::blocked_attention`] for upstream `grad: [n, groups·s, d_v]`,
    /// recomputing each block's probabilities.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn blocked_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
        causal: bool,
        rows: usize,
        groups: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        crate::attention_blocks::backward::<Self>(q, k, v, grad, scale, causal, rows, groups)
    }

    /// Per-row cross-entropy of the logits `h·wᵀ` against `targets` (`ignore` → 0), f32 `[n]`,
    /// over chunks of `rows` rows (see [`crate::linear_cross_entropy`]); under autodiff only
    /// `h`, `w` and the targets are kept.
    ///
    /// # Shapes
    /// - `h`: `[n, d]`, `w`: `[V, d]`, `targets`: `[n]` → `[n]`.
    fn linear_cross_entropy(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        ignore: i64,
        rows: usize,
    ) -> FloatTensor<Self> {
        crate::linear_cross_entropy::chunks::forward::<Self>(h, w, targets, ignore, rows)
    }

    /// `(dh, dW)` of [`KernelBackend::linear_cross_entropy`] for upstream `grad: [n]`, `dW` only
    /// when `wrt_w`, recomputing each chunk's logits.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn linear_cross_entropy_backward(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
        rows: usize,
        wrt_w: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        crate::linear_cross_entropy::chunks::backward::<Self>(h, w, targets, grad, ignore, rows, wrt_w)
    }

    /// The dense `[rows, cols]` weight of a packed 4-bit tensor, never tracked (see
    /// [`crate::nf4`] for the layout; `qcodes`/`nested_code` are ignored unless
    /// `meta.double`).
    fn nf4_dense(
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self>;

    /// `x · Wᵀ` for a packed 4-bit `W: [rows, cols]` and `x: [m, cols]`. Under autodiff only
    /// the packed state is kept for the backward, which dequantizes again (`dx = dy · W`).
    fn nf4_linear(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        let w = Self::nf4_dense(packed, code, absmax, qcodes, nested_code, meta);
        Self::gemm(x, w, false, true)
    }

    /// [`KernelBackend::nf4_linear`] by its gradient only: `[m, rows]` zeros in `x`'s dtype
    /// (nothing dequantized, no product), whose backward under autodiff is `nf4_linear`'s
    /// (`dx = dy · W`). See [`crate::nf4_linear_gradient_only`].
    fn nf4_linear_gradient_only(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        let _ = (packed, code, absmax, qcodes, nested_code);
        let m = x.shape().num_elements() / meta.cols.max(1);
        Self::float_zeros([m, meta.rows].into(), &x.device(), x.dtype().into())
    }

    /// `x · Wᵀ + (s · dropout(x) · Aᵀ) · Bᵀ` for a packed `W: [rows, cols]`, `x: [m, cols]`,
    /// `a: [r, cols]`, `b: [rows, r]` of `x`'s dtype (see [`crate::lora_nf4`]); with
    /// `side.value` false, `[m, rows]` zeros whose backward under autodiff is the op's.
    #[allow(clippy::too_many_arguments)]
    fn nf4_lora_linear(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        side: SidePath,
    ) -> FloatTensor<Self> {
        if !side.value {
            let m = x.shape().num_elements() / meta.cols.max(1);
            return Self::float_zeros([m, meta.rows].into(), &x.device(), x.dtype().into());
        }
        let xd = crate::lora_nf4::dropout_rows::<Self>(x.clone(), side, a.dtype());
        let h = Self::gemm(xd, a, false, true);
        let base = Self::nf4_linear(x, packed, code, absmax, qcodes, nested_code, meta);
        Self::gemm_add(h, b, false, true, base)
    }

    /// Batch-1 decoding products of `x: [1, d]` with up to three packed weights, an RMSNorm of
    /// `x` (scale `norm_w: [d]`) before and an epilogue after (see [`crate::decode`]); `norm_w`
    /// and `residual` are ignored unless the plan uses them, unused weights repeat `w0`.
    #[allow(clippy::too_many_arguments)]
    fn nf4_gemv_fused(
        x: FloatTensor<Self>,
        norm_w: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        #[extension_type] w0: Nf4Parts<Self>,
        #[extension_type] w1: Nf4Parts<Self>,
        #[extension_type] w2: Nf4Parts<Self>,
        plan: GemvPlan,
    ) -> FloatTensor<Self> {
        crate::decode::compose::<Self>(x, norm_w, residual, [w0, w1, w2], plan)
    }
}
