//! [`KernelBackend`] for `Autodiff`: every op runs on the inner backend and records a
//! hand-written backward that keeps only what it needs. Ops of one tracked input share
//! [`Unary`]: each says what it keeps ([`InputGradient::State`]) and how the input's gradient
//! follows from that and the upstream gradient; GEMM, SwiGLU and blocked attention have two or
//! three inputs and their own backward.

use std::marker::PhantomData;

use burn::backend::autodiff::{
    Autodiff, NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    Backend,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::DType;

use super::KernelBackend;
use crate::lora_nf4::SidePath;
use crate::nf4::Nf4Meta;

/// An op of one tracked input `x`, as its backward sees it.
trait InputGradient<B: Backend>: Send + std::fmt::Debug + 'static {
    /// What the backward keeps from the forward call.
    type State: Clone + Send + std::fmt::Debug + 'static;

    /// `∂L/∂x` from the kept state and `∂L/∂y`.
    fn input_gradient(state: Self::State, grad: FloatTensor<B>) -> FloatTensor<B>;
}

/// The backward of any [`InputGradient`] op.
#[derive(Debug)]
struct Unary<Op>(PhantomData<Op>);

impl<B: KernelBackend, Op: InputGradient<B>> Backward<B, 1> for Unary<Op> {
    type State = Op::State;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, Op::input_gradient(ops.state, grad));
        }
    }
}

/// Runs `forward` on `x`'s inner tensor and, when `x` is tracked, records `Op`'s backward with
/// the state `keep(x, &y)` makes from the input and the output.
fn unary<B, C, Op>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: impl FnOnce(FloatTensor<B>) -> FloatTensor<B>,
    keep: impl FnOnce(FloatTensor<B>, &FloatTensor<B>) -> Op::State,
) -> FloatTensor<Autodiff<B, C>>
where
    B: KernelBackend,
    C: CheckpointStrategy,
    Op: InputGradient<B>,
{
    let (x, node) = x.into_parts();
    match Unary::<Op>(PhantomData).prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = forward(x.clone());
            let state = keep(x, &y);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x)),
    }
}

/// Registers `grad` for `node` when the parent is tracked and the gradient was computed.
fn register<B: Backend>(grads: &mut Gradients, node: Option<NodeId>, grad: Option<FloatTensor<B>>) {
    if let (Some(id), Some(grad)) = (node, grad) {
        grads.register::<B>(id, grad);
    }
}

#[derive(Debug)]
struct Nf4LinearGrad;

/// The packed state: bytes, code, absmax, u8 codes, nested code, layout.
type Nf4State<B> = (IntTensor<B>, FloatTensor<B>, FloatTensor<B>, IntTensor<B>, FloatTensor<B>, Nf4Meta);

impl<B: KernelBackend> InputGradient<B> for Nf4LinearGrad {
    type State = Nf4State<B>;

    /// `dx = dy · W`, `W` dequantized again.
    fn input_gradient((packed, code, absmax, qcodes, nested_code, meta): Self::State, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::gemm(grad, B::nf4_dense(packed, code, absmax, qcodes, nested_code, meta), false, false)
    }
}

/// The inner backend's packed product: [`KernelBackend::nf4_linear`] or
/// [`KernelBackend::nf4_linear_gradient_only`].
type PackedForward<B> =
    fn(FloatTensor<B>, IntTensor<B>, FloatTensor<B>, FloatTensor<B>, IntTensor<B>, FloatTensor<B>, Nf4Meta) -> FloatTensor<B>;

/// A packed product under autodiff: `forward` on the inner backend; only the packed state is
/// kept, for [`Nf4LinearGrad`]'s backward.
fn packed_product<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    state: Nf4State<B>,
    forward: PackedForward<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let (packed, code, absmax, qcodes, nested_code, meta) = state.clone();
    unary::<B, C, Nf4LinearGrad>(x, |x| forward(x, packed, code, absmax, qcodes, nested_code, meta), |_, _| state)
}

#[derive(Debug)]
struct RmsNormGrad;

impl<B: KernelBackend> InputGradient<B> for RmsNormGrad {
    /// `x`, the scale, `ε`.
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn input_gradient((x, w, eps): Self::State, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::rms_norm_backward(x, w, grad, eps)
    }
}

#[derive(Debug)]
struct CrossEntropyGrad;

impl<B: KernelBackend> InputGradient<B> for CrossEntropyGrad {
    /// The logits, the targets and the ignored id.
    type State = (FloatTensor<B>, IntTensor<B>, i64);

    fn input_gradient((logits, targets, ignore): Self::State, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::cross_entropy_backward(logits, targets, grad, ignore)
    }
}

#[derive(Debug)]
struct DropoutGrad;

