//! The dropout kernel (CubeCL): vectors of 4 elements per thread (8 from bf16/f16 to bf16/f16)
//! when the length and the buffers' offsets allow, else one; each element's mask from a 16-bit
//! half of the counter hash of its index's pair ([`crate::dropout::keep_bits`],
//! [`super::counter_hash`]: one hash per two lanes), the product in f32, one rounding.

use super::counter_hash::counter_hash;
use super::interop::{Elemwise, contiguous, empty_1d};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Element `N·i + l` (lane `l` of vector `i`) keeps `x·scale` when its hash clears `threshold`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn dropout_kernel<I: Float, O: Float, N: Size>(
    x: &[Vector<I, N>],
    y: &mut [Vector<O, N>],
    len: usize,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
) {
    let i = ABSOLUTE_POS;
    if i >= len {
        terminate!();
    }
    let scaled = Vector::<f32, N>::cast_from(x[i]) * Vector::<f32, N>::new(scale);
    let width = scaled.vector_size().comptime();
    let mut kept = Vector::<f32, N>::new(0.0f32);
    if comptime![width == 1] {
        // Element i takes the half (i & 1) of its pair's hash.
        let h = counter_hash(i >> 1, seed_lo, seed_hi);
        let bits = (h >> (u32::cast_from(i & 1) * 16u32)) & 0xFFFFu32;
        if bits >= threshold {
            kept.insert(0usize, scaled.extract(0usize));
        }
    } else {
        // An even width: lane pairs (2k, 2k + 1) share the hash of pair `i · width/2 + k`.
        let pairs = comptime![width / 2];
        #[unroll]
        for k in 0..pairs {
            let h = counter_hash(i * pairs + k, seed_lo, seed_hi);
            if (h & 0xFFFFu32) >= threshold {
                kept.insert(2 * k, scaled.extract(2 * k));
            }
            if (h >> 16u32) >= threshold {
                kept.insert(2 * k + 1, scaled.extract(2 * k + 1));
            }
        }
    }
    y[i] = Vector::<O, N>::cast_from(kept);
}

/// `cast(x · m · scale / (1 − p))` over a 1-D tensor; `None` for dtypes the kernel does not take.
pub(crate) fn dropout(x: CubeTensor, p: f64, scale: f64, seed: u64, dtype: DType) -> Option<CubeTensor> {
    let x = contiguous(x);
    let n = x.meta.num_elements();
    let client = x.client.clone();
    let result = empty_1d(&x, n, dtype);
    if n == 0 {
        return Some(result);
    }
    // 16-byte loads of 2-byte inputs when both sides are 2-byte; 4 values when either is f32
    // (the widest f32 vector the compiler emits).
    let wide = if x.dtype.size() == 2 && dtype.size() == 2 { 8 } else { 4 };
    let Elemwise { vs, len, cube_dim, count } = Elemwise::new(n, wide, &[&x, &result]);
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let threshold = crate::dropout::drop_threshold(p);
    let scale = (scale / (1.0 - p)) as f32;
    macro_rules! launch {
        ($i:ty, $o:ty) => {
            // SAFETY: input and output hold n contiguous elements (`len` vectors of `vs`, 16-byte
            // aligned when vs > 1); the kernel guards `i < len`.
            unsafe {
                dropout_kernel::launch_unchecked::<$i, $o>(
                    &client,
                    count,
                    cube_dim,
                    vs,
                    BufferArg::from_raw_parts(x.handle.clone(), n),
                    BufferArg::from_raw_parts(result.handle.clone(), n),
                    len,
                    lo,
                    hi,
                    threshold,
                    scale,
                )
            }
        };
    }
    match (x.dtype, dtype) {
        (DType::F32, DType::F32) => launch!(f32, f32),
        (DType::BF16, DType::F32) => launch!(half::bf16, f32),
        (DType::F32, DType::BF16) => launch!(f32, half::bf16),
        (DType::BF16, DType::BF16) => launch!(half::bf16, half::bf16),
        (DType::F16, DType::F32) => launch!(half::f16, f32),
        (DType::F32, DType::F16) => launch!(f32, half::f16),
        (DType::F16, DType::F16) => launch!(half::f16, half::f16),
        _ => return None,
    }
    Some(result)
}
