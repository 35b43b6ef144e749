//! Scaled causal softmax and its backward (CubeCL): one plane (32 lanes) per row, 8 rows per
//! cube. Lanes stride over the row in 16-byte vectors (8 bf16/f16 or 4 f32 values per load and
//! store) when the row length `t` is a multiple of that width and every buffer starts on a
//! 16-byte boundary ([`vector_width`]; `KINDLING_ELEMWISE=scalar` turns them off); one value at
//! a time otherwise (the same kernels with vectors of 1). f32 statistics, output in the scores'
//! dtype. Formulas in [`crate::softmax`].
//!
//! Forward: two passes over the row. The first keeps an online max and sum of exponentials
//! per lane (`m = max(m₁, m₂)`, `s = s₁·e^{m₁−m} + s₂·e^{m₂−m}`, one exp per value plus one per
//! vector), merged across the plane; the second writes `e^{scale·x − m} / s`. A causal row reads
//! only the vectors that hold its visible keys `0..=last` (the tail of the last one is masked);
//! the vectors past them are written as 0 without being read.
//!
//! Backward: one pass sums `P·dP` (vectors accumulated per lane, then the plane), a second writes
//! `scale·P·(dP − Σ P·dP)`. A vector of `P` that is all zeros (the masked keys of a causal row)
//! contributes nothing and gets 0, so its `dP` is not read.

use super::interop::{contiguous, vector_width};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

const ROWS_PER_CUBE: usize = 8;

/// `P` of `rows` rows of `t` values (`t / N` vectors), keys past `last` masked when `causal`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn softmax_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    p: &mut [Vector<F, N>],
    rows: usize,
    s: usize,
    t: usize,
    scale: f32,
    #[comptime] causal: bool,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let width = x.vector_size().comptime();
    let lane = UNIT_POS_X as usize;
    let vectors = t / width;
    let base = row * vectors;
    // Keys 0..=last are visible; they lie in vectors 0..seen.
    let last = if comptime![causal] { row % s + (t - s) } else { t - 1 };
    let seen = last / width + 1;
    let scale_v = Vector::<f32, N>::new(scale);
    let mut m = f32::new(f32::MIN);
    let mut sum = 0.0f32;
    for k in 0..seen.div_ceil(32) {
        let c = lane + k * 32;
        if c < seen {
            let mut v = Vector::<f32, N>::cast_from(x[base + c]) * scale_v;
            if c + 1 == seen {
                // Past `last`: −∞, whose exp below is exactly 0 (`vm ≥ m` stays finite).
                #[unroll]
                for l in 0..width {
                    if c * width + l > last {
                        v.insert(l, f32::new(f32::NEG_INFINITY));
                    }
                }
            }
            let mut vm = m;
            #[unroll]
            for l in 0..width {
                vm = max(vm, v.extract(l));
            }
            let e = Vector::exp(v - Vector::<f32, N>::new(vm));
            let mut part = 0.0f32;
            #[unroll]
            for l in 0..width {
                part += e.extract(l);
            }
            sum = sum * (m - vm).exp() + part;
            m = vm;
        }
    }
    let row_m = plane_max(m);
    let inv = 1.0f32 / plane_sum(sum * (m - row_m).exp());
    let m_v = Vector::<f32, N>::new(row_m);
    let inv_v = Vector::<f32, N>::new(inv);
    for k in 0..vectors.div_ceil(32) {
        let c = lane + k * 32;
        if c < seen {
            let mut e = Vector::exp(Vector::<f32, N>::cast_from(x[base + c]) * scale_v - m_v) * inv_v;
            if c + 1 == seen {
                #[unroll]
                for l in 0..width {
                    if c * width + l > last {
                        e.insert(l, 0.0f32);
                    }
                }
            }
            p[base + c] = Vector::<F, N>::cast_from(e);
        } else if c < vectors {
            p[base + c] = Vector::<F, N>::cast_from(Vector::<f32, N>::new(0.0f32));
        }
    }
}

/// Whether any value of `v` is not 0 (NaN counts as not 0).
#[cube]
fn any_nonzero<N: Size>(v: Vector<f32, N>) -> bool {
    let width = v.vector_size().comptime();
    let mut any = false;
    #[unroll]
    for l in 0..width {
        any = any || v.extract(l) != 0.0f32;
    }
    any
}

