//! The `add_cast` kernel (CubeCL): `y = round(base + delta)` element-wise in f32, in 16-byte
//! vectors of the widest operand (4 values when either is f32, else 8) when the length and the
//! buffers' offsets allow, one value per thread otherwise. Formula in [`crate::add_cast`].

use super::interop::{Elemwise, contiguous, empty_1d};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

#[cube(launch_unchecked)]
fn add_cast_kernel<B: Float, D: Float, N: Size>(base: &[Vector<B, N>], delta: &[Vector<D, N>], y: &mut [Vector<B, N>], len: usize) {
    let i = ABSOLUTE_POS;
    if i >= len {
        terminate!();
    }
    y[i] = Vector::<B, N>::cast_from(Vector::<f32, N>::cast_from(base[i]) + Vector::<f32, N>::cast_from(delta[i]));
}

/// `base + delta` of two 1-D tensors of one length, in `base`'s dtype.
///
/// # Panics
/// Lengths that differ, or a dtype pair other than (bf16/f16/f32, f32) or (bf16/f16, bf16/f16).
pub(crate) fn add_cast(base: CubeTensor, delta: CubeTensor) -> CubeTensor {
    let (b, d) = (contiguous(base), contiguous(delta));
    let n = b.meta.num_elements();
    assert_eq!(d.meta.num_elements(), n, "add_cast: base and delta differ in length");
    let y = empty_1d(&b, n, b.dtype);
    if n == 0 {
        return y;
    }
    let client = b.client.clone();
    let wide = if b.dtype == DType::F32 || d.dtype == DType::F32 { 4 } else { 8 };
    let Elemwise { vs, len, cube_dim, count } = Elemwise::new(n, wide, &[&b, &d, &y]);
    macro_rules! launch {
        ($b:ty, $d:ty) => {
            // SAFETY: the three buffers hold n contiguous elements (`len` vectors of `vs`,
            // 16-byte aligned when vs > 1); the kernel guards `i < len`.
            unsafe {
                add_cast_kernel::launch_unchecked::<$b, $d>(
                    &client,
                    count,
                    cube_dim,
                    vs,
                    BufferArg::from_raw_parts(b.handle.clone(), n),
                    BufferArg::from_raw_parts(d.handle.clone(), n),
                    BufferArg::from_raw_parts(y.handle.clone(), n),
                    len,
                )
            }
        };
    }
    match (b.dtype, d.dtype) {
        (DType::BF16, DType::F32) => launch!(half::bf16, f32),
        (DType::F16, DType::F32) => launch!(half::f16, f32),
        (DType::F32, DType::F32) => launch!(f32, f32),
        (DType::BF16, DType::BF16) => launch!(half::bf16, half::bf16),
        (DType::F16, DType::F16) => launch!(half::f16, half::f16),
        (DType::BF16, DType::F16) => launch!(half::bf16, half::f16),
        (DType::F16, DType::BF16) => launch!(half::f16, half::bf16),
        (DType::F32, DType::BF16) => launch!(f32, half::bf16),
        (DType::F32, DType::F16) => launch!(f32, half::f16),
        other => panic!("add_cast: unsupported dtypes {other:?}"),
    }
    y
}
