//! The fused batch-1 products of [`crate::decode`] in one CubeCL launch: up to three packed
//! weights read as in [`super::nf4_gemv`] (one plane per output row, 8 rows per cube, 16-byte
//! vectors, the scale once per 32 products), with
//! - `x` staged by every cube in shared memory, padded by one 32-bit word per 32 values so that
//!   the lanes (lane `l` reads values `32·(l + 32k) ..`) hit 32 different banks — read from
//!   global memory instead, each lane's 64 bytes lie 64 bytes apart and the loads take four
//!   times the L1 wavefronts (Nsight Compute: 80–93 % "memory throughput" at 6–19 % of DRAM);
//! - the RMSNorm of `x` computed by every cube while staging (`super::norm::cube_inv_rms`, the
//!   one-row RMSNorm kernel's own reduction) — no normalized row is written or launched;
//! - the epilogue on the plane's total: the concatenated outputs (a row index past the first
//!   weight's rows reads the second, …), `silu(g)·u` from one plane computing row `r` of both
//!   gate and up, or the residual added.
//!
//! Products are rounded to the output dtype before the epilogue, as the separate kernels round
//! them, and every sum runs in the order of the separate kernels.

use super::nf4::block_scale;
use super::nf4_gemv::{UNROLL, vector_dot};
use super::norm::{PLANES, cube_inv_rms};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use crate::decode::{GemvEpilogue, GemvPlan};
use crate::extension::Nf4Parts;

type Parts = Nf4Parts<burn_cubecl::CubeBackend>;

/// The most bytes of `x` a cube stages in shared memory (14,336 bf16 columns take 30.5 KiB);
/// wider rows are read from global memory, and a norm is then composed from the separate ops.
const MAX_STAGED_BYTES: usize = 36 * 1024;

/// [`vector_dot`] with `x̂` from shared memory, vector `v` at `v·stride` (the padding spreads the
/// lanes' reads over the banks: lane `l` reads vector `l + 32k`), the same products in the same
/// order.
#[cube]
fn vector_dot_staged<F: Float, N: Size>(
    table: &Shared<[f32]>,
    quad: Vector<u32, N>,
    xs: &Shared<[F]>,
    v: usize,
    #[comptime] tb: usize,
    #[comptime] stride: usize,
) -> f32 {
    let words = quad.vector_size().comptime();
    let mut part = 0.0f32;
    #[unroll]
    for j in 0..words {
        let word = quad.extract(j);
        #[unroll]
        for i in 0..8usize {
            let shift = comptime![(8 * (i / 2) + if i.is_multiple_of(2) { 4 } else { 0 }) as u32];
            let nibble = (word >> shift) & 0xFu32;
            part += table[tb + usize::cast_from(nibble)] * f32::cast_from(xs[v * stride + j * 8 + i]);
        }
    }
    part
}

/// The plane's total `Σ_vectors scale · Σ code[q]·x` for row `row` of one weight.
#[cube]
#[allow(clippy::too_many_arguments)]
fn row_dot<F: Float, N: Size, M: Size>(
    table: &Shared<[f32]>,
    xs: &Shared<[F]>,
    packed: &[Vector<u32, N>],
    absmax: &[f32],
    qcodes: &[u8],
    nested_code: &[f32],
    x: &[Vector<F, M>],
    row: usize,
    vectors_per_row: usize,
    full: usize,
    offset: f32,
    zero: u32,
    #[comptime] tb: usize,
    #[comptime] stride: usize,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) -> f32 {
    let lane = UNIT_POS_X as usize;
    let base = row * vectors_per_row;
    let mut acc = 0.0f32;
    for k in 0..full {
        #[unroll]
        for u in 0..UNROLL {
            let v = lane + (k * UNROLL + u) * 32;
            let quad = packed[base + v];
            let scale = block_scale(absmax, qcodes, nested_code, ((base + v) * 32) / blocksize, offset, zero, nested_blocksize, double);
            if comptime![stride > 0] {
                acc += scale * vector_dot_staged::<F, N>(table, quad, xs, v, tb, stride);
            } else {
                acc += scale * vector_dot::<F, N, M>(table, quad, x, v, tb);
            }
        }
    }
    let mut v = lane + full * UNROLL * 32;
    while v < vectors_per_row {
        let scale = block_scale(absmax, qcodes, nested_code, ((base + v) * 32) / blocksize, offset, zero, nested_blocksize, double);
        if comptime![stride > 0] {
            acc += scale * vector_dot_staged::<F, N>(table, packed[base + v], xs, v, tb, stride);
        } else {
            acc += scale * vector_dot::<F, N, M>(table, packed[base + v], x, v, tb);
        }
        v += 32;
    }
    plane_sum(acc)
}