/// `dS` of `rows` rows of `t` values (`t / N` vectors).
#[cube(launch_unchecked)]
fn softmax_backward_kernel<F: Float, N: Size>(
    p: &[Vector<F, N>],
    g: &[Vector<F, N>],
    ds: &mut [Vector<F, N>],
    rows: usize,
    t: usize,
    scale: f32,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let width = p.vector_size().comptime();
    let lane = UNIT_POS_X as usize;
    let vectors = t / width;
    let base = row * vectors;
    let rounds = vectors.div_ceil(32);
    let mut acc = Vector::<f32, N>::new(0.0f32);
    for k in 0..rounds {
        let c = lane + k * 32;
        if c < vectors {
            let pv = Vector::<f32, N>::cast_from(p[base + c]);
            if any_nonzero::<N>(pv) {
                acc += pv * Vector::<f32, N>::cast_from(g[base + c]);
            }
        }
    }
    let mut dot = 0.0f32;
    #[unroll]
    for l in 0..width {
        dot += acc.extract(l);
    }
    let dot_v = Vector::<f32, N>::new(plane_sum(dot));
    let scale_v = Vector::<f32, N>::new(scale);
    for k in 0..rounds {
        let c = lane + k * 32;
        if c < vectors {
            let pv = Vector::<f32, N>::cast_from(p[base + c]);
            let mut d = Vector::<f32, N>::new(0.0f32);
            if any_nonzero::<N>(pv) {
                d = scale_v * pv * (Vector::<f32, N>::cast_from(g[base + c]) - dot_v);
            }
            ds[base + c] = Vector::<F, N>::cast_from(d);
        }
    }
}

/// Forward (`grad = None`: `x` are the scores) or backward (`x` is `P`, `grad` is `dP`).
///
/// # Panics
/// Operands of different dtypes or an unsupported dtype.
pub(crate) fn softmax(x: CubeTensor, grad: Option<CubeTensor>, scale: f64, causal: bool) -> CubeTensor {
    let (x, grad) = (contiguous(x), grad.map(contiguous));
    assert!(grad.as_ref().is_none_or(|g| g.dtype == x.dtype), "softmax: operands of different dtypes");
    let shape = x.meta.shape().clone();
    let (batch, s, t) = (shape[0], shape[1], shape[2]);
    assert!(!causal || s <= t, "softmax: causal with {s} queries over {t} keys");
    let rows = batch * s;
    let n = rows * t;
    let client = x.client.clone();
    let out = client.empty(n * x.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), x.device.clone(), shape, out.clone(), x.dtype);
    if n == 0 {
        return result;
    }
    // 16-byte vectors when every row is a whole number of them and every buffer is aligned.
    let mut operands = vec![&x, &result];
    operands.extend(grad.as_ref());
    let vs = vector_width(t, 16 / x.dtype.size().max(1), &operands);
    let cube_dim = CubeDim::new_2d(32, ROWS_PER_CUBE as u32);
    let count = CubeCount::Static(rows.div_ceil(ROWS_PER_CUBE) as u32, 1, 1);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: every operand holds rows·t contiguous elements, rows·t/vs vectors of vs
            // (t a multiple of vs, each buffer 16-byte aligned when vs > 1); every read and
            // write is of vector `c < t/vs` of a row below `rows` (the forward reads only
            // `c < seen ≤ t/vs`).
            unsafe {
                match &grad {
                    None => softmax_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        vs,
                        BufferArg::from_raw_parts(x.handle.clone(), n),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        s,
                        t,
                        scale as f32,
                        causal && s > 1,
                    ),
                    Some(g) => softmax_backward_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        vs,
                        BufferArg::from_raw_parts(x.handle.clone(), n),
                        BufferArg::from_raw_parts(g.handle.clone(), n),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        t,
                        scale as f32,
                    ),
                }
            }
        };
    }
    match x.dtype {
        DType::F32 => launch!(f32),
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        other => panic!("softmax: unsupported dtype {other:?}"),
    }
    result
}