impl<B: KernelBackend> InputGradient<B> for DropoutGrad {
    /// Probability, scale, seed, and the input's dtype.
    type State = (f64, f64, u64, DType);

    /// The same mask and scale on the gradient, cast back to the input's dtype.
    fn input_gradient((p, scale, seed, dtype): Self::State, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::dropout(grad, p, scale, seed, dtype)
    }
}

#[derive(Debug)]
struct RootGrad;

impl<B: KernelBackend> InputGradient<B> for RootGrad {
    /// The upstream gradient to hand to `y`.
    type State = FloatTensor<B>;

    /// The kept upstream gradient, whatever the root's own (a one-element one).
    fn input_gradient(upstream: Self::State, _grad: FloatTensor<B>) -> FloatTensor<B> {
        upstream
    }
}

#[derive(Debug)]
struct RopeGrad;

impl<B: KernelBackend> InputGradient<B> for RopeGrad {
    /// The tables and the direction of the forward call.
    type State = (FloatTensor<B>, FloatTensor<B>, bool);

    /// The rotation by `−θ`, with the transpose undone.
    fn input_gradient((cos, sin, inverse): Self::State, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::rope(grad, cos, sin, !inverse)
    }
}

#[derive(Debug)]
struct SoftmaxGrad;

impl<B: KernelBackend> InputGradient<B> for SoftmaxGrad {
    /// The output `P` and the scale.
    type State = (FloatTensor<B>, f64);

    fn input_gradient((probs, scale): Self::State, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::scaled_softmax_backward(probs, grad, scale)
    }
}

#[derive(Debug)]
struct AddCastBackward;

impl<B: KernelBackend> Backward<B, 2> for AddCastBackward {
    /// `delta`'s dtype.
    type State = DType;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_base, node_delta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let dd = node_delta.as_ref().map(|_| B::float_cast(grad.clone(), ops.state.into()));
        register::<B>(grads, node_delta.map(|n| n.id), dd);
        register::<B>(grads, node_base.map(|n| n.id), Some(grad));
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
        if node_g.is_none() && node_u.is_none() {
            return;
        }
        let (dg, du) = B::swiglu_backward(gate, up, grad);
        register::<B>(grads, node_u.map(|n| n.id), Some(du));
        register::<B>(grads, node_g.map(|n| n.id), Some(dg));
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
        register_gemm_gradients::<B>(grads, [node_a.map(|n| n.id), node_b.map(|n| n.id)], ops.state, grad);
    }
}

/// Registers the gradients of `op(a) · op(b)` for upstream `grad` (the table in `crate::gemm`).
fn register_gemm_gradients<B: KernelBackend>(
    grads: &mut Gradients,
    [node_a, node_b]: [Option<NodeId>; 2],
    (a, b, ta, tb): GemmState<B>,
    grad: FloatTensor<B>,
) {
    let da = node_a.and(b).map(|b| if ta { B::gemm(b, grad.clone(), tb, true) } else { B::gemm(grad.clone(), b, false, !tb) });
    register::<B>(grads, node_a, da);
    let db = node_b.and(a).map(|a| if tb { B::gemm(grad, a, true, ta) } else { B::gemm(a, grad, !ta, false) });
    register::<B>(grads, node_b, db);
}

#[derive(Debug)]
struct GemmAddBackward;

impl<B: KernelBackend> Backward<B, 3> for GemmAddBackward {
    type State = GemmState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_a, node_b, node_y] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        register::<B>(grads, node_y.map(|n| n.id), Some(grad.clone()));
        register_gemm_gradients::<B>(grads, [node_a.map(|n| n.id), node_b.map(|n| n.id)], ops.state, grad);
    }
}

#[derive(Debug)]
struct LoraNf4Backward;

/// What [`LoraNf4Backward`] keeps: the packed base and the factor `A` if `x` is tracked, `x_d` if
/// `A` is, `h` if `B` is, `B` if `x` or `A` is; the side path's settings and `x`'s dtype.
#[derive(Debug, Clone)]
struct LoraNf4State<B: Backend> {
    base: Option<Nf4State<B>>,
    a: Option<FloatTensor<B>>,
    xd: Option<FloatTensor<B>>,
    h: Option<FloatTensor<B>>,
    b: Option<FloatTensor<B>>,
    side: SidePath,
    x_dtype: DType,
}

impl<B: KernelBackend> Backward<B, 3> for LoraNf4Backward {
    type State = LoraNf4State<B>;