/// `epilogue`: 0 concatenated outputs, 1 SwiGLU of weights 0 and 1, 2 residual plus weight 0.
/// `ends`: the first output row past weight 0, past weight 1 (concatenation); `rows`: outputs.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments, unused_assignments)]
fn nf4_gemv_fused_kernel<F: Float, N: Size, M: Size>(
    p0: &[Vector<u32, N>],
    a0: &[f32],
    q0: &[u8],
    n0: &[f32],
    c0: &[f32],
    p1: &[Vector<u32, N>],
    a1: &[f32],
    q1: &[u8],
    n1: &[f32],
    c1: &[f32],
    p2: &[Vector<u32, N>],
    a2: &[f32],
    q2: &[u8],
    n2: &[f32],
    c2: &[f32],
    x: &[Vector<F, M>],
    x_plain: &[F],
    norm_w: &[F],
    residual: &[F],
    y: &mut [F],
    end0: usize,
    end1: usize,
    rows: usize,
    vectors_per_row: usize,
    full: usize,
    offset0: f32,
    offset1: f32,
    offset2: f32,
    eps: f32,
    zero: u32,
    #[comptime] stage_cols: usize,
    #[comptime] stride: usize,
    #[comptime] norm: bool,
    #[comptime] epilogue: u32,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    let mut table = Shared::<[f32]>::new_slice(48usize);
    let unit = UNIT_POS as usize;
    if unit < 16 {
        table[unit] = c0[unit];
    } else if unit < 32 {
        table[unit] = c1[unit - 16];
    } else if unit < 48 {
        table[unit] = c2[unit - 32];
    }
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let mut xs = Shared::<[F]>::new_slice(comptime![if stage_cols > 0 { stage_cols / 32 * stride } else { 1 }]);
    if comptime![stage_cols > 0] {
        let step = comptime![PLANES * 32];
        let rounds = comptime![stage_cols.div_ceil(PLANES * 32)];
        let mut r = 1.0f32;
        if comptime![norm] {
            r = cube_inv_rms::<F>(x_plain, 0usize, stage_cols, rounds, eps);
        }
        for k in 0..rounds {
            let i = unit + k * step;
            if i < stage_cols {
                let at = (i / 32) * stride + i % 32;
                if comptime![norm] {
                    let normed = F::cast_from(f32::cast_from(x_plain[i]) * r);
                    xs[at] = normed * norm_w[i];
                } else {
                    xs[at] = x_plain[i];
                }
            }
        }
    }
    sync_cube();
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    if comptime![epilogue == 1] {
        let g = f32::cast_from(F::cast_from(row_dot::<F, N, M>(
            &table,
            &xs,
            p0,
            a0,
            q0,
            n0,
            x,
            row,
            vectors_per_row,
            full,
            offset0,
            zero,
            0usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        )));
        let u = f32::cast_from(F::cast_from(row_dot::<F, N, M>(
            &table,
            &xs,
            p1,
            a1,
            q1,
            n1,
            x,
            row,
            vectors_per_row,
            full,
            offset1,
            zero,
            16usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        )));
        if lane == 0 {
            let sig = 1.0f32 / (1.0f32 + (-g).exp());
            y[row] = F::cast_from(g * sig * u);
        }
    } else if comptime![epilogue == 2] {
        let t = row_dot::<F, N, M>(
            &table,
            &xs,
            p0,
            a0,
            q0,
            n0,
            x,
            row,
            vectors_per_row,
            full,
            offset0,
            zero,
            0usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        );
        if lane == 0 {
            y[row] = residual[row] + F::cast_from(t);
        }
    } else {
        let mut t = 0.0f32;
        if row < end0 {
            t = row_dot::<F, N, M>(
                &table,
                &xs,
                p0,
                a0,
                q0,
                n0,
                x,
                row,
                vectors_per_row,
                full,
                offset0,
                zero,
                0usize,
                stride,
                blocksize,
                nested_blocksize,
                double,
            );
        } else if row < end1 {
            t = row_dot::<F, N, M>(
                &table,
                &xs,
                p1,
                a1,
                q1,
                n1,
                x,
                row - end0,
                vectors_per_row,
                full,
                offset1,
                zero,
                16usize,
                stride,
                blocksize,
                nested_blocksize,
                double,
            );
        } else {
            t = row_dot::<F, N, M>(
                &table,
                &xs,
                p2,
                a2,
                q2,
                n2,
                x,
                row - end1,
                vectors_per_row,
                full,
                offset2,
                zero,
                32usize,
                stride,
                blocksize,
                nested_blocksize,
                double,
            );
        }
        if lane == 0 {
            y[row] = F::cast_from(t);
        }
    }
}

