//! Attention over blocks of query rows, forward and backward, so that no `[n, s, t]` score
//! matrix is ever whole and none outlives the call: the schedule behind
//! [`crate::extension::KernelBackend::blocked_attention`], written once on any backend's
//! primitives (products through `KernelBackend::gemm`, cuBLASLt on CUDA; the softmax through the
//! fused kernels).
//!
//! `q: [n, s, d]`, `k: [n, t, d]`, `v: [n, t, d_v]` (`n` = batch · heads), rows split into blocks
//! `i₀..i₁` of at most `rows` queries. When causal, query `i` sees keys `j ≤ i + t − s`, so block
//! `b` needs only the keys `j < t_b = i₁ + t − s`; inside the block, row `i` sees
//! `j ≤ i + t_b − c` (`c = i₁ − i₀`), which is the softmax kernel's own causal rule for a `[c, t_b]`
//! matrix. Keys past `t_b` are skipped, not masked: causal blocks cost less than the square.
//!
//! Forward, per block: `S = q_b·k_{<t_b}ᵀ`, `P = softmax(scale·S)`, `o_b = P·v_{<t_b}`.
//! Backward for upstream `dO`, per block, recomputing `P`:
//! `dv_{<t_b} += Pᵀ·dO_b`, `dP = dO_b·v_{<t_b}ᵀ`, `dS = scale·P ⊙ (dP − Σⱼ P ⊙ dP)`,
//! `dq_b = dS·k_{<t_b}`, `dk_{<t_b} += dSᵀ·q_b` (sums over blocks in f32).
//!
//! Memory: one block's `[n, c, t_b]` scores, probabilities and their gradients at a time.
//!
//! Grouped-query attention (`groups > 1`, one block): `q: [n, groups·s, d]` holds the `groups`
//! query heads that share the key/value head of each matrix, one after another; the scores
//! `[n, groups·s, t]` are the softmax's `[n·groups, s, t]` (so its causal rule sees position
//! `row mod s`), and the backward's `Pᵀ·dO` and `dSᵀ·q` sum the group's rows into the shared
//! head's `dv` and `dk` — no repeated keys and values, no reduction over the copies.

#[cfg(any(test, feature = "cuda"))]
use burn::backend::{TensorMetadata, tensor::FloatTensor};
#[cfg(any(test, feature = "cuda"))]
use burn::tensor::{FloatDType, Shape, Slice};

#[cfg(any(test, feature = "cuda"))]
use crate::extension::KernelBackend;
#[cfg(any(test, feature = "cuda"))]
use crate::row_chunks::{join, narrow, row_ranges};

/// Most score elements (`n · rows · t`) one block may hold: 64 Mi, 128 MiB in bf16.
pub const MAX_BLOCK_SCORES: usize = 1 << 26;

/// Query rows per block for `n` matrices of `s` queries over `t` keys: all of them when the
/// whole score matrix fits in [`MAX_BLOCK_SCORES`], else the most that fit, rounded down to a
/// multiple of 64 when that many fit (whole tiles for the products), at least one.
pub fn query_block_rows(n: usize, s: usize, t: usize) -> usize {
    crate::row_chunks::rows_within(MAX_BLOCK_SCORES, n * t, s)
}

#[cfg(any(test, feature = "cuda"))]
/// One block: query rows `start..end` and the keys `0..keys` they can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub start: usize,
    pub end: usize,
    pub keys: usize,
}

#[cfg(any(test, feature = "cuda"))]
/// The blocks of `s` queries over `t` keys, `rows` at a time.
pub(crate) fn blocks(s: usize, t: usize, rows: usize, causal: bool) -> Vec<Block> {
    row_ranges(s, rows).into_iter().map(|r| Block { start: r.start, end: r.end, keys: if causal { r.end + t - s } else { t } }).collect()
}

#[cfg(any(test, feature = "cuda"))]
/// Rows `range` of dimension 1 of a `[n, len, w]` tensor.
fn rows<B: KernelBackend>(x: &FloatTensor<B>, range: std::ops::Range<usize>) -> FloatTensor<B> {
    narrow::<B>(x, 1, range)
}

#[cfg(any(test, feature = "cuda"))]
/// `acc[:, 0..len] += part` with `acc` in f32.
fn add_rows<B: KernelBackend>(acc: FloatTensor<B>, part: FloatTensor<B>) -> FloatTensor<B> {
    let len = part.shape().dims::<3>()[1];
    let range = [Slice::from(..), Slice::new(0, Some(len as isize), 1), Slice::from(..)];
    let sum = B::float_add(B::float_slice(acc.clone(), &range), B::float_cast(part, FloatDType::F32));
    B::float_slice_assign(acc, &range, sum)
}

#[cfg(any(test, feature = "cuda"))]
/// The block's probabilities `P = softmax(scale · q_b·k_{<t_b}ᵀ)`: `[n, c, t_b]` (`c` rows of
/// `groups` query heads: the softmax sees `[n·groups, c / groups, t_b]`).
fn probabilities<B: KernelBackend>(q: FloatTensor<B>, k: FloatTensor<B>, scale: f64, causal: bool, groups: usize) -> FloatTensor<B> {
    let scores = B::gemm(q, k, false, true);
    if groups == 1 {
        return B::scaled_softmax(scores, scale, causal);
    }
    let [n, c, t] = scores.shape().dims::<3>();
    let p = B::scaled_softmax(B::float_reshape(scores, Shape::new([n * groups, c / groups, t])), scale, causal);
    B::float_reshape(p, Shape::new([n, c, t]))
}

