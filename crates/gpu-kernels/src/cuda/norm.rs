//! RMSNorm kernels (CubeCL): one plane (warp of 32) per row, 8 rows per cube. Each lane strides
//! over the row (coalesced), the plane sums its partials, and the lanes make a second pass to
//! write. When `d` is a multiple of 16 bytes' worth of values (8 bf16/f16 or 4 f32) and every
//! buffer starts on a 16-byte boundary ([`vector_width`]), the lanes load and store whole 16-byte
//! vectors ([`rms_norm_vec_kernel`], [`rms_norm_backward_vec_kernel`]): each lane accumulates its
//! vectors' values in f32 lane-wise, [`UNROLL`] rounds per loop step so that several loads are in
//! flight, and adds its vector's lanes before the plane sum; the second pass re-reads the row
//! (from L1/L2). Other widths take the scalar kernels (one value per lane per round), and so does
//! every width under `KINDLING_ELEMWISE=scalar`. Few rows (decoding: one) would leave most of the
//! GPU idle and each lane walking its row alone, so up to [`WIDE_ROWS`] rows the forward gives
//! each row a whole cube of 8 planes, summed through shared memory (scalar loads). Formulas in
//! [`crate::norm`].

use super::interop::{contiguous, vector_width};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

const LANES: usize = 32;
const ROWS_PER_CUBE: usize = 8;
/// Up to this many rows, the forward runs one row per cube ([`rms_norm_wide_kernel`]).
const WIDE_ROWS: usize = 64;
/// Planes per row in the wide kernel.
pub(crate) const PLANES: usize = 8;
/// Rounds of 16-byte vectors per loop step in the vectorized kernels.
const UNROLL: usize = 4;

/// `1/√(mean(x²) + ε)` of row `x[base .. base + d]` computed by a whole cube of [`PLANES`]
/// planes: the units stride the row (`rounds = ⌈d / 256⌉`), each plane sums, the planes' sums
/// are added in order. Shared with the fused decoding products (`super::nf4_gemv_fused`), whose
/// normalized row must equal this kernel's.
#[cube]
pub(crate) fn cube_inv_rms<F: Float>(x: &[F], base: usize, d: usize, rounds: usize, eps: f32) -> f32 {
    let unit = UNIT_POS_Y as usize * 32 + UNIT_POS_X as usize;
    let stride = comptime![PLANES * LANES];
    let mut acc = 0.0f32;
    for k in 0..rounds {
        let i = unit + k * stride;
        if i < d {
            let v = f32::cast_from(x[base + i]);
            acc += v * v;
        }
    }
    let mut partial = Shared::<[f32]>::new_slice(PLANES);
    let plane = plane_sum(acc);
    if UNIT_POS_X == 0 {
        partial[UNIT_POS_Y as usize] = plane;
    }
    sync_cube();
    let mut total = 0.0f32;
    #[unroll]
    for p in 0..PLANES {
        total += partial[p];
    }
    1.0f32 / (total / f32::cast_from(d) + eps).sqrt()
}

#[cube(launch_unchecked)]
fn rms_norm_wide_kernel<F: Float>(x: &[F], w: &[F], y: &mut [F], d: usize, rounds: usize, eps: f32) {
    let base = CUBE_POS_X as usize * d;
    let unit = UNIT_POS_Y as usize * 32 + UNIT_POS_X as usize;
    let stride = comptime![PLANES * LANES];
    let r = cube_inv_rms::<F>(x, base, d, rounds, eps);
    for k in 0..rounds {
        let i = unit + k * stride;
        if i < d {
            let normed = F::cast_from(f32::cast_from(x[base + i]) * r);
            y[base + i] = normed * w[i];
        }
    }
}