    /// `dB = dyᵀ·h`, `dh = dy·B`, `dA = dhᵀ·x_d`, `dx = dy·W + dropout(dh·A)` (the base's
    /// product accumulating onto the side path's input gradient: no separate add).
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_a, node_b] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let LoraNf4State { base, a, xd, h, b, side, x_dtype } = ops.state;
        let db = node_b.as_ref().and(h).map(|h| B::gemm(dy.clone(), h, true, false));
        register::<B>(grads, node_b.map(|n| n.id), db);
        let Some(b) = b else { return };
        let dh = B::gemm(dy.clone(), b, false, false);
        let da = node_a.as_ref().and(xd).map(|xd| B::gemm(dh.clone(), xd, true, false));
        register::<B>(grads, node_a.map(|n| n.id), da);
        if let (Some(node), Some(a), Some((packed, code, absmax, qcodes, nested_code, meta))) = (node_x, a, base) {
            let side_dx = crate::lora_nf4::dropout_rows::<B>(B::gemm(dh, a, false, false), side, x_dtype);
            let w = B::nf4_dense(packed, code, absmax, qcodes, nested_code, meta);
            grads.register::<B>(node.id, B::gemm_add(dy, w, false, false, side_dx));
        }
    }
}

#[derive(Debug)]
struct BlockedAttentionBackward;

/// `q`, `k`, `v`, the scale, causality, the rows per block and the query heads per K/V head.
type AttentionState<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64, bool, usize, usize);

impl<B: KernelBackend> Backward<B, 3> for BlockedAttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, scale, causal, rows, groups) = ops.state;
        let (dq, dk, dv) = B::blocked_attention_backward(q, k, v, grad, scale, causal, rows, groups);
        register::<B>(grads, node_q.map(|n| n.id), Some(dq));
        register::<B>(grads, node_k.map(|n| n.id), Some(dk));
        register::<B>(grads, node_v.map(|n| n.id), Some(dv));
    }
}

#[derive(Debug)]
struct LinearCrossEntropyBackward;

/// `h`, `W`, the targets, the ignored id, the rows per chunk, and whether `W` is tracked.
type LinearCrossEntropyState<B> = (FloatTensor<B>, FloatTensor<B>, IntTensor<B>, i64, usize, bool);

impl<B: KernelBackend> Backward<B, 2> for LinearCrossEntropyBackward {
    type State = LinearCrossEntropyState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_h, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (h, w, targets, ignore, rows, wrt_w) = ops.state;
        let (dh, dw) = B::linear_cross_entropy_backward(h, w, targets, grad, ignore, rows, wrt_w);
        register::<B>(grads, node_h.map(|n| n.id), Some(dh));
        register::<B>(grads, node_w.map(|n| n.id), dw);
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

    fn gemm_add(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        transpose_a: bool,
        transpose_b: bool,
        y: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        let (y, y_node) = y.into_parts();
        match GemmAddBackward.prepare::<C>([a_node, b_node, y_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let keep_a = b_tracked.then(|| a.clone());
                let keep_b = a_tracked.then(|| b.clone());
                let out = B::gemm_add(a, b, transpose_a, transpose_b, y);
                prep.finish((keep_a, keep_b, transpose_a, transpose_b), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gemm_add(a, b, transpose_a, transpose_b, y)),
        }
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let w = w.into_primitive();
        unary::<B, C, RmsNormGrad>(x, |x| B::rms_norm(x, w.clone(), eps), |x, _| (x, w.clone(), eps))
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>, ignore: i64) -> FloatTensor<Self> {
        let keep = targets.clone();
        unary::<B, C, CrossEntropyGrad>(logits, |z| B::cross_entropy(z, targets, ignore), |z, _| (z, keep, ignore))
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::cross_entropy_backward(logits.into_primitive(), targets, grad.into_primitive(), ignore))
    }

    fn dropout(x: FloatTensor<Self>, p: f64, scale: f64, seed: u64, dtype: DType) -> FloatTensor<Self> {
        use burn::backend::TensorMetadata;
        let in_dtype = x.dtype();
        unary::<B, C, DropoutGrad>(x, |x| B::dropout(x, p, scale, seed, dtype), |_, _| (p, scale, seed, in_dtype))
    }

    fn gradient_root(y: FloatTensor<Self>, upstream: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::TensorMetadata;
        let upstream = upstream.into_primitive();
        unary::<B, C, RootGrad>(y, |y| B::float_zeros([1].into(), &y.device(), y.dtype().into()), |_, _| upstream)
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let keep = (cos.clone(), sin.clone(), inverse);
        unary::<B, C, RopeGrad>(x, |x| B::rope(x, cos, sin, inverse), |_, _| keep)
    }

    fn scaled_softmax(scores: FloatTensor<Self>, scale: f64, causal: bool) -> FloatTensor<Self> {
        unary::<B, C, SoftmaxGrad>(scores, |s| B::scaled_softmax(s, scale, causal), |_, p| (p.clone(), scale))
    }

