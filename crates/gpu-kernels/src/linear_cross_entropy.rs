//! The vocabulary projection and its cross-entropy together, over chunks of rows, so that the
//! `[n, V]` logits (V = 128,256 for Llama 3) never exist whole: neither in the forward, nor
//! kept for the backward, nor as their gradient.
//!
//! For hidden rows `h: [n, d]`, the projection `W: [V, d]` and targets `y: [n]` (`ignore` → 0):
//! `ℓᵣ = log Σⱼ exp(zᵣⱼ) − z_{r,yᵣ}` with `z = h·Wᵀ`, per chunk of `rows` rows
//! ([`crate::cross_entropy`] on the chunk's logits). Backward for upstream `g: [n]`, per chunk,
//! recomputing `z_c`: `dz_c = g_c · (softmax(z_c) − onehot(y_c))` (the cross-entropy kernel's
//! backward), `dh_c = dz_c · W`, and when `W` is tracked `dW += dz_cᵀ · h_c` (summed in f32).
//! The backward keeps `h`, `W` and `y`; memory at any time is one chunk's `[rows, V]` logits and
//! their gradient.

use burn::tensor::{Int, Tensor};

use crate::gemm::uses_extension;

/// Most logits (`rows · V`) one chunk may hold: 64 Mi, 128 MiB in bf16 (Llama 3: 512 rows).
/// A chunk's logits are a training step's largest allocation, and CubeCL's pool carves every
/// activation from pages sized to the largest allocation, so the chunk sets the pool's grain:
/// on the H200, 512-row chunks held 0.1 GiB less of the pool than 1,024-row ones and ran the
/// all-linear 4×512 step 2 % faster (2026-11-30); 256-row chunks had measured 31 ms slower per
/// step (the cross-entropy kernels then ran one plane per row; rewritten since).
pub const MAX_CHUNK_LOGITS: usize = 1 << 26;

/// Rows per chunk for `n` rows over a vocabulary of `v`: all of them when `n · v` fits in
/// [`MAX_CHUNK_LOGITS`], else the most that fit, rounded down to a multiple of 64 when that
/// many fit, at least one.
pub fn chunk_rows(n: usize, v: usize) -> usize {
    crate::row_chunks::rows_within(MAX_CHUNK_LOGITS, v, n)
}

/// `ℓᵣ` for every row of `h: [n, d]` projected by `w: [V, d]`, with `targets: [n]` (`ignore`
/// → 0), in f32; differentiable in `h` and `w`. On CUDA the rows go in chunks of
/// [`chunk_rows`]; elsewhere this is [`crate::cross_entropy`] of `h·wᵀ`.
///
/// # Shapes
/// - `h`: `[n, d]`, `w`: `[V, d]`, `targets`: `[n]` → `[n]`.
///
/// # Panics
/// If the shapes disagree.
pub fn linear_cross_entropy(h: Tensor<2>, w: Tensor<2>, targets: Tensor<1, Int>, ignore: i64) -> Tensor<1> {
    let ([n, _], [v, _]) = (h.dims(), w.dims());
    linear_cross_entropy_in_chunks(h, w, targets, ignore, chunk_rows(n, v))
}

/// [`linear_cross_entropy`] with `rows` rows per chunk (on devices with the extension).
///
/// # Panics
/// As [`linear_cross_entropy`].
pub fn linear_cross_entropy_in_chunks(h: Tensor<2>, w: Tensor<2>, targets: Tensor<1, Int>, ignore: i64, rows: usize) -> Tensor<1> {
    let ([n, d], [_, wd]) = (h.dims(), w.dims());
    assert_eq!(d, wd, "linear_cross_entropy: hidden {:?} for a weight {:?}", h.dims(), w.dims());
    assert_eq!(targets.dims(), [n], "linear_cross_entropy: {n} rows for targets {:?}", targets.dims());
    let w = if w.dtype() == h.dtype() { w } else { w.cast(h.dtype()) };
    if uses_extension(&h.device()) {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            return Tensor::from_dispatch(<Dispatch as KernelBackend>::linear_cross_entropy(
                h.into_dispatch(),
                w.into_dispatch(),
                targets.into_dispatch(),
                ignore,
                rows,
            ));
        }
    }
    let _ = rows;
    crate::cross_entropy(crate::portable_linear(h, w), targets, ignore)
}

/// The schedule on any backend's primitives, behind
/// [`crate::extension::KernelBackend::linear_cross_entropy`].
#[cfg(any(test, feature = "cuda"))]
pub(crate) mod chunks {
    use std::ops::Range;

    use burn::backend::{
        TensorMetadata,
        tensor::{FloatTensor, IntTensor},
    };
    use burn::tensor::{FloatDType, Slice};

    use crate::extension::KernelBackend;
    use crate::row_chunks::{join, narrow, row_ranges};