#[cfg(any(test, feature = "cuda"))]
/// The plan for `q: [n, groups·s, d]` over `t` keys; grouped heads take one block.
///
/// # Panics
/// If the rows are not `groups` equal parts, or a grouped plan needs more than one block.
fn plan(rows_total: usize, t: usize, rows_per_block: usize, causal: bool, groups: usize) -> Vec<Block> {
    assert!(groups >= 1 && rows_total.is_multiple_of(groups), "attention: {rows_total} query rows in {groups} groups");
    let s = rows_total / groups;
    let plan = blocks(s, t, rows_per_block, causal);
    assert!(
        groups == 1 || (plan.len() == 1 && plan[0].keys == t),
        "attention: grouped query heads take one block ({} planned)",
        plan.len()
    );
    plan
}

#[cfg(any(test, feature = "cuda"))]
/// `o: [n, s, d_v]` (see the module docs).
pub(crate) fn forward<B: KernelBackend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    scale: f64,
    causal: bool,
    rows_per_block: usize,
    groups: usize,
) -> FloatTensor<B> {
    let [_, s, _] = q.shape().dims::<3>();
    let t = k.shape().dims::<3>()[1];
    let plan = plan(s, t, rows_per_block, causal, groups);
    if let [only] = plan[..]
        && only.keys == t
    {
        return B::gemm(probabilities::<B>(q, k, scale, causal, groups), v, false, false);
    }
    let parts: Vec<_> = plan
        .iter()
        .map(|b| {
            let p = probabilities::<B>(rows::<B>(&q, b.start..b.end), rows::<B>(&k, 0..b.keys), scale, causal, 1);
            B::gemm(p, rows::<B>(&v, 0..b.keys), false, false)
        })
        .collect();
    join::<B>(parts, 1)
}

#[cfg(any(test, feature = "cuda"))]
/// `(dq, dk, dv)` for upstream `grad: [n, groups·s, d_v]` (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<B: KernelBackend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f64,
    causal: bool,
    rows_per_block: usize,
    groups: usize,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let [n, s, d] = q.shape().dims::<3>();
    let [_, t, dv] = v.shape().dims::<3>();
    let plan = plan(s, t, rows_per_block, causal, groups);
    let step = |b: Block| {
        let (qb, kb) = (rows::<B>(&q, b.start..b.end), rows::<B>(&k, 0..b.keys));
        let (vb, gb) = (rows::<B>(&v, 0..b.keys), rows::<B>(&grad, b.start..b.end));
        let p = probabilities::<B>(qb.clone(), kb.clone(), scale, causal, groups);
        let dv_b = B::gemm(p.clone(), gb.clone(), true, false);
        let ds = B::scaled_softmax_backward(p, B::gemm(gb, vb, false, true), scale);
        let dq_b = B::gemm(ds.clone(), kb, false, false);
        let dk_b = B::gemm(ds, qb, true, false);
        (dq_b, dk_b, dv_b)
    };
    if let [only] = plan[..]
        && only.keys == t
    {
        // Every query row at once (with grouped heads, all `groups · s` of them).
        return step(Block { end: s, ..only });
    }
    let (device, dtype) = (q.device(), q.dtype());
    let mut dk = B::float_zeros(Shape::new([n, t, d]), &device, FloatDType::F32);
    let mut dv_acc = B::float_zeros(Shape::new([n, t, dv]), &device, FloatDType::F32);
    let mut dq = Vec::with_capacity(plan.len());
    for b in plan {
        let (dq_b, dk_b, dv_b) = step(b);
        dq.push(dq_b);
        dk = add_rows::<B>(dk, dk_b);
        dv_acc = add_rows::<B>(dv_acc, dv_b);
    }
    let back = |x: FloatTensor<B>| B::float_cast(x, FloatDType::from(dtype));
    (join::<B>(dq, 1), back(dk), back(dv_acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_blocks_see_exactly_the_keys_their_last_row_sees() {
        assert_eq!(
            blocks(5, 7, 2, true),
            vec![Block { start: 0, end: 2, keys: 4 }, Block { start: 2, end: 4, keys: 6 }, Block { start: 4, end: 5, keys: 7 }]
        );
        assert_eq!(blocks(4, 4, 4, false), vec![Block { start: 0, end: 4, keys: 4 }]);
        assert_eq!(blocks(3, 9, 2, false).iter().map(|b| b.keys).collect::<Vec<_>>(), vec![9, 9]);
    }

    #[test]
    fn block_rows_keep_small_matrices_whole_and_split_long_ones_in_tiles() {
        // Llama-3-8B at 4 × 512 (n = 128 matrices): one block; at 1 × 2048 (n = 32): two.
        assert_eq!(query_block_rows(128, 512, 512), 512);
        assert_eq!(query_block_rows(32, 2048, 2048), 1024);
        assert_eq!(query_block_rows(32, 8192, 8192), 256);
        assert_eq!(query_block_rows(1 << 20, 100, 100), 1);
        assert_eq!(query_block_rows(4, 1, 1 << 30), 1);
    }
}