#[cube(launch_unchecked)]
fn rms_norm_kernel<F: Float>(x: &[F], w: &[F], y: &mut [F], rows: usize, d: usize, rounds: usize, eps: f32) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let base = row * d;
    let mut acc = 0.0f32;
    for k in 0..rounds {
        let i = lane + k * 32;
        if i < d {
            let v = f32::cast_from(x[base + i]);
            acc += v * v;
        }
    }
    let total = plane_sum(acc);
    let r = 1.0f32 / (total / f32::cast_from(d) + eps).sqrt();
    for k in 0..rounds {
        let i = lane + k * 32;
        if i < d {
            let normed = F::cast_from(f32::cast_from(x[base + i]) * r);
            y[base + i] = normed * w[i];
        }
    }
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_backward_kernel<F: Float>(x: &[F], w: &[F], g: &[F], dx: &mut [F], rows: usize, d: usize, rounds: usize, eps: f32) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let base = row * d;
    let mut sq = 0.0f32;
    let mut dot = 0.0f32;
    for k in 0..rounds {
        let i = lane + k * 32;
        if i < d {
            let v = f32::cast_from(x[base + i]);
            let u = f32::cast_from(g[base + i]) * f32::cast_from(w[i]);
            sq += v * v;
            dot += v * u;
        }
    }
    let n = f32::cast_from(d);
    let r = 1.0f32 / (plane_sum(sq) / n + eps).sqrt();
    let c = r * r * r * (plane_sum(dot) / n);
    for k in 0..rounds {
        let i = lane + k * 32;
        if i < d {
            let v = f32::cast_from(x[base + i]);
            let u = f32::cast_from(g[base + i]) * f32::cast_from(w[i]);
            dx[base + i] = F::cast_from(r * u - v * c);
        }
    }
}

/// [`rms_norm_kernel`] over vectors: `x`, `w`, `y` in vectors of `N` values, `d` (values per
/// row) a multiple of `N`, `steps = ⌈d / (N·32·UNROLL)⌉`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_vec_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    w: &[Vector<F, N>],
    y: &mut [Vector<F, N>],
    rows: usize,
    d: usize,
    steps: usize,
    eps: f32,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let mut acc = Vector::<f32, N>::new(0.0f32);
    let width = acc.vector_size().comptime();
    let len = d / width;
    let base = row * len;
    for k in 0..steps {
        #[unroll]
        for u in 0..UNROLL {
            let i = lane + (k * UNROLL + u) * 32;
            if i < len {
                let v = Vector::<f32, N>::cast_from(x[base + i]);
                acc += v * v;
            }
        }
    }
    let mut sum = 0.0f32;
    #[unroll]
    for l in 0..width {
        sum += acc.extract(l);
    }
    let total = plane_sum(sum);
    let r = Vector::<f32, N>::new(1.0f32 / (total / f32::cast_from(d) + eps).sqrt());
    for k in 0..steps {
        #[unroll]
        for u in 0..UNROLL {
            let i = lane + (k * UNROLL + u) * 32;
            if i < len {
                let normed = Vector::<F, N>::cast_from(Vector::<f32, N>::cast_from(x[base + i]) * r);
                y[base + i] = normed * w[i];
            }
        }
    }
}

/// [`rms_norm_backward_kernel`] over vectors of `N` values, as [`rms_norm_vec_kernel`].
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_backward_vec_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    w: &[Vector<F, N>],
    g: &[Vector<F, N>],
    dx: &mut [Vector<F, N>],
    rows: usize,
    d: usize,
    steps: usize,
    eps: f32,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let mut sq = Vector::<f32, N>::new(0.0f32);
    let mut dot = Vector::<f32, N>::new(0.0f32);
    let width = sq.vector_size().comptime();
    let len = d / width;
    let base = row * len;
    for k in 0..steps {
        #[unroll]
        for u in 0..UNROLL {
            let i = lane + (k * UNROLL + u) * 32;
            if i < len {
                let v = Vector::<f32, N>::cast_from(x[base + i]);
                let gw = Vector::<f32, N>::cast_from(g[base + i]) * Vector::<f32, N>::cast_from(w[i]);
                sq += v * v;
                dot += v * gw;
            }
        }
    }
    let mut sq_sum = 0.0f32;
    let mut dot_sum = 0.0f32;
    #[unroll]
    for l in 0..width {
        sq_sum += sq.extract(l);
        dot_sum += dot.extract(l);
    }
    let n = f32::cast_from(d);
    let r = 1.0f32 / (plane_sum(sq_sum) / n + eps).sqrt();
    let c = Vector::<f32, N>::new(r * r * r * (plane_sum(dot_sum) / n));
    let r = Vector::<f32, N>::new(r);
    for k in 0..steps {
        #[unroll]
        for u in 0..UNROLL {
            let i = lane + (k * UNROLL + u) * 32;
            if i < len {
                let v = Vector::<f32, N>::cast_from(x[base + i]);
                let gw = Vector::<f32, N>::cast_from(g[base + i]) * Vector::<f32, N>::cast_from(w[i]);
                dx[base + i] = Vector::<F, N>::cast_from(r * gw - v * c);
            }
        }
    }
}

