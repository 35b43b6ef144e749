//! The RoPE kernel (CubeCL): one thread per `N` consecutive rotated pairs `(j .. j + N,
//! j + d_h/2 .. j + d_h/2 + N)` of one head at one position, reading one layout and writing the
//! other (`[b, s, n, d_h]` ↔ `[b, n, s, d_h]`). `N` fills a 16-byte vector (8 bf16/f16 or 4 f32
//! values) when `d_h/2` is a multiple of it and every buffer starts on a 16-byte boundary (and
//! `KINDLING_ELEMWISE` is not `scalar`); else `N = 1`, one pair per thread. f32 arithmetic per
//! element, one rounding, the same in both widths. Formulas in [`crate::rope`].

use super::interop::{contiguous, vector_width};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Every length and index here counts vectors of `N` elements: `half` is `d_h / 2 / N`, thread
/// `idx < total` rotates vector `j = idx % half` of the first half of its row against vector
/// `j + half`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rope_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    cos: &[Vector<F, N>],
    sin: &[Vector<F, N>],
    y: &mut [Vector<F, N>],
    seq: usize,
    heads: usize,
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
    let bb = r / (heads * seq);
    let nn = (r / seq) % heads;
    let ss = r % seq;
    let seq_major = ((bb * seq + ss) * heads + nn) * d;
    let head_major = ((bb * heads + nn) * seq + ss) * d;
    let (src, dst) = if comptime![inverse] { (head_major, seq_major) } else { (seq_major, head_major) };
    let table = (bb * usize::cast_from(per_batch_tables) * seq + ss) * d + j;
    let c = Vector::<f32, N>::cast_from(cos[table]);
    let mut sn = Vector::<f32, N>::cast_from(sin[table]);
    if comptime![inverse] {
        sn = -sn;
    }
    let x1 = Vector::<f32, N>::cast_from(x[src + j]);
    let x2 = Vector::<f32, N>::cast_from(x[src + j + half]);
    // Explicit fused multiply-adds (as in the decoding kernel's rotation,
    // `super::decode_attention`): the compiler's own contraction of `x1·c − x2·s` may differ
    // between this kernel's widths and that kernel, and the cache rows must round alike.
    y[dst + j] = Vector::<F, N>::cast_from(fma(x1, c, -(x2 * sn)));
    y[dst + j + half] = Vector::<F, N>::cast_from(fma(x2, c, x1 * sn));
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
    if len == 0 || d < 2 {
        return result;
    }
    // 16-byte vectors when each half row is a whole number of them (then so are every row
    // start, in x, the output and the tables) and the four buffers are 16-byte aligned.
    let vs = vector_width(d / 2, 16 / x.dtype.size(), &[&x, &cos, &sin, &result]);
    let total = len / 2 / vs;
    let cube_dim = CubeDim::new_1d(256);
    let count = cubecl::calculate_cube_count_elemwise(&client, total, cube_dim);
    let table_len = cos.meta.num_elements();
    let per_batch = u32::from(rows > 1);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: x and the output hold b·s·n·d contiguous elements, the tables
            // rows·s·d; d/2 is a multiple of vs and the four buffers start on 16-byte
            // boundaries when vs > 1, so in vectors of vs every index is below
            // b·s·n·d/vs (rows·s·d/vs for the tables) for idx < total.
            unsafe {
                rope_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    vs,
                    BufferArg::from_raw_parts(x.handle.clone(), len),
                    BufferArg::from_raw_parts(cos.handle.clone(), table_len),
                    BufferArg::from_raw_parts(sin.handle.clone(), table_len),
                    BufferArg::from_raw_parts(out, len),
                    s,
                    n,
                    d / 2 / vs,
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
