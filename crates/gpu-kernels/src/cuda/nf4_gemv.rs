//! Batch-1 `y = x · Wᵀ` straight from packed NF4/FP4 bytes (CubeCL): one plane (32 lanes) per
//! output row, 8 rows per cube. Each lane decodes whole 32-bit words (8 values of one scale
//! block, the layout of [`super::nf4`]), rounds each value to the compute dtype exactly as the
//! dequantization kernel does, multiplies by `x` in f32 and accumulates; the plane sums. Reads
//! half a byte per weight and writes nothing but `y` — the dense weight never exists — and runs
//! on burn's stream, so decoding needs no host synchronization around its projections.

use super::interop::contiguous;
use super::nf4::block_scale;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use crate::nf4::Nf4Meta;

const ROWS_PER_CUBE: usize = 8;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn nf4_gemv_kernel<F: Float>(
    packed: &[u32],
    code: &[f32],
    absmax: &[f32],
    qcodes: &[u8],
    nested_code: &[f32],
    x: &[F],
    y: &mut [F],
    rows: usize,
    words_per_row: usize,
    rounds: usize,
    offset: f32,
    zero: u32,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let mut acc = 0.0f32;
    for k in 0..rounds {
        let w = lane + k * 32;
        if w < words_per_row {
            let t = row * words_per_row + w;
            let word = packed[t];
            let block = (t * 8) / blocksize;
            let scale = block_scale(absmax, qcodes, nested_code, block, offset, zero, nested_blocksize, double);
            #[unroll]
            for i in 0..8usize {
                let shift = comptime![(8 * (i / 2) + if i.is_multiple_of(2) { 4 } else { 0 }) as u32];
                let nibble = (word >> shift) & 0xFu32;
                let value = f32::cast_from(F::cast_from(code[usize::cast_from(nibble)] * scale));
                acc += value * f32::cast_from(x[w * 8 + i]);
            }
        }
    }
    let total = plane_sum(acc);
    if lane == 0 {
        y[row] = F::cast_from(total);
    }
}

/// `x · Wᵀ` for one row `x: [1, cols]` in the weight's compute dtype; `None` when the inputs do
/// not fit the kernel (the caller dequantizes and multiplies instead).
pub(crate) fn nf4_gemv(
    x: &CubeTensor,
    packed: &CubeTensor,
    code: &CubeTensor,
    absmax: &CubeTensor,
    qcodes: &CubeTensor,
    nested_code: &CubeTensor,
    meta: &Nf4Meta,
) -> Option<CubeTensor> {
    let shape = x.meta.shape();
    if shape.len() != 2 || shape[0] != 1 || shape[1] != meta.cols {
        return None;
    }
    if packed.dtype != DType::U8 || !packed.is_contiguous() || !meta.cols.is_multiple_of(8) || !meta.blocksize.is_multiple_of(8) {
        return None;
    }
    if meta.double && qcodes.dtype != DType::U8 {
        return None;
    }
    let x = contiguous(x.clone());
    let (rows, cols) = (meta.rows, meta.cols);
    let words_per_row = cols / 8;
    let client = x.client.clone();
    let out = client.empty(rows * x.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), x.device.clone(), [1, rows].into(), out.clone(), x.dtype);
    if rows == 0 {
        return Some(result);
    }
    let cube_dim = CubeDim::new_2d(32, ROWS_PER_CUBE as u32);
    let count = CubeCount::Static(rows.div_ceil(ROWS_PER_CUBE) as u32, 1, 1);
    let rounds = words_per_row.div_ceil(32);
    let len = |t: &CubeTensor| t.meta.num_elements();
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: `packed` holds rows·cols/8 words, `x` cols values, the output rows values;
            // scale indices stay below the blocks of rows·cols values, as in the dequantization.
            unsafe {
                nf4_gemv_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    BufferArg::from_raw_parts(packed.handle.clone(), rows * words_per_row),
                    BufferArg::from_raw_parts(code.handle.clone(), len(code)),
                    BufferArg::from_raw_parts(absmax.handle.clone(), len(absmax)),
                    BufferArg::from_raw_parts(qcodes.handle.clone(), len(qcodes)),
                    BufferArg::from_raw_parts(nested_code.handle.clone(), len(nested_code)),
                    BufferArg::from_raw_parts(x.handle.clone(), cols),
                    BufferArg::from_raw_parts(out, rows),
                    rows,
                    words_per_row,
                    rounds,
                    meta.offset,
                    0u32,
                    meta.blocksize,
                    meta.nested_blocksize,
                    meta.double,
                )
            }
        };
    }
    match x.dtype {
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        DType::F32 => launch!(f32),
        _ => return None,
    }
    Some(result)
}
