//! Scaled dot-product attention from batched GEMMs and a softmax, so that on CUDA it runs on
//! cuBLASLt and one softmax kernel each way ([`crate::softmax`]).
//!
//! `o = softmax(q·kᵀ/√d + M) · v` per batch entry and head, with `M` the causal mask aligned at
//! the bottom-right corner (query `i` of `s` sees keys `j ≤ i + (t − s)` of `t`), so it also holds
//! for new queries appended to `t − s` cached positions. The softmax runs in f32 whatever the
//! operands' dtype (as HF's eager attention does); the probabilities are cast back before the
//! second product.
//!
//! Without an explicit mask the queries go in blocks ([`crate::attention_blocks`]): at most
//! [`crate::attention_blocks::MAX_BLOCK_SCORES`] scores exist at a time, causal blocks skip the
//! keys none of their rows sees, and under autodiff only `q`, `k`, `v` are kept — the backward
//! recomputes each block's probabilities. An explicit boolean mask (`true` = hidden, e.g. the
//! block-diagonal causal mask of packed sequences) takes the burn-ops path over the whole
//! `[b·h, s, t]` score matrix.

use burn::tensor::{Bool, Tensor};

use crate::attention_blocks::query_block_rows;
use crate::gemm::{bmm, uses_extension};

/// Attention of `q` over `k`/`v`, causal when `causal`, hiding what `mask` hides. Grouped-query
/// attention: each key/value head serves `heads / kv_heads` consecutive query heads (one head
/// each: multi-head attention).
///
/// # Shapes
/// - q: `[batch, heads, s, d]`, k: `[batch, kv_heads, t, d]`, v: `[batch, kv_heads, t, d_v]`
/// - mask: `[batch, heads, s, t]`, `true` = hidden (every row must leave a key visible)
/// - output: `[batch, heads, s, d_v]`
///
/// # Panics
/// If the shapes disagree (`kv_heads` must divide `heads`), or `causal` with `s > t`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, mask: Option<Tensor<4, Bool>>) -> Tensor<4> {
    let [b, h, s, _] = q.dims();
    let t = k.dims()[2];
    attention_in_blocks(q, k, v, causal, mask, query_block_rows(b * h, s, t))
}

/// `KINDLING_ATTENTION=whole`: the whole-matrix route (burn ops and the fused softmax, the
/// probabilities kept for the backward) even without a mask, to compare the two on a device.
static WHOLE_ONLY: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_ATTENTION", "whole");

/// `KINDLING_GQA=repeat`: grouped key/value heads are repeated for every query head even where
/// the fused route could share them (an A/B switch).
static REPEAT_KV: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_GQA", "repeat");

/// Repeats each K/V head `groups` times so that it lines up with its query heads (for routes
/// that take one K/V head per query head).
///
/// # Shapes
/// - x: `[batch, kv_heads, len, w]`
/// - output: `[batch, kv_heads · groups, len, w]`
pub fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, w] = x.dims();
    x.unsqueeze_dim::<5>(2).expand([b, kv, groups, t, w]).reshape([b, kv * groups, t, w])
}

