//! The fused batch-1 products of [`crate::decode`] in one CubeCL launch: up to three packed
//! weights read as in [`super::nf4_gemv`] (16-byte vectors of 32 values, the scale once per 32
//! products, 8 planes per cube), with
//! - `h` rows of one weight per plane (SwiGLU: `h` rows of gate and the same of up), so that
//!   each value of `x̂` loaded and converted serves `h` (SwiGLU `2h`) rows — with one row per
//!   plane, each weight value cost a shared-memory load of `x̂` beside its code-table load
//!   ([`crate::gemv_tuning`] sets `h`, the loads in flight and whether the next batch of loads
//!   is issued before the current batch's products);
//! - `x` staged by every cube in shared memory as 16-byte vectors (8 bf16/f16 or 4 f32 values),
//!   padded by one vector per 32 values, and read back one 16-byte load per vector: lane `l`
//!   reads values `32·(l + 32k) ..` at byte `80·l` (bf16; 144·l for f32) — the 8 lanes of each
//!   phase of a 16-byte load hit 8 disjoint groups of 4 banks, no conflict. (Read from global
//!   memory instead, each lane's 64 bytes lie 64 bytes apart and the loads take four times the
//!   L1 wavefronts — Nsight Compute: 80–93 % "memory throughput" at 6–19 % of DRAM; read from
//!   shared memory one value at a time, `x` cost 32 loads per vector instead of 4 or 8);
//! - the nested code of double-quantized scales (256 values per weight) staged in shared memory
//!   too, so that a scale costs one dependent global load (its 8-bit code) instead of two;
//! - the RMSNorm of `x` computed by every cube while staging (`super::norm::cube_inv_rms`, the
//!   one-row RMSNorm kernel's own reduction) — no normalized row is written or launched;
//! - the epilogue on the plane's totals: the concatenated outputs (each weight's rows in planes
//!   of their own), `silu(g)·u` of row `r` of gate and up, or the residual added.
//!
//! Products are rounded to the output dtype before the epilogue, as the separate kernels round
//! them, and every sum runs in the order of the separate kernels.

use super::nf4::{block_scale, double_scale};
#[cfg(doc)]
use super::nf4_gemv::vector_dot;
use super::norm::{PLANES, cube_inv_rms};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use crate::decode::{GemvEpilogue, GemvPlan};
use crate::extension::Nf4Parts;

type Parts = Nf4Parts<burn_cubecl::CubeBackend>;

/// `KINDLING_GEMV_NESTED=global`: double-quantized scales read their nested code from global
/// memory instead of the cube's shared copy (an A/B switch; the same values).
static GLOBAL_NESTED: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_GEMV_NESTED", "global");

/// The most bytes of `x` a cube stages in shared memory (14,336 bf16 columns take 35 KiB);
/// wider rows are read from global memory, and a norm is then composed from the separate ops.
const MAX_STAGED_BYTES: usize = 36 * 1024;

/// Adds `scale · Σ code[q]·x̂` of vector `v` of each of the plane's `nrows` rows to `acc`: `x̂`'s
/// 32 values (from the staged copy, `stride` vectors per 32 values, or global memory when
/// `stride` is 0) converted to f32 once
/// per word and used by every row — the rows share each load of `x̂` — in each row's order of
/// [`vector_dot`]. Row `r`'s vector is `quads[q0 + r]`, its code `table[tb(r)..]` (`tbb` from
/// row `h` on).
#[cube]
#[allow(clippy::too_many_arguments)]
fn rows_vector<F: Float, N: Size, M: Size>(
    acc: &mut Array<f32>,
    table: &Shared<[f32]>,
    xs: &Shared<[Vector<F, M>]>,
    x: &[Vector<F, M>],
    quads: &Array<Vector<u32, N>>,
    scales: &Array<f32>,
    v: usize,
    #[comptime] q0: usize,
    #[comptime] nrows: usize,
    #[comptime] h: usize,
    #[comptime] tba: usize,
    #[comptime] tbb: usize,
    #[comptime] stride: usize,
) {
    let words = N::value().comptime();
    let xw = x.vector_size().comptime();
    let mut part = Array::<f32>::new(nrows);
    #[unroll]
    for r in 0..nrows {
        part[r] = 0.0f32;
    }
    #[unroll]
    for j in 0..words {
        let mut xv = Array::<f32>::new(8usize);
        #[unroll]
        for g in 0..comptime![8 / xw] {
            let w = if comptime![stride > 0] { xs[v * stride + comptime![(j * 8) / xw + g]] } else { x[(v * 32 + j * 8) / xw + g] };
            #[unroll]
            for l in 0..xw {
                xv[comptime![g * xw + l]] = f32::cast_from(w.extract(l));
            }
        }
        #[unroll]
        for r in 0..nrows {
            let word = quads[comptime![q0 + r]].extract(j);
            let tb = comptime![if r < h { tba } else { tbb }];
            #[unroll]
            for i in 0..8usize {
                let shift = comptime![(8 * (i / 2) + if i.is_multiple_of(2) { 4 } else { 0 }) as u32];
                let nibble = (word >> shift) & 0xFu32;
                part[r] += table[tb + usize::cast_from(nibble)] * xv[i];
            }
        }
    }
    #[unroll]
    for r in 0..nrows {
        acc[r] += scales[comptime![q0 + r]] * part[r];
    }
}

