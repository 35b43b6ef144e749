//! Batch-1 `y = x · Wᵀ` straight from packed NF4/FP4 bytes (CubeCL): one plane (32 lanes) per
//! output row, 8 rows per cube. Each value is decoded (the layout of [`super::nf4`]), multiplied
//! by `x` in f32 and accumulated; the plane sums. Reads half a byte per weight and writes nothing
//! but `y` — the dense weight never exists — and runs on burn's stream, so decoding needs no host
//! synchronization around its projections.
//!
//! Two kernels: when a row holds a multiple of 32 values (every Llama projection) each lane reads
//! 16-byte vectors — 4 words, 32 values of one scale block (blocksizes are multiples of 32) — with
//! `x` as 16-byte vectors and the 16-entry code table in shared memory: one scale and 1 + 8/`x`'s
//! vector width loads per 32 weights, four vectors in flight per lane, the scale applied once per
//! 32 products. Otherwise — or with `KINDLING_GEMV_WORDS=1`, to compare the two on the device —
//! one 32-bit word (8 values) per lane and step.

use super::interop::contiguous;
use super::nf4::block_scale;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use crate::nf4::Nf4Meta;

const ROWS_PER_CUBE: usize = 8;

/// `KINDLING_GEMV_WORDS=1`: always the one-word-per-lane kernel.
static WORDS_ONLY: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_GEMV_WORDS", "1");

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

/// Vectors a lane reads before it uses any of them in the 16-byte-vector kernel: four 16-byte
/// loads in flight per lane (rows of 4,096 values are one round, 14,336 three and a tail).
pub(crate) const UNROLL: usize = 4;

/// `Σ code[q]·x` over the 32 values of packed vector `t` (unscaled, f32): the nibbles of its
/// four words against `x`'s values `32·v ..`; the code is `table[tb..tb + 16]`.
#[cube]
pub(crate) fn vector_dot<F: Float, N: Size, M: Size>(
    table: &Shared<[f32]>,
    quad: Vector<u32, N>,
    x: &[Vector<F, M>],
    v: usize,
    #[comptime] tb: usize,
) -> f32 {
    let words = quad.vector_size().comptime();
    let xs = x.vector_size().comptime();
    let groups = comptime![8 / xs];
    let mut part = 0.0f32;
    #[unroll]
    for j in 0..words {
        let word = quad.extract(j);
        #[unroll]
        for g in 0..groups {
            let xv = x[(v * 32 + j * 8) / xs + g];
            #[unroll]
            for l in 0..xs {
                let i = comptime![g * xs + l];
                let shift = comptime![(8 * (i / 2) + if i.is_multiple_of(2) { 4 } else { 0 }) as u32];
                let nibble = (word >> shift) & 0xFu32;
                part += table[tb + usize::cast_from(nibble)] * f32::cast_from(xv.extract(l));
            }
        }
    }
    part
}

/// The 16-byte-vector kernel: `packed` as 4-word vectors, `x` as vectors of `vector_size(x)`
/// values (8 for bf16/f16, 4 for f32), `vectors_per_row = cols / 32`. Each vector's 32 values
/// share one scale, so the sum is `Σ_vectors scale · Σ code[q]·x`, exact in f32 (the word kernel
/// rounds each value `code[q]·scale` to the compute dtype first, as the dense path does). `full`
/// rounds of [`UNROLL`] vectors per lane need no bounds check (their loads are issued together);
/// the rest of the row follows one vector at a time.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn nf4_gemv_wide_kernel<F: Float, N: Size, M: Size>(
    packed: &[Vector<u32, N>],
    code: &[f32],
    absmax: &[f32],
    qcodes: &[u8],
    nested_code: &[f32],
    x: &[Vector<F, M>],
    y: &mut [F],
    rows: usize,
    vectors_per_row: usize,
    full: usize,
    offset: f32,
    zero: u32,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    let mut table = Shared::<[f32]>::new_slice(16usize);
    let unit = UNIT_POS as usize;
    if unit < 16 {
        table[unit] = code[unit];
    }
    sync_cube();
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let base = row * vectors_per_row;
    let mut acc = 0.0f32;
    for k in 0..full {
        #[unroll]
        for u in 0..UNROLL {
            let v = lane + (k * UNROLL + u) * 32;
            let scale = block_scale(absmax, qcodes, nested_code, ((base + v) * 32) / blocksize, offset, zero, nested_blocksize, double);
            acc += scale * vector_dot::<F, N, M>(&table, packed[base + v], x, v, 0usize);
        }
    }
    let mut v = lane + full * UNROLL * 32;
    while v < vectors_per_row {
        let scale = block_scale(absmax, qcodes, nested_code, ((base + v) * 32) / blocksize, offset, zero, nested_blocksize, double);
        acc += scale * vector_dot::<F, N, M>(&table, packed[base + v], x, v, 0usize);
        v += 32;
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
    let aligned = |t: &CubeTensor| t.handle.offset_start.unwrap_or(0).is_multiple_of(16);
    if !WORDS_ONLY.is_on() && cols.is_multiple_of(32) && meta.blocksize.is_multiple_of(32) && aligned(&x) && aligned(packed) {
        let vectors_per_row = cols / 32;
        let full = vectors_per_row / (32 * UNROLL);
        let x_vector = if x.dtype == DType::F32 { 4 } else { 8 };
        macro_rules! launch_wide {
            ($f:ty) => {
                // SAFETY: as below; `packed` holds rows·cols/32 vectors of 4 words, `x` cols/8
                // (or cols/4) vectors, and every row's vectors lie inside one scale block each.
                unsafe {
                    nf4_gemv_wide_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        4,
                        x_vector,
                        BufferArg::from_raw_parts(packed.handle.clone(), rows * words_per_row),
                        BufferArg::from_raw_parts(code.handle.clone(), len(code)),
                        BufferArg::from_raw_parts(absmax.handle.clone(), len(absmax)),
                        BufferArg::from_raw_parts(qcodes.handle.clone(), len(qcodes)),
                        BufferArg::from_raw_parts(nested_code.handle.clone(), len(nested_code)),
                        BufferArg::from_raw_parts(x.handle.clone(), cols),
                        BufferArg::from_raw_parts(out, rows),
                        rows,
                        vectors_per_row,
                        full,
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
            DType::BF16 => launch_wide!(half::bf16),
            DType::F16 => launch_wide!(half::f16),
            DType::F32 => launch_wide!(f32),
            _ => return None,
        }
        return Some(result);
    }
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
