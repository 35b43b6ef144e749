//! The backend extension every fused op of this crate goes through, [`KernelBackend`]: one
//! method per primitive (GEMM, RMSNorm, RoPE, softmax, SwiGLU, dropout, cross-entropy, NF4),
//! implemented by burn's CubeCL backend on CUDA (`crate::cuda`), by Flex in this crate's tests,
//! and here for `Autodiff`: each op's hand-written backward, keeping only what it needs.
//!
//! Formulas and shapes are documented with the public functions that call these (`gemm`,
//! `norm`, `rope`, `softmax`, `swiglu`, `dropout`, `cross_entropy`, `nf4`).

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    Backend, backend_extension,
    tensor::{FloatTensor, IntTensor},
};

use crate::gemm::reference_gemm;
use crate::nf4::Nf4Meta;

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

    /// The gradient of [`KernelBackend::swiglu`] for upstream `grad`: `du` when `wrt_up`, else `dg`.
    fn swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>, wrt_up: bool) -> FloatTensor<Self>;

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
}

#[cfg(test)]
impl KernelBackend for burn::backend::Flex {
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let y = crate::norm::portable_rms_norm(Tensor::<2>::from_primitive::<F>(x), Tensor::<1>::from_primitive::<F>(w), eps);
        y.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>, ignore: i64) -> FloatTensor<Self> {
        use burn::tensor::{Int, Tensor};
        type F = burn::backend::Flex;
        let l = crate::cross_entropy::portable_cross_entropy(
            Tensor::<2>::from_primitive::<F>(logits),
            Tensor::<1, Int>::from_primitive::<F>(targets),
            ignore,
        );
        l.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
    ) -> FloatTensor<Self> {
        use burn::tensor::{DType, Int, Tensor, activation::softmax};
        type F = burn::backend::Flex;
        let z = Tensor::<2>::from_primitive::<F>(logits);
        let (t, g) = (Tensor::<1, Int>::from_primitive::<F>(targets), Tensor::<1>::from_primitive::<F>(grad));
        let [n, v] = z.dims();
        let dtype = z.dtype();
        let counted = t.clone().not_equal_elem(ignore).float();
        let onehot = t.clamp_min(0).one_hot::<2>(v).float();
        let dz = (softmax(z.cast(DType::F32), 1) - onehot) * (g * counted).reshape([n, 1]);
        dz.cast(dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn dropout(x: FloatTensor<Self>, p: f64, scale: f64, seed: u64, dtype: burn::tensor::DType) -> FloatTensor<Self> {
        use burn::tensor::{DType, Tensor, TensorData};
        type F = burn::backend::Flex;
        let x = Tensor::<1>::from_primitive::<F>(x);
        let device = x.device();
        let values: Vec<f32> = x.cast(DType::F32).into_data().try_into_vec::<f32>().expect("f32");
        let (threshold, scale) = (crate::dropout::drop_threshold(p), (scale / (1.0 - p)) as f32);
        let out: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| if crate::dropout::keep_bits(seed, i as u32) >= threshold { v * scale } else { 0.0 })
            .collect();
        let n = out.len();
        Tensor::<1>::from_data(TensorData::new(out, [n]), &device).cast(dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let (x, cos, sin) =
            (Tensor::<4>::from_primitive::<F>(x), Tensor::<3>::from_primitive::<F>(cos), Tensor::<3>::from_primitive::<F>(sin));
        let y = if inverse {
            crate::rope::portable_rope(x, cos, sin.neg()).swap_dims(1, 2)
        } else {
            crate::rope::portable_rope(x.swap_dims(1, 2), cos, sin)
        };
        y.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn scaled_softmax(scores: FloatTensor<Self>, scale: f64, causal: bool) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let p = crate::softmax::portable_scaled_softmax(Tensor::<3>::from_primitive::<F>(scores), scale, causal, None);
        p.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn scaled_softmax_backward(probs: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        use burn::tensor::{DType, Tensor};
        type F = burn::backend::Flex;
        let (p, g) = (Tensor::<3>::from_primitive::<F>(probs), Tensor::<3>::from_primitive::<F>(grad));
        let dtype = p.dtype();
        let (p, g) = (p.cast(DType::F32), g.cast(DType::F32));
        let dot = (p.clone() * g.clone()).sum_dim(2);
        let ds = (p * (g - dot)).mul_scalar(scale).cast(dtype);
        ds.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let h = crate::swiglu::portable_swiglu(Tensor::<1>::from_primitive::<F>(gate), Tensor::<1>::from_primitive::<F>(up));
        h.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>, wrt_up: bool) -> FloatTensor<Self> {
        use burn::tensor::{DType, Tensor, activation::sigmoid};
        type F = burn::backend::Flex;
        let (g, u, dh) =
            (Tensor::<1>::from_primitive::<F>(gate), Tensor::<1>::from_primitive::<F>(up), Tensor::<1>::from_primitive::<F>(grad));
        let dtype = g.dtype();
        let (g, u, dh) = (g.cast(DType::F32), u.cast(DType::F32), dh.cast(DType::F32));
        let sig = sigmoid(g.clone());
        let out = if wrt_up { dh * g * sig } else { dh * u * sig.clone() * (g * (sig.neg().add_scalar(1.0))).add_scalar(1.0) };
        out.cast(dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn rms_norm_backward(x: FloatTensor<Self>, w: FloatTensor<Self>, g: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let (x, w, g) = (Tensor::<2>::from_primitive::<F>(x), Tensor::<1>::from_primitive::<F>(w), Tensor::<2>::from_primitive::<F>(g));
        crate::norm::portable_rms_norm_backward(x, w, g, eps).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn nf4_dense(
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        use burn::tensor::{Int, Tensor};
        type F = burn::backend::Flex;
        let w = crate::nf4::PackedNf4::from_parts(
            Tensor::<1, Int>::from_primitive::<F>(packed),
            Tensor::<1>::from_primitive::<F>(code),
            Tensor::<1>::from_primitive::<F>(absmax),
            Tensor::<1, Int>::from_primitive::<F>(qcodes),
            Tensor::<1>::from_primitive::<F>(nested_code),
            meta,
        );
        crate::nf4::nf4_dequantize_unfused(&w, meta.dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }
}

#[derive(Debug)]
struct Nf4LinearBackward;

/// The packed state: bytes, code, absmax, u8 codes, nested code, layout.
type Nf4State<B> = (IntTensor<B>, FloatTensor<B>, FloatTensor<B>, IntTensor<B>, FloatTensor<B>, Nf4Meta);

impl<B: KernelBackend> Backward<B, 1> for Nf4LinearBackward {
    type State = Nf4State<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (packed, code, absmax, qcodes, nested_code, meta) = ops.state;
        if let Some(node) = node_x {
            let w = B::nf4_dense(packed, code, absmax, qcodes, nested_code, meta);
            grads.register::<B>(node.id, B::gemm(grad, w, false, false));
        }
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: KernelBackend> Backward<B, 1> for RmsNormBackward {
    /// `x`, the scale, `ε`.
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w, eps) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::rms_norm_backward(x, w, grad, eps));
        }
    }
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: KernelBackend> Backward<B, 1> for CrossEntropyBackward {
    /// The logits, the targets and the ignored id.
    type State = (FloatTensor<B>, IntTensor<B>, i64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_z] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (logits, targets, ignore) = ops.state;
        if let Some(node) = node_z {
            grads.register::<B>(node.id, B::cross_entropy_backward(logits, targets, grad, ignore));
        }
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl<B: KernelBackend> Backward<B, 1> for DropoutBackward {
    /// Probability, scale, seed, and the input's dtype.
    type State = (f64, f64, u64, burn::tensor::DType);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (p, scale, seed, dtype) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::dropout(grad, p, scale, seed, dtype));
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl<B: KernelBackend> Backward<B, 1> for RopeBackward {
    /// The tables and the direction of the forward call.
    type State = (FloatTensor<B>, FloatTensor<B>, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (cos, sin, inverse) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::rope(grad, cos, sin, !inverse));
        }
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: KernelBackend> Backward<B, 1> for SoftmaxBackward {
    /// The output `P` and the scale.
    type State = (FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_s] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (probs, scale) = ops.state;
        if let Some(node) = node_s {
            grads.register::<B>(node.id, B::scaled_softmax_backward(probs, grad, scale));
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl<B: KernelBackend> Backward<B, 2> for SwigluBackward {
    /// `gate` and `up`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_g, node_u] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (gate, up) = ops.state;
        if let Some(node) = node_u {
            grads.register::<B>(node.id, B::swiglu_backward(gate.clone(), up.clone(), grad.clone(), true));
        }
        if let Some(node) = node_g {
            grads.register::<B>(node.id, B::swiglu_backward(gate, up, grad, false));
        }
    }
}

#[derive(Debug)]
struct GemmBackward;

/// What the backward keeps: `a` if `b` is tracked, `b` if `a` is tracked, and the flags.
type GemmState<B> = (Option<FloatTensor<B>>, Option<FloatTensor<B>>, bool, bool);

impl<B: KernelBackend> Backward<B, 2> for GemmBackward {
    type State = GemmState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (a, b, ta, tb) = ops.state;
        if let (Some(node), Some(b)) = (node_a, b) {
            let da = if ta { B::gemm(b, grad.clone(), tb, true) } else { B::gemm(grad.clone(), b, false, !tb) };
            grads.register::<B>(node.id, da);
        }
        if let (Some(node), Some(a)) = (node_b, a) {
            let db = if tb { B::gemm(grad, a, true, ta) } else { B::gemm(a, grad, !ta, false) };
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn gemm(a: FloatTensor<Self>, b: FloatTensor<Self>, transpose_a: bool, transpose_b: bool) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        match GemmBackward.prepare::<C>([a_node, b_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let keep_a = b_tracked.then(|| a.clone());
                let keep_b = a_tracked.then(|| b.clone());
                let out = B::gemm(a, b, transpose_a, transpose_b);
                prep.finish((keep_a, keep_b, transpose_a, transpose_b), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gemm(a, b, transpose_a, transpose_b)),
        }
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let w = w.into_primitive();
        let (x, x_node) = x.into_parts();
        match RmsNormBackward.prepare::<C>([x_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::rms_norm(x.clone(), w.clone(), eps);
                prep.finish((x, w, eps), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rms_norm(x, w, eps)),
        }
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>, ignore: i64) -> FloatTensor<Self> {
        let (z, z_node) = logits.into_parts();
        match CrossEntropyBackward.prepare::<C>([z_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::cross_entropy(z.clone(), targets.clone(), ignore);
                prep.finish((z, targets, ignore), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cross_entropy(z, targets, ignore)),
        }
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::cross_entropy_backward(logits.into_primitive(), targets, grad.into_primitive(), ignore))
    }

    fn dropout(x: FloatTensor<Self>, p: f64, scale: f64, seed: u64, dtype: burn::tensor::DType) -> FloatTensor<Self> {
        use burn::backend::TensorMetadata;
        let (x, x_node) = x.into_parts();
        let in_dtype = x.dtype();
        match DropoutBackward.prepare::<C>([x_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((p, scale, seed, in_dtype), B::dropout(x, p, scale, seed, dtype)),
            OpsKind::UnTracked(prep) => prep.finish(B::dropout(x, p, scale, seed, dtype)),
        }
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let (x, x_node) = x.into_parts();
        match RopeBackward.prepare::<C>([x_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::rope(x, cos.clone(), sin.clone(), inverse);
                prep.finish((cos, sin, inverse), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rope(x, cos, sin, inverse)),
        }
    }

    fn scaled_softmax(scores: FloatTensor<Self>, scale: f64, causal: bool) -> FloatTensor<Self> {
        let (s, s_node) = scores.into_parts();
        match SoftmaxBackward.prepare::<C>([s_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let p = B::scaled_softmax(s, scale, causal);
                prep.finish((p.clone(), scale), p)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::scaled_softmax(s, scale, causal)),
        }
    }

    fn scaled_softmax_backward(probs: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::scaled_softmax_backward(probs.into_primitive(), grad.into_primitive(), scale))
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (g, g_node) = gate.into_parts();
        let (u, u_node) = up.into_parts();
        match SwigluBackward.prepare::<C>([g_node, u_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::swiglu(g.clone(), u.clone());
                prep.finish((g, u), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::swiglu(g, u)),
        }
    }

    fn swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>, wrt_up: bool) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::swiglu_backward(gate.into_primitive(), up.into_primitive(), grad.into_primitive(), wrt_up))
    }

    fn rms_norm_backward(x: FloatTensor<Self>, w: FloatTensor<Self>, g: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let dx = B::rms_norm_backward(x.into_primitive(), w.into_primitive(), g.into_primitive(), eps);
        FloatTensor::<Self>::new(dx)
    }

    fn nf4_dense(
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        let dense = B::nf4_dense(packed, code.into_primitive(), absmax.into_primitive(), qcodes, nested_code.into_primitive(), meta);
        FloatTensor::<Self>::new(dense)
    }

    fn nf4_linear(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        let (code, absmax, nested_code) = (code.into_primitive(), absmax.into_primitive(), nested_code.into_primitive());
        let (x, x_node) = x.into_parts();
        match Nf4LinearBackward.prepare::<C>([x_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = (packed.clone(), code.clone(), absmax.clone(), qcodes.clone(), nested_code.clone(), meta);
                prep.finish(state, B::nf4_linear(x, packed, code, absmax, qcodes, nested_code, meta))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::nf4_linear(x, packed, code, absmax, qcodes, nested_code, meta)),
        }
    }
}
