//! The RoPE kernel (CubeCL): one thread per rotated pair `(j, j + d_h/2)` of one head at one
//! position, reading one layout and writing the other (`[b, s, n, d_h]` ↔ `[b, n, s, d_h]`),
//! f32 arithmetic, one rounding. Formulas in [`crate::rope`].

use super::interop::contiguous;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rope_kernel<F: Float>(
    x: &[F],
    cos: &[F],
    sin: &[F],
    y: &mut [F],
    s: usize,
    n: usize,
    half: usize,
    per_batch_tables: u32,
    total: usize,
    #[comptime] inverse: bool,
) {
    let idx = ABSOLUTE_POS;
    if idx >= total {
        terminate!();
    }
    let d = half * 2;
    let j = idx % half;
    let r = idx / half;
    // r walks (batch, head, position); j runs along contiguous memory in both layouts.
    let bb = r / (n * s);
    let nn = (r / s) % n;
    let ss = r % s;
    let seq_major = ((bb * s + ss) * n + nn) * d;
    let head_major = ((bb * n + nn) * s + ss) * d;
    let (src, dst) = if comptime![inverse] { (head_major, seq_major) } else { (seq_major, head_major) };
    let table = (bb * usize::cast_from(per_batch_tables) * s + ss) * d + j;
    let c = f32::cast_from(cos[table]);
    let mut sn = f32::cast_from(sin[table]);
    if comptime![inverse] {
        sn = -sn;
    }
    let x1 = f32::cast_from(x[src + j]);
    let x2 = f32::cast_from(x[src + j + half]);
    y[dst + j] = F::cast_from(x1 * c - x2 * sn);
    y[dst + j + half] = F::cast_from(x2 * c + x1 * sn);
}

/// Forward (`[b, s, n, d_h]` → `[b, n, s, d_h]`) or inverse rotation and transpose.
///
/// # Panics
/// Operands of different dtypes or an unsupported dtype.
pub(crate) fn rope(x: CubeTensor, cos: CubeTensor, sin: CubeTensor, inverse: bool) -> CubeTensor {
    let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
    assert!(cos.dtype == x.dtype && sin.dtype == x.dtype, "rope: tables in another dtype than x");
    let dims = x.meta.shape().clone();
    let (b, s, n, d) = if inverse { (dims[0], dims[2], dims[1], dims[3]) } else { (dims[0], dims[1], dims[2], dims[3]) };
    let out_shape = if inverse { [b, s, n, d] } else { [b, n, s, d] };
    let rows = cos.meta.shape()[0];
    let client = x.client.clone();
    let len = b * s * n * d;
    let out = client.empty(len * x.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), x.device.clone(), out_shape.into(), out.clone(), x.dtype);
    let total = len / 2;
    if total == 0 {
        return result;
    }
    let cube_dim = CubeDim::new_1d(256);
    let count = cubecl::calculate_cube_count_elemwise(&client, total, cube_dim);
    let table_len = cos.meta.num_elements();
    let per_batch = u32::from(rows > 1);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: x and the output hold b·s·n·d contiguous elements, the tables
            // rows·s·d; every index is below those bounds for idx < total.
            unsafe {
                rope_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    BufferArg::from_raw_parts(x.handle.clone(), len),
                    BufferArg::from_raw_parts(cos.handle.clone(), table_len),
                    BufferArg::from_raw_parts(sin.handle.clone(), table_len),
                    BufferArg::from_raw_parts(out, len),
                    s,
                    n,
                    d / 2,
                    per_batch,
                    total,
                    inverse,
                )
            }
        };
    }
    match x.dtype {
        DType::F32 => launch!(f32),
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        other => panic!("rope: unsupported dtype {other:?}"),
    }
    result
}