/// Loads vector `v` of the plane's row `r` (of weight A below `h`, of B from `h`; a row past a
/// weight's last reads the last, its total unused) and its scale into slot `q`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_vector<N: Size>(
    quads: &mut Array<Vector<u32, N>>,
    scales: &mut Array<f32>,
    w: &[Vector<u32, N>],
    absmax: &[f32],
    qcodes: &[u8],
    nested_code: &[f32],
    offset: f32,
    row: usize,
    last: usize,
    v: usize,
    vectors_per_row: usize,
    zero: u32,
    ns: &Shared<[f32]>,
    #[comptime] q: usize,
    #[comptime] nbase: usize,
    #[comptime] shared_nested: bool,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    let t = min(row, last) * vectors_per_row + v;
    quads[q] = w[t];
    let block = (t * 32) / blocksize;
    if comptime![double && shared_nested] {
        scales[q] = shared_block_scale(absmax, qcodes, ns, block, offset, zero, nbase, nested_blocksize);
    } else {
        scales[q] = block_scale(absmax, qcodes, nested_code, block, offset, zero, nested_blocksize, double);
    }
}

/// [`block_scale`] of a double-quantized block with the nested code read from the cube's shared
/// copy (`ns[nbase..nbase + 256]`) instead of global memory: the same value, one dependent
/// global load fewer.
#[cube]
#[allow(clippy::too_many_arguments)]
fn shared_block_scale(
    absmax: &[f32],
    qcodes: &[u8],
    ns: &Shared<[f32]>,
    block: usize,
    offset: f32,
    zero: u32,
    #[comptime] nbase: usize,
    #[comptime] nested_blocksize: usize,
) -> f32 {
    let q = qcodes[block];
    double_scale(ns[nbase + usize::cast_from(q)], absmax[block / nested_blocksize], offset, zero)
}

/// Loads vector `v` of each of the plane's `nrows` rows (`ra + r` of weight A for `r < h`,
/// `rb + r - h` of weight B after) into slots `q0 + r`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_rows<N: Size>(
    quads: &mut Array<Vector<u32, N>>,
    scales: &mut Array<f32>,
    pa: &[Vector<u32, N>],
    aa: &[f32],
    qa: &[u8],
    na: &[f32],
    offset_a: f32,
    ra: usize,
    last_a: usize,
    pb: &[Vector<u32, N>],
    ab: &[f32],
    qb: &[u8],
    nb: &[f32],
    offset_b: f32,
    rb: usize,
    last_b: usize,
    v: usize,
    vectors_per_row: usize,
    zero: u32,
    ns: &Shared<[f32]>,
    #[comptime] q0: usize,
    #[comptime] nrows: usize,
    #[comptime] h: usize,
    #[comptime] tba: usize,
    #[comptime] tbb: usize,
    #[comptime] shared_nested: bool,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    #[unroll]
    for r in 0..nrows {
        let q = comptime![q0 + r];
        if comptime![r < h] {
            load_vector::<N>(
                quads,
                scales,
                pa,
                aa,
                qa,
                na,
                offset_a,
                ra + r,
                last_a,
                v,
                vectors_per_row,
                zero,
                ns,
                q,
                comptime![tba * 16],
                shared_nested,
                blocksize,
                nested_blocksize,
                double,
            );
        } else {
            load_vector::<N>(
                quads,
                scales,
                pb,
                ab,
                qb,
                nb,
                offset_b,
                rb + (r - h),
                last_b,
                v,
                vectors_per_row,
                zero,
                ns,
                q,
                comptime![tbb * 16],
                shared_nested,
                blocksize,
                nested_blocksize,
                double,
            );
        }
    }
}

