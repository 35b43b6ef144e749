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

/// Most logits (`rows · V`) one chunk may hold: 32 Mi, 64 MiB in bf16.
pub const MAX_CHUNK_LOGITS: usize = 1 << 25;

/// Rows per chunk for `n` rows over a vocabulary of `v`: all of them when `n · v` fits in
/// [`MAX_CHUNK_LOGITS`], else the most that fit, rounded down to a multiple of 64 when that
/// many fit, at least one.
pub fn chunk_rows(n: usize, v: usize) -> usize {
    let fit = MAX_CHUNK_LOGITS / v.max(1);
    let rows = if fit >= 64 { fit / 64 * 64 } else { fit.max(1) };
    rows.min(n.max(1))
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
    use burn::backend::{
        TensorMetadata,
        tensor::{FloatTensor, IntTensor},
    };
    use burn::tensor::{FloatDType, Shape, Slice};

    use crate::extension::KernelBackend;

    /// The row ranges of `n` rows, `rows` at a time.
    fn ranges(n: usize, rows: usize) -> Vec<std::ops::Range<usize>> {
        let rows = rows.max(1);
        (0..n).step_by(rows).map(|start| start..(start + rows).min(n)).collect()
    }

    fn slice(range: &std::ops::Range<usize>) -> Slice {
        Slice::new(range.start as isize, Some(range.end as isize), 1)
    }

    /// Rows `range` of a `[n, d]` tensor.
    fn float_rows<B: KernelBackend>(x: &FloatTensor<B>, range: &std::ops::Range<usize>) -> FloatTensor<B> {
        B::float_slice(x.clone(), &[slice(range), Slice::from(..)])
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
        let mut parts: Vec<_> = ranges(n, rows)
            .iter()
            .map(|r| {
                let z = B::gemm(float_rows::<B>(&h, r), w.clone(), false, true);
                B::cross_entropy(z, B::int_slice(targets.clone(), &[slice(r)]), ignore)
            })
            .collect();
        if parts.len() == 1 { parts.remove(0) } else { B::float_cat(parts, 0) }
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
        let [n, _] = h.shape().dims::<2>();
        let [v, d] = w.shape().dims::<2>();
        let (device, dtype) = (h.device(), w.dtype());
        let plan = ranges(n, rows);
        let mut dw = (wrt_w && plan.len() > 1).then(|| B::float_zeros(Shape::new([v, d]), &device, FloatDType::F32));
        let mut dw_whole = None;
        let mut dh = Vec::with_capacity(plan.len());
        for r in &plan {
            let hc = float_rows::<B>(&h, r);
            let z = B::gemm(hc.clone(), w.clone(), false, true);
            let dz = B::cross_entropy_backward(z, B::int_slice(targets.clone(), &[slice(r)]), float_rows1::<B>(&grad, r), ignore);
            dh.push(B::gemm(dz.clone(), w.clone(), false, false));
            if wrt_w {
                let part = B::gemm(dz, hc, true, false);
                match dw.take() {
                    Some(acc) => dw = Some(B::float_add(acc, B::float_cast(part, FloatDType::F32))),
                    None => dw_whole = Some(part),
                }
            }
        }
        let dw = dw.map(|acc| B::float_cast(acc, FloatDType::from(dtype))).or(dw_whole);
        let dh = if dh.len() == 1 { dh.remove(0) } else { B::float_cat(dh, 0) };
        (dh, dw)
    }

    /// Entries `range` of a `[n]` tensor.
    fn float_rows1<B: KernelBackend>(x: &FloatTensor<B>, range: &std::ops::Range<usize>) -> FloatTensor<B> {
        B::float_slice(x.clone(), &[slice(range)])
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn ranges_cover_every_row_once() {
            assert_eq!(super::ranges(5, 2), vec![0..2, 2..4, 4..5]);
            assert_eq!(super::ranges(4, 9), vec![0..4]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    #[test]
    fn chunk_rows_keep_small_batches_whole_and_split_a_large_vocabulary() {
        assert_eq!(chunk_rows(100, 1000), 100);
        // Llama 3: 128,256 logits per row → 256 rows per chunk (64 MiB of bf16).
        assert_eq!(chunk_rows(2048, 128_256), 256);
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
