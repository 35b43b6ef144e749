//! The dropout kernel (CubeCL): one thread per element, the mask from the counter hash of
//! [`crate::dropout::keep_bits`] ([`super::counter_hash`]), the product in f32, one rounding.

use super::counter_hash::counter_hash;
use super::interop::contiguous;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

#[cube(launch_unchecked)]
fn dropout_kernel<I: Float, O: Float>(x: &[I], y: &mut [O], seed_lo: u32, seed_hi: u32, threshold: u32, scale: f32) {
    let i = ABSOLUTE_POS;
    if i >= y.len() {
        terminate!();
    }
    let bits = counter_hash(i, seed_lo, seed_hi) >> 8u32;
    let mut v = 0.0f32;
    if bits >= threshold {
        v = f32::cast_from(x[i]) * scale;
    }
    y[i] = O::cast_from(v);
}

/// `cast(x · m · scale / (1 − p))` over a 1-D tensor; `None` for dtypes the kernel does not take.
pub(crate) fn dropout(x: CubeTensor, p: f64, scale: f64, seed: u64, dtype: DType) -> Option<CubeTensor> {
    let x = contiguous(x);
    let n = x.meta.num_elements();
    let client = x.client.clone();
    let out = client.empty(n * dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), x.device.clone(), [n].into(), out.clone(), dtype);
    if n == 0 {
        return Some(result);
    }
    let cube_dim = CubeDim::new_1d(256);
    let count = cubecl::calculate_cube_count_elemwise(&client, n, cube_dim);
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let threshold = crate::dropout::drop_threshold(p);
    let scale = (scale / (1.0 - p)) as f32;
    macro_rules! launch {
        ($i:ty, $o:ty) => {
            // SAFETY: input and output hold n contiguous elements; the kernel guards `i < n`.
            unsafe {
                dropout_kernel::launch_unchecked::<$i, $o>(
                    &client,
                    count,
                    cube_dim,
                    BufferArg::from_raw_parts(x.handle.clone(), n),
                    BufferArg::from_raw_parts(out, n),
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