    fn scaled_softmax_backward(probs: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::scaled_softmax_backward(probs.into_primitive(), grad.into_primitive(), scale))
    }

    fn add_cast(base: FloatTensor<Self>, delta: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::TensorMetadata;
        let delta_dtype = delta.dtype();
        let (b, b_node) = base.into_parts();
        let (d, d_node) = delta.into_parts();
        match AddCastBackward.prepare::<C>([b_node, d_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(delta_dtype, B::add_cast(b, d)),
            OpsKind::UnTracked(prep) => prep.finish(B::add_cast(b, d)),
        }
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

    fn swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dg, du) = B::swiglu_backward(gate.into_primitive(), up.into_primitive(), grad.into_primitive());
        (FloatTensor::<Self>::new(dg), FloatTensor::<Self>::new(du))
    }

    fn rms_norm_backward(x: FloatTensor<Self>, w: FloatTensor<Self>, g: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let dx = B::rms_norm_backward(x.into_primitive(), w.into_primitive(), g.into_primitive(), eps);
        FloatTensor::<Self>::new(dx)
    }

    fn blocked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
        causal: bool,
        rows: usize,
        groups: usize,
    ) -> FloatTensor<Self> {
        let ((q, q_node), (k, k_node), (v, v_node)) = (q.into_parts(), k.into_parts(), v.into_parts());
        match BlockedAttentionBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::blocked_attention(q.clone(), k.clone(), v.clone(), scale, causal, rows, groups);
                prep.finish((q, k, v, scale, causal, rows, groups), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::blocked_attention(q, k, v, scale, causal, rows, groups)),
        }
    }

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
        let (q, k, v, grad) = (q.into_primitive(), k.into_primitive(), v.into_primitive(), grad.into_primitive());
        let (dq, dk, dv) = B::blocked_attention_backward(q, k, v, grad, scale, causal, rows, groups);
        (FloatTensor::<Self>::new(dq), FloatTensor::<Self>::new(dk), FloatTensor::<Self>::new(dv))
    }

    fn linear_cross_entropy(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        ignore: i64,
        rows: usize,
    ) -> FloatTensor<Self> {
        let w_tracked = w.is_tracked();
        let ((h, h_node), (w, w_node)) = (h.into_parts(), w.into_parts());
        match LinearCrossEntropyBackward.prepare::<C>([h_node, w_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::linear_cross_entropy(h.clone(), w.clone(), targets.clone(), ignore, rows);
                prep.finish((h, w, targets, ignore, rows, w_tracked), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear_cross_entropy(h, w, targets, ignore, rows)),
        }
    }

    fn linear_cross_entropy_backward(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
        rows: usize,
        wrt_w: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let (dh, dw) =
            B::linear_cross_entropy_backward(h.into_primitive(), w.into_primitive(), targets, grad.into_primitive(), ignore, rows, wrt_w);
        (FloatTensor::<Self>::new(dh), dw.map(FloatTensor::<Self>::new))
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
        let state = (packed, code.into_primitive(), absmax.into_primitive(), qcodes, nested_code.into_primitive(), meta);
        packed_product::<B, C>(x, state, B::nf4_linear)
    }

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
        use burn::backend::TensorMetadata;
        let (x_tracked, a_tracked, b_tracked) = (x.is_tracked(), a.is_tracked(), b.is_tracked());
        let (x, x_node) = x.into_parts();
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        let base = (packed, code.into_primitive(), absmax.into_primitive(), qcodes, nested_code.into_primitive(), meta);
        match LoraNf4Backward.prepare::<C>([x_node, a_node, b_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x_dtype = x.dtype();
                let xd = crate::lora_nf4::dropout_rows::<B>(x.clone(), side, a.dtype());
                let h = B::gemm(xd.clone(), a.clone(), false, true);
                let y = if side.value {
                    let (packed, code, absmax, qcodes, nested_code, meta) = base.clone();
                    let base_y = B::nf4_linear(x, packed, code, absmax, qcodes, nested_code, meta);
                    B::gemm_add(h.clone(), b.clone(), false, true, base_y)
                } else {
                    let m = x.shape().num_elements() / meta.cols.max(1);
                    B::float_zeros([m, meta.rows].into(), &x.device(), x_dtype.into())
                };
                let state = LoraNf4State {
                    base: x_tracked.then_some(base),
                    a: x_tracked.then_some(a),
                    xd: a_tracked.then_some(xd),
                    h: b_tracked.then_some(h),
                    b: (x_tracked || a_tracked).then_some(b),
                    side,
                    x_dtype,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                let (packed, code, absmax, qcodes, nested_code, meta) = base;
                prep.finish(B::nf4_lora_linear(x, packed, code, absmax, qcodes, nested_code, meta, a, b, side))
            }
        }
    }

    fn nf4_linear_gradient_only(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        let state = (packed, code.into_primitive(), absmax.into_primitive(), qcodes, nested_code.into_primitive(), meta);
        packed_product::<B, C>(x, state, B::nf4_linear_gradient_only)
    }
}