/// Forward (`g = None`) or input gradient (`g = Some(upstream)`) of RMSNorm on `x: [rows, d]`.
///
/// # Panics
/// Operands of different dtypes, or a dtype other than f32/bf16/f16.
pub(crate) fn rms_norm(x: CubeTensor, w: CubeTensor, g: Option<CubeTensor>, eps: f64) -> CubeTensor {
    let (x, w, g) = (contiguous(x), contiguous(w), g.map(contiguous));
    let shape = x.meta.shape().clone();
    let (rows, d) = (shape[0], shape[1]);
    assert!(w.dtype == x.dtype && g.as_ref().is_none_or(|g| g.dtype == x.dtype), "rms_norm: operands of different dtypes");
    let client = x.client.clone();
    let n = rows * d;
    let out = client.empty(n * x.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), x.device.clone(), shape, out.clone(), x.dtype);
    if n == 0 {
        return result;
    }
    let cube_dim = CubeDim::new_2d(LANES as u32, ROWS_PER_CUBE as u32);
    let count = CubeCount::Static(rows.div_ceil(ROWS_PER_CUBE) as u32, 1, 1);
    let rounds = d.div_ceil(LANES);
    let wide = g.is_none() && rows <= WIDE_ROWS;
    // 16-byte vectors: 4 f32 or 8 bf16/f16 values, when `d` is a multiple and every buffer is
    // 16-byte aligned (then so is every row); one value otherwise.
    let vs = match x.dtype {
        DType::F32 => 4,
        DType::BF16 | DType::F16 => 8,
        _ => 1,
    };
    let vs = match &g {
        None => vector_width(d, vs, &[&x, &w, &result]),
        Some(g) => vector_width(d, vs, &[&x, &w, g, &result]),
    };
    let steps = d.div_ceil(vs * LANES * UNROLL);
    let arg = |t: &CubeTensor, len| unsafe { BufferArg::from_raw_parts(t.handle.clone(), len) };
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: x, g and the output hold rows·d contiguous elements, w holds d; every read
            // and write is guarded by `i < d` within a row below `rows` (the wide kernel runs
            // exactly `rows` cubes). The vector kernels run only when vs > 1 divides d and every
            // buffer starts on a 16-byte boundary; they guard `i < d / vs` vectors within a row.
            unsafe {
                match &g {
                    None if wide => rms_norm_wide_kernel::launch_unchecked::<$f>(
                        &client,
                        CubeCount::Static(rows as u32, 1, 1),
                        CubeDim::new_2d(LANES as u32, PLANES as u32),
                        arg(&x, n),
                        arg(&w, d),
                        BufferArg::from_raw_parts(out, n),
                        d,
                        d.div_ceil(LANES * PLANES),
                        eps as f32,
                    ),
                    None if vs > 1 => rms_norm_vec_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        vs,
                        arg(&x, n),
                        arg(&w, d),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        d,
                        steps,
                        eps as f32,
                    ),
                    None => rms_norm_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        arg(&x, n),
                        arg(&w, d),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        d,
                        rounds,
                        eps as f32,
                    ),
                    Some(g) if vs > 1 => rms_norm_backward_vec_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        vs,
                        arg(&x, n),
                        arg(&w, d),
                        arg(g, n),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        d,
                        steps,
                        eps as f32,
                    ),
                    Some(g) => rms_norm_backward_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        arg(&x, n),
                        arg(&w, d),
                        arg(g, n),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        d,
                        rounds,
                        eps as f32,
                    ),
                }
            }
        };
    }
    match x.dtype {
        DType::F32 => launch!(f32),
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        other => panic!("rms_norm: unsupported dtype {other:?}"),
    }
    result
}