/// The fused kernel's output, or `None` when the inputs do not fit it (the caller composes the
/// separate ops): `x` one aligned row of a multiple of 32 values, blocks of a multiple of 32,
/// the used weights alike in columns, blocksize and scale layout, a normalized row of at most
/// [`MAX_NORM_COLS`], every operand of `x`'s dtype.
pub(crate) fn nf4_gemv_fused(
    x: &CubeTensor,
    norm_w: &CubeTensor,
    residual: &CubeTensor,
    w: [&Parts; 3],
    plan: GemvPlan,
) -> Option<CubeTensor> {
    let shape = x.meta.shape();
    let m0 = w[0].meta;
    let used = &w[..plan.parts.clamp(1, 3)];
    if shape.len() != 2 || shape[0] != 1 || shape[1] != m0.cols || !m0.cols.is_multiple_of(32) || !m0.blocksize.is_multiple_of(32) {
        return None;
    }
    let alike = |p: &&Parts| {
        p.meta.cols == m0.cols
            && p.meta.blocksize == m0.blocksize
            && p.meta.double == m0.double
            && p.meta.nested_blocksize == m0.nested_blocksize
            && p.packed.dtype == DType::U8
            && p.packed.is_contiguous()
            && (!p.meta.double || p.qcodes.dtype == DType::U8)
            && p.packed.handle.offset_start.unwrap_or(0).is_multiple_of(16)
    };
    if !used.iter().all(alike) || !matches!(x.dtype, DType::BF16 | DType::F16 | DType::F32) {
        return None;
    }
    // x staged in shared memory (in its dtype) with `stride` elements per 32: one pad word per
    // vector, so that the 32 lanes' reads fall in 32 banks (16-bit: 17 words per vector, odd).
    let stride = if x.dtype == DType::F32 { 33 } else { 34 };
    let stage_cols = if m0.cols / 32 * stride * x.dtype.size() <= MAX_STAGED_BYTES { m0.cols } else { 0 };
    let norm = plan.norm_eps.is_some();
    if norm && (stage_cols == 0 || norm_w.dtype != x.dtype || norm_w.meta.num_elements() != m0.cols) {
        return None;
    }
    let x = super::interop::contiguous(x.clone());
    if !x.handle.offset_start.unwrap_or(0).is_multiple_of(16) {
        return None;
    }
    let norm_w = super::interop::contiguous(norm_w.clone());
    let residual = super::interop::contiguous(residual.clone());
    let (epilogue, rows, end0, end1) = match plan.epilogue {
        GemvEpilogue::Concat => {
            let r: Vec<usize> = used.iter().map(|p| p.meta.rows).collect();
            let end0 = r[0];
            let end1 = end0 + r.get(1).copied().unwrap_or(0);
            (0u32, end1 + r.get(2).copied().unwrap_or(0), end0, end1)
        }
        GemvEpilogue::SwiGlu if plan.parts == 2 && w[1].meta.rows == m0.rows => (1, m0.rows, m0.rows, m0.rows),
        GemvEpilogue::Residual if residual.dtype == x.dtype && residual.meta.num_elements() == m0.rows => (2, m0.rows, m0.rows, m0.rows),
        _ => return None,
    };
    let cols = m0.cols;
    let client = x.client.clone();
    let out = client.empty(rows * x.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), x.device.clone(), [1, rows].into(), out.clone(), x.dtype);
    let vectors_per_row = cols / 32;
    let full = vectors_per_row / (32 * UNROLL);
    let x_vector = if x.dtype == DType::F32 { 4 } else { 8 };
    let cube_dim = CubeDim::new_2d(32, PLANES as u32);
    let count = CubeCount::Static(rows.div_ceil(PLANES) as u32, 1, 1);
    let len = |t: &CubeTensor| t.meta.num_elements();
    let eps = plan.norm_eps.unwrap_or(0.0) as f32;
    macro_rules! weight {
        ($p:expr) => {
            (
                BufferArg::from_raw_parts($p.packed.handle.clone(), $p.meta.rows * cols / 8),
                BufferArg::from_raw_parts($p.absmax.handle.clone(), len(&$p.absmax)),
                BufferArg::from_raw_parts($p.qcodes.handle.clone(), len(&$p.qcodes)),
                BufferArg::from_raw_parts($p.nested_code.handle.clone(), len(&$p.nested_code)),
                BufferArg::from_raw_parts($p.code.handle.clone(), len(&$p.code)),
            )
        };
    }
    macro_rules! launch {
        ($f:ty) => {{
            // SAFETY: each `packed` holds rows·cols/8 words read as rows·cols/32 vectors of 4;
            // `x` (read as cols/8 or cols/4 vectors and as cols values) and `norm_w` hold cols
            // values, `residual` and the output `rows`; the scale indices stay below each weight's
            // blocks, as in the dequantization; rows past `rows` return before reading anything.
            unsafe {
                let (p0, a0, q0, n0, c0) = weight!(w[0]);
                let (p1, a1, q1, n1, c1) = weight!(w[1]);
                let (p2, a2, q2, n2, c2) = weight!(w[2]);
                nf4_gemv_fused_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    4,
                    x_vector,
                    p0,
                    a0,
                    q0,
                    n0,
                    c0,
                    p1,
                    a1,
                    q1,
                    n1,
                    c1,
                    p2,
                    a2,
                    q2,
                    n2,
                    c2,
                    BufferArg::from_raw_parts(x.handle.clone(), cols),
                    BufferArg::from_raw_parts(x.handle.clone(), cols),
                    BufferArg::from_raw_parts(norm_w.handle.clone(), len(&norm_w)),
                    BufferArg::from_raw_parts(residual.handle.clone(), len(&residual)),
                    BufferArg::from_raw_parts(out, rows),
                    end0,
                    end1,
                    rows,
                    vectors_per_row,
                    full,
                    w[0].meta.offset,
                    w[1].meta.offset,
                    w[2].meta.offset,
                    eps,
                    0u32,
                    stage_cols,
                    if stage_cols > 0 { stride } else { 0 },
                    norm,
                    epilogue,
                    m0.blocksize,
                    m0.nested_blocksize,
                    m0.double,
                )
            }
        }};
    }
    match x.dtype {
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        _ => launch!(f32),
    }
    Some(result)
}
