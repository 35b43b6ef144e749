//! Inverted dropout with a counter-based mask, fused with a dtype cast: one kernel forward and
//! one backward on CUDA, and no mask kept between them.
//!
//! Element `i` is kept when its 16-bit uniform clears `⌊p·2¹⁶⌋` ([`keep_bits`]: one hash serves
//! two neighbouring elements, its low half element `2j` and its high half `2j + 1`) and
//! scaled by `c/(1 − p)`: `y = cast(x · m · c / (1 − p))`, `c` a constant the caller folds in (a
//! LoRA adapter's `α/r`: the side path is linear in its input). The backward regenerates `m` from
//! the seed: `dx = cast(dy · m · c / (1 − p))`. Each call draws a fresh seed from a process-wide stream
//! ([`set_seed`] restarts it), so runs are reproducible for a given seed and call sequence.
//! As burn ops (`burn::nn::Dropout` and a cast) this is four kernels forward, three backward,
//! and the mask (one f32 per element) lives until the backward.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::{DType, Tensor};

static STREAM: AtomicU64 = AtomicU64::new(0x6B1D_1A57_0000_0000);

/// Restarts the stream of dropout seeds (e.g. at the start of a training run).
pub fn set_seed(seed: u64) {
    STREAM.store(splitmix(seed), Ordering::Relaxed);
}

/// Tests that restart the stream and then draw from it hold this, so that no other test's draws
/// come between.
#[cfg(test)]
pub(crate) static STREAM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The next seed of the stream (one per fused dropout or adapter op).
#[cfg_attr(not(any(test, feature = "cuda")), allow(dead_code))]
pub(crate) fn next_seed() -> u64 {
    splitmix(STREAM.fetch_add(1, Ordering::Relaxed))
}

/// The 16-bit uniform of element `index` under `seed`: half of
/// [`crate::counter_hash::counter_hash`]`(seed, index / 2)`, the low half for an even index and
/// the high half for an odd one; the kernel computes the same in u32 arithmetic. (Two elements
/// per hash halve the integer work that bounded the kernel; 16 bits put `p` within 2⁻¹⁶.)
pub fn keep_bits(seed: u64, index: u32) -> u32 {
    let h = crate::counter_hash::counter_hash(seed, index >> 1);
    (h >> (16 * (index & 1))) & 0xFFFF
}

/// The threshold below which an element is dropped: `⌊p · 2¹⁶⌋`.
pub fn drop_threshold(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * (1u64 << 16) as f64) as u32
}

/// Dropout of `x` with probability `p`, times `scale`, cast to `dtype`, when `x` lives on an
/// autodiff CUDA device (training) and `0 < p < 1`; otherwise `None` (the caller uses burn's
/// `Dropout`).
pub fn fused_dropout<const D: usize>(x: Tensor<D>, p: f64, scale: f64, dtype: DType) -> Option<Tensor<D>> {
    let fused = p > 0.0
        && p < 1.0
        && x.device().is_autodiff()
        && crate::gemm::uses_extension(&x.device())
        && x.shape().num_elements() < u32::MAX as usize;
    if !fused {
        return None;
    }
    #[cfg(any(test, feature = "cuda"))]
    {
        use crate::extension::KernelBackend;
        use burn::backend::Dispatch;
        let dims = x.dims();
        let n = x.shape().num_elements();
        let flat = x.reshape([n]);
        let y: Tensor<1> = Tensor::from_dispatch(<Dispatch as KernelBackend>::dropout(flat.into_dispatch(), p, scale, next_seed(), dtype));
        return Some(y.reshape(dims));
    }
    #[allow(unreachable_code)]
    {
        let _ = (dtype, scale);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn the_mask_drops_about_p_and_the_backward_reuses_it() {
        let _stream = STREAM_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([64, 50], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<2>::random([64, 50], Distribution::Normal(0.0, 1.0), &device.clone().without_autodiff());
        let y = fused_dropout(x.clone(), 0.25, 2.0, DType::F32).expect("fused on an autodiff device");
        let grads = (y.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
        let dx = x.grad(&grads).expect("dx").into_data().try_to_vec::<f32>().expect("dx");
        let (x, y, w) = (
            x.into_data().try_to_vec::<f32>().expect("x"),
            y.into_data().try_to_vec::<f32>().expect("y"),
            w.into_data().try_to_vec::<f32>().expect("w"),
        );
        let dropped = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        assert!((dropped - 0.25).abs() < 0.05, "dropped {dropped}");
        for i in 0..x.len() {
            let kept = y[i] != 0.0;
            let (want_y, want_dx) = if kept { (x[i] * 2.0 / 0.75, w[i] * 2.0 / 0.75) } else { (0.0, 0.0) };
            assert!((y[i] - want_y).abs() <= 1e-6 * want_y.abs().max(1.0), "y[{i}]");
            assert!((dx[i] - want_dx).abs() <= 1e-6 * want_dx.abs().max(1.0), "dx[{i}]: {} vs {want_dx}", dx[i]);
        }
        // Fresh seeds: two calls draw different masks.
        let z = Tensor::<2>::ones([64, 50], &device);
        let (a, b) = (fused_dropout(z.clone(), 0.5, 1.0, DType::F32).expect("a"), fused_dropout(z, 0.5, 1.0, DType::F32).expect("b"));
        assert_ne!(a.into_data().try_to_vec::<f32>().expect("a"), b.into_data().try_to_vec::<f32>().expect("b"));
        // Off an autodiff device, or at p = 0, the caller keeps burn's dropout.
        assert!(fused_dropout(Tensor::<1>::ones([4], &Device::flex()), 0.1, 1.0, DType::F32).is_none());
        assert!(fused_dropout(Tensor::<1>::ones([4], &device), 0.0, 1.0, DType::F32).is_none());
    }

    #[test]
    fn the_hash_is_uniform_enough_and_the_threshold_is_exact() {
        let n = 1 << 16;
        let below = (0..n).filter(|&i| keep_bits(42, i) < drop_threshold(0.1)).count() as f64 / n as f64;
        assert!((below - 0.1).abs() < 0.01, "{below}");
        assert_eq!(drop_threshold(0.5), 1 << 15);
        assert!((0..n).all(|i| keep_bits(7, i) < (1 << 16)));
        // The two halves of one hash are not the same draw: neighbours agree about as often as
        // two independent coins with P(drop) = 0.1 would (0.82).
        let t = drop_threshold(0.1);
        let agree = (0..n / 2).filter(|&j| (keep_bits(42, 2 * j) < t) == (keep_bits(42, 2 * j + 1) < t)).count() as f64;
        assert!((agree / (n / 2) as f64 - 0.82).abs() < 0.01, "{agree}");
    }
}