    /// Targets `range`.
    fn targets_of<B: KernelBackend>(targets: &IntTensor<B>, range: &Range<usize>) -> IntTensor<B> {
        B::int_slice(targets.clone(), &[Slice::new(range.start as isize, Some(range.end as isize), 1)])
    }

    /// `ℓ: [n]` (see the module docs).
    pub(crate) fn forward<B: KernelBackend>(
        h: FloatTensor<B>,
        w: FloatTensor<B>,
        targets: IntTensor<B>,
        ignore: i64,
        rows: usize,
    ) -> FloatTensor<B> {
        let n = h.shape().dims::<2>()[0];
        let parts = row_ranges(n, rows)
            .into_iter()
            .map(|r| {
                B::cross_entropy(B::gemm(narrow::<B>(&h, 0, r.clone()), w.clone(), false, true), targets_of::<B>(&targets, &r), ignore)
            })
            .collect();
        join::<B>(parts, 0)
    }

    /// `(dh, dW)` for upstream `grad: [n]`; `dW` only when `wrt_w` (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward<B: KernelBackend>(
        h: FloatTensor<B>,
        w: FloatTensor<B>,
        targets: IntTensor<B>,
        grad: FloatTensor<B>,
        ignore: i64,
        rows: usize,
        wrt_w: bool,
    ) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
        let n = h.shape().dims::<2>()[0];
        let step = |r: Range<usize>| {
            let hc = narrow::<B>(&h, 0, r.clone());
            let z = B::gemm(hc.clone(), w.clone(), false, true);
            let dz = B::cross_entropy_backward(z, targets_of::<B>(&targets, &r), narrow::<B>(&grad, 0, r), ignore);
            let dw = wrt_w.then(|| B::gemm(dz.clone(), hc, true, false));
            (B::gemm(dz, w.clone(), false, false), dw)
        };
        let mut plan = row_ranges(n, rows);
        if plan.len() == 1 {
            return step(plan.remove(0));
        }
        let dtype = w.dtype();
        let (mut dh, mut dw) = (Vec::with_capacity(plan.len()), None);
        for r in plan {
            let (dh_c, dw_c) = step(r);
            dh.push(dh_c);
            // dW summed over chunks in f32.
            dw = match (dw, dw_c.map(|p| B::float_cast(p, FloatDType::F32))) {
                (Some(acc), Some(part)) => Some(B::float_add(acc, part)),
                (acc, part) => acc.or(part),
            };
        }
        (join::<B>(dh, 0), dw.map(|acc| B::float_cast(acc, FloatDType::from(dtype))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    #[test]
    fn chunk_rows_keep_small_batches_whole_and_split_a_large_vocabulary() {
        assert_eq!(chunk_rows(100, 1000), 100);
        // Llama 3: 128,256 logits per row → 512 rows per chunk (128 MiB of bf16).
        assert_eq!(chunk_rows(2048, 128_256), 512);
        assert_eq!(chunk_rows(7, 1 << 30), 1);
    }

    #[test]
    fn chunks_give_the_whole_products_loss_and_gradients() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let (n, d, v) = (7, 5, 11);
        let h0 = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &plain);
        let w0 = Tensor::<2>::random([v, d], Distribution::Normal(0.0, 1.0), &plain);
        let g0 = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &plain);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, -100, 0, 10, 5, -100, 2], [n]), &device);
        // `rows` = None: burn's linear and the ops cross-entropy, one graph.
        let run = |rows: Option<usize>, w_tracked: bool| {
            let h = Tensor::<2>::from_data(h0.to_data(), &device).require_grad();
            let w = Tensor::<2>::from_data(w0.to_data(), &device);
            let w = if w_tracked { w.require_grad() } else { w };
            let l = match rows {
                Some(rows) => linear_cross_entropy_in_chunks(h.clone(), w.clone(), targets.clone(), -100, rows),
                None => crate::cross_entropy::portable_cross_entropy(h.clone().matmul(w.clone().transpose()), targets.clone(), -100),
            };
            let grads = (l.clone() * Tensor::from_data(g0.to_data(), &device)).sum().backward();
            (l.into_data(), h.grad(&grads).expect("dh").into_data(), w.grad(&grads).map(|g| g.into_data()))
        };
        let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
        let want = run(None, true);
        for rows in [1, 2, 3, 7, 64] {
            let got = run(Some(rows), true);
            got.0.assert_approx_eq::<f32>(&want.0, tol);
            got.1.assert_approx_eq::<f32>(&want.1, tol);
            got.2.expect("dW").assert_approx_eq::<f32>(want.2.as_ref().expect("dW"), tol);
        }
        // A frozen projection gets no gradient (and none is computed).
        let frozen = run(Some(3), false);
        frozen.1.assert_approx_eq::<f32>(&want.1, tol);
        assert!(frozen.2.is_none());
    }
}
