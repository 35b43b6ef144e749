//! Scaled causal softmax and its backward (CubeCL): one plane (32 lanes) per row, 8 rows per
//! cube; lanes stride over the row, the plane reduces (max, then sum, or the `P·dP` dot), and a
//! last pass writes. f32 statistics, output in the scores' dtype. Formulas in [`crate::softmax`].

use super::interop::contiguous;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

const ROWS_PER_CUBE: usize = 8;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn softmax_kernel<F: Float>(x: &[F], p: &mut [F], rows: usize, s: usize, t: usize, rounds: usize, scale: f32, #[comptime] causal: bool) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let base = row * t;
    // Keys 0..=last are visible.
    let last = if comptime![causal] { row % s + (t - s) } else { t - 1 };
    let mut m = f32::cast_from(x[base]) * scale;
    for k in 0..rounds {
        let j = lane + k * 32;
        if j <= last {
            let v = f32::cast_from(x[base + j]) * scale;
            if v > m {
                m = v;
            }
        }
    }
    let m = plane_max(m);
    let mut sum = 0.0f32;
    for k in 0..rounds {
        let j = lane + k * 32;
        if j <= last {
            sum += (f32::cast_from(x[base + j]) * scale - m).exp();
        }
    }
    let inv = 1.0f32 / plane_sum(sum);
    for k in 0..rounds {
        let j = lane + k * 32;
        if j < t {
            let mut v = 0.0f32;
            if j <= last {
                v = (f32::cast_from(x[base + j]) * scale - m).exp() * inv;
            }
            p[base + j] = F::cast_from(v);
        }
    }
}

#[cube(launch_unchecked)]
fn softmax_backward_kernel<F: Float>(p: &[F], g: &[F], ds: &mut [F], rows: usize, t: usize, rounds: usize, scale: f32) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    if row >= rows {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let base = row * t;
    let mut dot = 0.0f32;
    for k in 0..rounds {
        let j = lane + k * 32;
        if j < t {
            dot += f32::cast_from(p[base + j]) * f32::cast_from(g[base + j]);
        }
    }
    let dot = plane_sum(dot);
    for k in 0..rounds {
        let j = lane + k * 32;
        if j < t {
            let pj = f32::cast_from(p[base + j]);
            ds[base + j] = F::cast_from(scale * pj * (f32::cast_from(g[base + j]) - dot));
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
    let cube_dim = CubeDim::new_2d(32, ROWS_PER_CUBE as u32);
    let count = CubeCount::Static(rows.div_ceil(ROWS_PER_CUBE) as u32, 1, 1);
    let rounds = t.div_ceil(32);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: every operand holds rows·t contiguous elements; reads and writes are
            // guarded by `j < t` within a row below `rows`.
            unsafe {
                match &grad {
                    None => softmax_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        BufferArg::from_raw_parts(x.handle.clone(), n),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        s,
                        t,
                        rounds,
                        scale as f32,
                        causal && s > 1,
                    ),
                    Some(g) => softmax_backward_kernel::launch_unchecked::<$f>(
                        &client,
                        count,
                        cube_dim,
                        BufferArg::from_raw_parts(x.handle.clone(), n),
                        BufferArg::from_raw_parts(g.handle.clone(), n),
                        BufferArg::from_raw_parts(out, n),
                        rows,
                        t,
                        rounds,
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