/// The plane's totals `Σ_vectors scale · Σ code[q]·x̂` for rows `ra .. ra + h` of weight A and,
/// with `pair`, rows `rb .. rb + h` of weight B, into `acc[0..h]` and `acc[h..2h]`, over the
/// vectors `32·j + lane` of every row in increasing `j` (each row's sum in the order of the
/// one-row kernel), loading `uk` vectors of every row before their
/// products — with `prefetch`, the next `uk` while the current ones' products run (two batches
/// in flight; the same products in the same order).
#[cube]
#[allow(clippy::too_many_arguments)]
fn rows_dot<F: Float, N: Size, M: Size>(
    acc: &mut Array<f32>,
    table: &Shared<[f32]>,
    xs: &Shared<[Vector<F, M>]>,
    x: &[Vector<F, M>],
    pa: &[Vector<u32, N>],
    aa: &[f32],
    qa: &[u8],
    na: &[f32],
    offset_a: f32,
    ra: usize,
    last_a: usize,
    pb: &[Vector<u32, N>],
    ab: &[f32],
    qb: &[u8],
    nb: &[f32],
    offset_b: f32,
    rb: usize,
    last_b: usize,
    vectors_per_row: usize,
    zero: u32,
    ns: &Shared<[f32]>,
    #[comptime] h: usize,
    #[comptime] pair: bool,
    #[comptime] uk: usize,
    #[comptime] prefetch: bool,
    #[comptime] shared_nested: bool,
    #[comptime] tba: usize,
    #[comptime] tbb: usize,
    #[comptime] stride: usize,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    let nrows = comptime![if pair { 2 * h } else { h }];
    let lane = UNIT_POS_X as usize;
    #[unroll]
    for r in 0..nrows {
        acc[r] = 0.0f32;
    }
    let mut quads = Array::<Vector<u32, N>>::new(comptime![uk * nrows]);
    let mut scales = Array::<f32>::new(comptime![uk * nrows]);
    let full = vectors_per_row / (32 * uk);
    if comptime![prefetch] {
        // Batch k + 1's vectors and scales load while batch k's products run.
        let mut next_quads = Array::<Vector<u32, N>>::new(comptime![uk * nrows]);
        let mut next_scales = Array::<f32>::new(comptime![uk * nrows]);
        if full > 0 {
            #[unroll]
            for u in 0..uk {
                load_rows::<N>(
                    &mut quads,
                    &mut scales,
                    pa,
                    aa,
                    qa,
                    na,
                    offset_a,
                    ra,
                    last_a,
                    pb,
                    ab,
                    qb,
                    nb,
                    offset_b,
                    rb,
                    last_b,
                    lane + u * 32,
                    vectors_per_row,
                    zero,
                    ns,
                    comptime![u * nrows],
                    nrows,
                    h,
                    tba,
                    tbb,
                    shared_nested,
                    blocksize,
                    nested_blocksize,
                    double,
                );
            }
        }
        for k in 0..full {
            if k + 1 < full {
                #[unroll]
                for u in 0..uk {
                    load_rows::<N>(
                        &mut next_quads,
                        &mut next_scales,
                        pa,
                        aa,
                        qa,
                        na,
                        offset_a,
                        ra,
                        last_a,
                        pb,
                        ab,
                        qb,
                        nb,
                        offset_b,
                        rb,
                        last_b,
                        lane + ((k + 1) * uk + u) * 32,
                        vectors_per_row,
                        zero,
                        ns,
                        comptime![u * nrows],
                        nrows,
                        h,
                        tba,
                        tbb,
                        shared_nested,
                        blocksize,
                        nested_blocksize,
                        double,
                    );
                }
            }
            #[unroll]
            for u in 0..uk {
                let v = lane + (k * uk + u) * 32;
                rows_vector::<F, N, M>(acc, table, xs, x, &quads, &scales, v, comptime![u * nrows], nrows, h, tba, tbb, stride);
            }
            #[unroll]
            for i in 0..comptime![uk * nrows] {
                quads[i] = next_quads[i];
                scales[i] = next_scales[i];
            }
        }
    } else {
        for k in 0..full {
            #[unroll]
            for u in 0..uk {
                let v = lane + (k * uk + u) * 32;
                load_rows::<N>(
                    &mut quads,
                    &mut scales,
                    pa,
                    aa,
                    qa,
                    na,
                    offset_a,
                    ra,
                    last_a,
                    pb,
                    ab,
                    qb,
                    nb,
                    offset_b,
                    rb,
                    last_b,
                    v,
                    vectors_per_row,
                    zero,
                    ns,
                    comptime![u * nrows],
                    nrows,
                    h,
                    tba,
                    tbb,
                    shared_nested,
                    blocksize,
                    nested_blocksize,
                    double,
                );
            }
            #[unroll]
            for u in 0..uk {
                let v = lane + (k * uk + u) * 32;
                rows_vector::<F, N, M>(acc, table, xs, x, &quads, &scales, v, comptime![u * nrows], nrows, h, tba, tbb, stride);
            }
        }
    }
    let mut v = lane + full * uk * 32;
    while v < vectors_per_row {
        load_rows::<N>(
            &mut quads,
            &mut scales,
            pa,
            aa,
            qa,
            na,
            offset_a,
            ra,
            last_a,
            pb,
            ab,
            qb,
            nb,
            offset_b,
            rb,
            last_b,
            v,
            vectors_per_row,
            zero,
            ns,
            0usize,
            nrows,
            h,
            tba,
            tbb,
            shared_nested,
            blocksize,
            nested_blocksize,
            double,
        );
        rows_vector::<F, N, M>(acc, table, xs, x, &quads, &scales, v, 0usize, nrows, h, tba, tbb, stride);
        v += 32;
    }
    #[unroll]
    for r in 0..nrows {
        acc[r] = plane_sum(acc[r]);
    }
}

