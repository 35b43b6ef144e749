//! Copies the first positions of one key/value cache buffer into another in place: the kept
//! buffers of a recorded decoding step take a new prompt's keys and values without moving, so
//! the graph's addresses stay valid.

use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Unit `e` of `rows · len · width` copies element `(row, pos, c)`: rows of `src_cap` and
/// `dst_cap` positions of `width` values each.
#[cube(launch_unchecked)]
fn copy_positions_kernel<F: Float>(src: &[F], dst: &mut [F], len: usize, width: usize, src_cap: usize, dst_cap: usize, total: usize) {
    let e = ABSOLUTE_POS;
    if e < total {
        let c = e % width;
        let pos = (e / width) % len;
        let row = e / (width * len);
        dst[(row * dst_cap + pos) * width + c] = src[(row * src_cap + pos) * width + c];
    }
}

/// `dst[.., 0..len, ..] ← src[.., 0..len, ..]` for contiguous `[b, h, capacity, d]` buffers
/// of one float dtype (capacities may differ). Returns `false` (launching nothing) when they do
/// not fit.
pub(crate) fn copy_positions(src: &CubeTensor, dst: &CubeTensor, len: usize) -> bool {
    let (s, d) = (src.meta.shape(), dst.meta.shape());
    let fits = s.len() == 4
        && d.len() == 4
        && s[0] * s[1] == d[0] * d[1]
        && s[3] == d[3]
        && len <= s[2].min(d[2])
        && src.dtype == dst.dtype
        && src.is_contiguous()
        && dst.is_contiguous();
    if !fits {
        return false;
    }
    let (rows, width) = (s[0] * s[1], s[3]);
    let total = rows * len * width;
    if total == 0 {
        return true;
    }
    let client = src.client.clone();
    let cube = 256u32;
    let count = CubeCount::Static(total.div_ceil(cube as usize) as u32, 1, 1);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: every index is below `rows · capacity · width` of its buffer (pos < len ≤
            // both capacities); units past `total` write nothing.
            unsafe {
                copy_positions_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    CubeDim::new_1d(cube),
                    BufferArg::from_raw_parts(src.handle.clone(), rows * s[2] * width),
                    BufferArg::from_raw_parts(dst.handle.clone(), rows * d[2] * width),
                    len,
                    width,
                    s[2],
                    d[2],
                    total,
                )
            }
        };
    }
    match src.dtype {
        burn::tensor::DType::BF16 => launch!(half::bf16),
        burn::tensor::DType::F16 => launch!(half::f16),
        burn::tensor::DType::F32 => launch!(f32),
        _ => return false,
    }
    true
}