/// [`attention`] with `rows` queries per block (the mask, when given, takes the whole matrix).
/// Grouped heads share their key/value head inside the fused route when the queries take one
/// block (the `groups` query heads of a K/V head are the rows of one product); otherwise the
/// keys and values are repeated per query head first.
///
/// # Panics
/// As [`attention`].
pub fn attention_in_blocks(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    mask: Option<Tensor<4, Bool>>,
    rows: usize,
) -> Tensor<4> {
    let [b, h, s, d] = q.dims();
    let [kb, kh, t, kd] = k.dims();
    let [vb, vh, vt, dv] = v.dims();
    assert!(
        (kb, kd) == (b, d) && (vb, vh, vt) == (b, kh, t) && kh > 0 && h.is_multiple_of(kh),
        "attention: q {:?}, k {:?}, v {:?}",
        q.dims(),
        k.dims(),
        v.dims()
    );
    assert!(!causal || s <= t, "attention: causal with {s} queries over {t} keys");
    let groups = h / kh;
    let scale = 1.0 / (d as f64).sqrt();
    let fused = mask.is_none() && !WHOLE_ONLY.is_on() && uses_extension(&q.device());
    let shared = groups == 1 || (fused && rows >= s && !REPEAT_KV.is_on());
    let (k, v, kh, groups) = if shared { (k, v, kh, groups) } else { (repeat_kv(k, groups), repeat_kv(v, groups), h, 1) };
    if fused {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            // `[b, h, s, d]` is `[b·kv, groups·s, d]`: each K/V head's query heads one after another.
            let flat = |x: Tensor<4>, len: usize, w: usize| x.reshape([b * kh, len, w]).into_dispatch();
            let o = <Dispatch as KernelBackend>::blocked_attention(
                flat(q, groups * s, d),
                flat(k, t, d),
                flat(v, t, dv),
                scale,
                causal,
                rows,
                groups,
            );
            return Tensor::<3>::from_dispatch(o).reshape([b, h, s, dv]);
        }
    }
    let _ = (rows, kh, groups);
    let scores = bmm(q.reshape([b * h, s, d]), k.reshape([b * h, t, d]), false, true);
    let probs = match mask {
        None => crate::softmax::scaled_softmax(scores, scale, causal),
        Some(m) => {
            assert_eq!(m.dims(), [b, h, s, t], "attention: mask {:?} for scores [{b}, {h}, {s}, {t}]", m.dims());
            crate::softmax::portable_scaled_softmax(scores, scale, causal, Some(m.reshape([b * h, s, t])))
        }
    };
    bmm(probs, v.reshape([b * h, t, dv]), false, false).reshape([b, h, s, dv])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// `o = attend(q, k, v)` on autodiff copies of the draws, and `[o, dq, dk, dv]` of
    /// `Σ o ⊙ w`.
    fn outputs_and_gradients(
        device: &Device,
        [q0, k0, v0, w0]: [&Tensor<4>; 4],
        attend: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
    ) -> [burn::tensor::TensorData; 4] {
        let lift = |x: &Tensor<4>| Tensor::<4>::from_data(x.to_data(), device).require_grad();
        let (q, k, v) = (lift(q0), lift(k0), lift(v0));
        let o = attend(q.clone(), k.clone(), v.clone());
        let grads = (o.clone() * Tensor::from_data(w0.to_data(), device)).sum().backward();
        [
            o.into_data(),
            q.grad(&grads).expect("dq").into_data(),
            k.grad(&grads).expect("dk").into_data(),
            v.grad(&grads).expect("dv").into_data(),
        ]
    }

    fn reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
        burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions { scale: None, softcap: None, is_causal: causal })
    }

    #[test]
    fn an_explicit_mask_hides_what_it_says() {
        let device = Device::flex();
        let r = |len: usize, d: usize| Tensor::<4>::random([2, 3, len, d], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (r(5, 8), r(5, 8), r(5, 4));
        // Two packed causal segments per row: positions 0..2 and 2..5 in row 0, 0..4 and 4..5 in row 1.
        let starts = [[0, 0, 2, 2, 2], [0, 0, 0, 0, 4]];
        let hidden: Vec<bool> = (0..2).flat_map(|row| (0..5).flat_map(move |i| (0..5).map(move |j| j > i || j < starts[row][i]))).collect();
        let mask = Tensor::<3, Bool>::from_data(burn::tensor::TensorData::new(hidden, [2, 5, 5]), &device)
            .unsqueeze_dim::<4>(1)
            .expand([2, 3, 5, 5]);
        let got = attention(q.clone(), k.clone(), v.clone(), false, Some(mask.clone()));
        let want = burn::tensor::module::attention(
            q,
            k,
            v,
            Some(mask),
            None,
            AttentionModuleOptions { scale: None, softcap: None, is_causal: false },
        );
        got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn matches_burns_attention_with_and_without_the_mask_and_after_a_cache() {
        let device = Device::flex();
        for (s, t, causal) in [(5, 5, true), (5, 5, false), (3, 7, true), (1, 6, false)] {
            let r = |len: usize, d: usize| Tensor::<4>::random([2, 3, len, d], Distribution::Normal(0.0, 1.0), &device);
            let (q, k, v) = (r(s, 8), r(t, 8), r(t, 4));
            let got = attention(q.clone(), k.clone(), v.clone(), causal, None);
            assert_eq!(got.dims(), [2, 3, s, 4]);
            got.into_data().assert_approx_eq::<f32>(&reference(q, k, v, causal).into_data(), Tolerance::rel_abs(1e-5, 1e-5));
        }
    }

    #[test]
    fn blocks_of_any_size_give_the_whole_matrix_output_and_gradients() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        // Square and cached (s < t) causal rows, plain rows; blocks of one row up to all of them.
        for (s, t, causal, rows) in [(7, 7, true, 2), (7, 7, true, 3), (6, 6, true, 1), (4, 9, true, 3), (5, 8, false, 2), (6, 6, true, 6)]
        {
            let r = |len: usize, w: usize| Tensor::<4>::random([2, 3, len, w], Distribution::Normal(0.0, 1.0), &plain);
            let (q0, k0, v0, w0) = (r(s, 8), r(t, 8), r(t, 5), r(s, 5));
            let draws = [&q0, &k0, &v0, &w0];
            let blocked = outputs_and_gradients(&device, draws, |q, k, v| attention_in_blocks(q, k, v, causal, None, rows));
            let whole = outputs_and_gradients(&device, draws, |q, k, v| reference(q, k, v, causal));
            for (name, (got, want)) in ["o", "dq", "dk", "dv"].iter().zip(blocked.iter().zip(whole.iter())) {
                assert_eq!(got.shape(), want.shape(), "{name} for s {s}, t {t}, rows {rows}");
                got.assert_approx_eq::<f32>(want, Tolerance::rel_abs(1e-4, 1e-5));
            }
        }
    }

    /// Grouped key/value heads shared inside one block (and repeated when the queries take
    /// several) give what burn's attention gives on repeated heads, outputs and gradients, after
    /// a cache too (`s < t`: the causal rule at `row mod s` with the offset `t − s`).
    #[test]
    fn grouped_heads_match_repeated_heads_in_one_block_and_in_several() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        for (s, t, causal, rows) in [(6, 6, true, 6), (3, 7, true, 3), (5, 5, false, 5), (6, 6, true, 2)] {
            let r = |heads: usize, len: usize, w: usize| Tensor::<4>::random([2, heads, len, w], Distribution::Normal(0.0, 1.0), &plain);
            let (q0, k0, v0, w0) = (r(6, s, 8), r(2, t, 8), r(2, t, 5), r(6, s, 5));
            let draws = [&q0, &k0, &v0, &w0];
            let grouped = outputs_and_gradients(&device, draws, |q, k, v| attention_in_blocks(q, k, v, causal, None, rows));
            let repeated = outputs_and_gradients(&device, draws, |q, k, v| reference(q, repeat_kv(k, 3), repeat_kv(v, 3), causal));
            for (name, (got, want)) in ["o", "dq", "dk", "dv"].iter().zip(grouped.iter().zip(repeated.iter())) {
                assert_eq!(got.shape(), want.shape(), "{name} for s {s}, t {t}, rows {rows}");
                got.assert_approx_eq::<f32>(want, Tolerance::rel_abs(1e-4, 1e-5));
            }
        }
    }

    #[test]
    fn blocked_attention_gives_gradients_to_the_tracked_inputs_only() {
        let device = Device::flex().autodiff();
        let r = |len: usize| Tensor::<4>::random([1, 2, len, 4], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (r(5).require_grad(), r(5), r(5));
        let grads = attention_in_blocks(q.clone(), k.clone(), v.clone(), true, None, 2).sum().backward();
        assert!(q.grad(&grads).is_some());
        assert!(k.grad(&grads).is_none() && v.grad(&grads).is_none());
    }

    #[test]
    fn gradients_match_burns_attention() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let r = |len: usize| Tensor::<4>::random([1, 2, len, 8], Distribution::Normal(0.0, 1.0), &plain);
        let (q0, k0, v0, w) = (r(6), r(6), r(6), r(6));
        let run = |fast: bool| {
            let lift = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), &device).require_grad();
            let (q, k, v) = (lift(&q0), lift(&k0), lift(&v0));
            let o = if fast {
                attention(q.clone(), k.clone(), v.clone(), true, None)
            } else {
                reference(q.clone(), k.clone(), v.clone(), true)
            };
            let grads = (o * Tensor::from_data(w.to_data(), &device)).sum().backward();
            [q, k, v].map(|x| x.grad(&grads).expect("grad").into_data())
        };
        for (fast, slow) in run(true).iter().zip(run(false).iter()) {
            fast.assert_approx_eq::<f32>(slow, Tolerance::rel_abs(1e-4, 1e-5));
        }
    }
}