/// `epilogue`: 0 concatenated outputs, 1 SwiGLU of weights 0 and 1, 2 residual plus weight 0.
/// Plane `t` of the launch computes rows `t·h ..` of one weight (concatenation: planes `< planes0`
/// weight 0, `< planes01` weight 1, the rest weight 2, each from its own row 0), or the same rows
/// of gate and up (SwiGLU). `end0`, `end1`: weight 0's rows, weights 0 and 1's; lane `r`
/// writes the plane's row `r`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
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
    planes0: usize,
    planes01: usize,
    planes: usize,
    vectors_per_row: usize,
    offset0: f32,
    offset1: f32,
    offset2: f32,
    eps: f32,
    zero: u32,
    #[comptime] h: usize,
    #[comptime] uk: usize,
    #[comptime] prefetch: bool,
    #[comptime] shared_nested: bool,
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
    let plane = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    // The three weights' nested codes (256 values each) when their scales are double-quantized.
    let mut ns = Shared::<[f32]>::new_slice(comptime![if double && shared_nested { 768usize } else { 1usize }]);
    if comptime![double && shared_nested] {
        let mut i = unit;
        while i < 256 {
            ns[i] = n0[i];
            ns[i + 256] = n1[i];
            ns[i + 512] = n2[i];
            i += CUBE_DIM as usize;
        }
    }
    // `x` (normalized) as vectors of `xw` values, `stride` vectors per 32 values (the last one
    // padding, never read).
    let xw = x.vector_size().comptime();
    let mut xs = Shared::<[Vector<F, M>]>::new_slice(comptime![if stage_cols > 0 { stage_cols / 32 * stride } else { 1 }]);
    if comptime![stage_cols > 0] {
        let step = comptime![PLANES * 32];
        let mut r = 1.0f32;
        if comptime![norm] {
            r = cube_inv_rms::<F>(x_plain, 0usize, stage_cols, comptime![stage_cols.div_ceil(PLANES * 32)], eps);
        }
        let per = comptime![32 / xw];
        for k in 0..comptime![(stage_cols / xw).div_ceil(PLANES * 32)] {
            let i = unit + k * step;
            if i < comptime![stage_cols / xw] {
                let at = (i / per) * stride + i % per;
                if comptime![norm] {
                    let raw = x[i];
                    let mut normed = Vector::<F, M>::empty();
                    #[unroll]
                    for l in 0..xw {
                        let n = F::cast_from(f32::cast_from(raw.extract(l)) * r);
                        normed.insert(l, n * norm_w[i * xw + l]);
                    }
                    xs[at] = normed;
                } else {
                    xs[at] = x[i];
                }
            }
        }
    }
    sync_cube();
    if plane >= planes {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let mut acc = Array::<f32>::new(comptime![2 * h]);
    #[unroll]
    for r in 0..comptime![2 * h] {
        acc[r] = 0.0f32;
    }
    // The plane's weight: its first row there, its row count, where its outputs start.
    let mut first = plane * h;
    let mut count = rows;
    let mut out = 0usize;
    if comptime![epilogue == 1] {
        rows_dot::<F, N, M>(
            &mut acc,
            &table,
            &xs,
            x,
            p0,
            a0,
            q0,
            n0,
            offset0,
            first,
            rows - 1,
            p1,
            a1,
            q1,
            n1,
            offset1,
            first,
            rows - 1,
            vectors_per_row,
            zero,
            &ns,
            h,
            true,
            uk,
            prefetch,
            shared_nested,
            0usize,
            16usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        );
    } else if comptime![epilogue == 2] {
        rows_dot::<F, N, M>(
            &mut acc,
            &table,
            &xs,
            x,
            p0,
            a0,
            q0,
            n0,
            offset0,
            first,
            rows - 1,
            p0,
            a0,
            q0,
            n0,
            offset0,
            first,
            rows - 1,
            vectors_per_row,
            zero,
            &ns,
            h,
            false,
            uk,
            prefetch,
            shared_nested,
            0usize,
            0usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        );
    } else if plane < planes0 {
        count = end0;
        rows_dot::<F, N, M>(
            &mut acc,
            &table,
            &xs,
            x,
            p0,
            a0,
            q0,
            n0,
            offset0,
            first,
            end0 - 1,
            p0,
            a0,
            q0,
            n0,
            offset0,
            first,
            end0 - 1,
            vectors_per_row,
            zero,
            &ns,
            h,
            false,
            uk,
            prefetch,
            shared_nested,
            0usize,
            0usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        );
    } else if plane < planes01 {
        first = (plane - planes0) * h;
        count = end1 - end0;
        out = end0;
        rows_dot::<F, N, M>(
            &mut acc,
            &table,
            &xs,
            x,
            p1,
            a1,
            q1,
            n1,
            offset1,
            first,
            count - 1,
            p1,
            a1,
            q1,
            n1,
            offset1,
            first,
            count - 1,
            vectors_per_row,
            zero,
            &ns,
            h,
            false,
            uk,
            prefetch,
            shared_nested,
            16usize,
            16usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        );
    } else {
        first = (plane - planes01) * h;
        count = rows - end1;
        out = end1;
        rows_dot::<F, N, M>(
            &mut acc,
            &table,
            &xs,
            x,
            p2,
            a2,
            q2,
            n2,
            offset2,
            first,
            count - 1,
            p2,
            a2,
            q2,
            n2,
            offset2,
            first,
            count - 1,
            vectors_per_row,
            zero,
            &ns,
            h,
            false,
            uk,
            prefetch,
            shared_nested,
            32usize,
            32usize,
            stride,
            blocksize,
            nested_blocksize,
            double,
        );
    }
    #[unroll]
    for r in 0..h {
        if lane == r && first + r < count {
            if comptime![epilogue == 1] {
                let g = f32::cast_from(F::cast_from(acc[r]));
                let u = f32::cast_from(F::cast_from(acc[comptime![h + r]]));
                let sig = 1.0f32 / (1.0f32 + (-g).exp());
                y[first + r] = F::cast_from(g * sig * u);
            } else if comptime![epilogue == 2] {
                y[first + r] = residual[first + r] + F::cast_from(acc[r]);
            } else {
                y[out + first + r] = F::cast_from(acc[r]);
            }
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
    // x staged in shared memory (in its dtype) as 16-byte vectors of `x_vector` values, `stride`
    // of them per 32 values: one pad vector, so that each 8-lane phase of the 16-byte loads
    // falls in 32 distinct banks (see the module docs).
    let x_vector = if x.dtype == DType::F32 { 4 } else { 8 };
    let stride = 32 / x_vector + 1;
    let stage_cols = if m0.cols / 32 * stride * 16 <= MAX_STAGED_BYTES { m0.cols } else { 0 };
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
    let tuning = crate::gemv_tuning::gemv_tuning();
    let h = tuning.rows;
    let uk = (tuning.in_flight / if epilogue == 1 { 2 * h } else { h }).max(1);
    // Planes: `h` rows of one weight each (concatenation: each weight's rows apart).
    let (planes0, planes01, planes) = if epilogue == 0 {
        let (t0, t1) = (end0.div_ceil(h), (end1 - end0).div_ceil(h));
        (t0, t0 + t1, t0 + t1 + (rows - end1).div_ceil(h))
    } else {
        let t = rows.div_ceil(h);
        (t, t, t)
    };
    let cube_dim = CubeDim::new_2d(32, PLANES as u32);
    let count = CubeCount::Static(planes.div_ceil(PLANES) as u32, 1, 1);
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
            // blocks, as in the dequantization (a plane's rows past its weight's read its last row and
            // are not written); planes past `planes` return before reading anything.
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
                    planes0,
                    planes01,
                    planes,
                    vectors_per_row,
                    w[0].meta.offset,
                    w[1].meta.offset,
                    w[2].meta.offset,
                    eps,
                    0u32,
                    h,
                    uk,
                    tuning.prefetch,
                    !GLOBAL_NESTED.is_on(),
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
