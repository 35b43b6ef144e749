//! Cross-entropy kernels (CubeCL): one cube of 8 planes (256 units) per row of logits, so a
//! chunk of a few hundred 128k-wide rows still fills the GPU. Each unit strides over the
//! vocabulary keeping an online max and sum of exponentials (f32, one read of the row); the
//! pairs `(m, s)` merge as `m = max(m₁, m₂)`, `s = s₁·e^{m₁−m} + s₂·e^{m₂−m}` within each plane
//! and then across the planes through shared memory. The backward reads the row once more and
//! writes `g · (softmax − onehot)` in the logits' dtype. Formulas in [`crate::cross_entropy`].

use super::interop::contiguous;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Planes (32 units each) that share one row.
const PLANES: usize = 8;
/// Units per row.
const UNITS: usize = 32 * PLANES;

/// `(m, s)` of the row: its max and `Σ e^{z−m}` (f32), the same in every unit of the cube.
#[cube]
fn row_max_and_sum<F: Float>(z: &[F], base: usize, v: usize, rounds: usize) -> (f32, f32) {
    let unit = UNIT_POS as usize;
    let mut m = f32::cast_from(z[base]);
    let mut sum = 0.0f32;
    for k in 0..rounds {
        let j = unit + k * UNITS;
        if j < v {
            let x = f32::cast_from(z[base + j]);
            if x > m {
                sum = sum * (m - x).exp() + 1.0f32;
                m = x;
            } else {
                sum += (x - m).exp();
            }
        }
    }
    let plane_m = plane_max(m);
    let plane_s = plane_sum(sum * (m - plane_m).exp());
    let mut maxes = Shared::<[f32]>::new_slice(PLANES);
    let mut sums = Shared::<[f32]>::new_slice(PLANES);
    let plane = UNIT_POS_Y as usize;
    if UNIT_POS_X == 0 {
        maxes[plane] = plane_m;
        sums[plane] = plane_s;
    }
    sync_cube();
    let mut row_m = maxes[0];
    #[unroll]
    for p in 1..PLANES {
        if maxes[p] > row_m {
            row_m = maxes[p];
        }
    }
    let mut row_s = 0.0f32;
    #[unroll]
    for p in 0..PLANES {
        row_s += sums[p] * (maxes[p] - row_m).exp();
    }
    (row_m, row_s)
}

#[cube(launch_unchecked)]
fn ce_kernel<F: Float, I: Int>(z: &[F], t: &[I], loss: &mut [f32], v: usize, rounds: usize, ignore: i64) {
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let y = i64::cast_from(t[row]);
    if y == ignore {
        if unit == 0 {
            loss[row] = 0.0f32;
        }
        terminate!();
    }
    if y < 0 || y >= i64::cast_from(v) {
        // Not a class id: a loud NaN rather than a read outside the row.
        if unit == 0 {
            loss[row] = f32::new(f32::NAN);
        }
        terminate!();
    }
    let base = row * v;
    let (m, sum) = row_max_and_sum::<F>(z, base, v, rounds);
    if unit == 0 {
        loss[row] = m + sum.ln() - f32::cast_from(z[base + usize::cast_from(y)]);
    }
}

#[cube(launch_unchecked)]
fn ce_backward_kernel<F: Float, I: Int>(z: &[F], t: &[I], g: &[f32], dz: &mut [F], v: usize, rounds: usize, ignore: i64) {
    let row = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let base = row * v;
    let y = i64::cast_from(t[row]);
    if y == ignore || y < 0 || y >= i64::cast_from(v) {
        for k in 0..rounds {
            let j = unit + k * UNITS;
            if j < v {
                dz[base + j] = F::cast_from(0.0f32);
            }
        }
        terminate!();
    }
    let (m, sum) = row_max_and_sum::<F>(z, base, v, rounds);
    let scale = g[row] / sum;
    let target = usize::cast_from(y);
    for k in 0..rounds {
        let j = unit + k * UNITS;
        if j < v {
            let mut d = (f32::cast_from(z[base + j]) - m).exp() * scale;
            if j == target {
                d -= g[row];
            }
            dz[base + j] = F::cast_from(d);
        }
    }
}

/// Losses (`grad = None`, f32 `[n]`) or the logits' gradient (`grad = Some(g)`, f32 `[n]`).
///
/// # Panics
/// Unsupported dtypes (logits f32/bf16/f16, targets i32/i64, `g` f32).
pub(crate) fn cross_entropy(logits: CubeTensor, targets: CubeTensor, grad: Option<CubeTensor>, ignore: i64) -> CubeTensor {
    let (z, t, g) = (contiguous(logits), contiguous(targets), grad.map(contiguous));
    let shape = z.meta.shape().clone();
    let (rows, v) = (shape[0], shape[1]);
    assert!(g.as_ref().is_none_or(|g| g.dtype == DType::F32), "cross_entropy: the upstream gradient must be f32");
    let client = z.client.clone();
    let (out_len, out_dtype) = if g.is_some() { (rows * v, z.dtype) } else { (rows, DType::F32) };
    let out = client.empty(out_len * out_dtype.size());
    let out_shape = if g.is_some() { shape } else { [rows].into() };
    let result = CubeTensor::new_contiguous(client.clone(), z.device.clone(), out_shape, out.clone(), out_dtype);
    if rows == 0 || v == 0 {
        return result;
    }
    let cube_dim = CubeDim::new_2d(32, PLANES as u32);
    let count = CubeCount::Static(rows as u32, 1, 1);
    let rounds = v.div_ceil(UNITS);
    macro_rules! launch {
        ($f:ty, $i:ty) => {
            // SAFETY: z holds rows·v contiguous elements, t and g rows, the output rows (losses)
            // or rows·v (gradient); one cube per row (`row < rows`), every column guarded by `j < v`, and the
            // target index is a valid class id (the caller's contract, as for a gather).
            unsafe {
                match &g {
                    None => ce_kernel::launch_unchecked::<$f, $i>(
                        &client,
                        count,
                        cube_dim,
                        BufferArg::from_raw_parts(z.handle.clone(), rows * v),
                        BufferArg::from_raw_parts(t.handle.clone(), rows),
                        BufferArg::from_raw_parts(out, rows),
                        v,
                        rounds,
                        ignore,
                    ),
                    Some(g) => ce_backward_kernel::launch_unchecked::<$f, $i>(
                        &client,
                        count,
                        cube_dim,
                        BufferArg::from_raw_parts(z.handle.clone(), rows * v),
                        BufferArg::from_raw_parts(t.handle.clone(), rows),
                        BufferArg::from_raw_parts(g.handle.clone(), rows),
                        BufferArg::from_raw_parts(out, rows * v),
                        v,
                        rounds,
                        ignore,
                    ),
                }
            }
        };
    }
    match (z.dtype, t.dtype) {
        (DType::BF16, DType::I64) => launch!(half::bf16, i64),
        (DType::BF16, DType::I32) => launch!(half::bf16, i32),
        (DType::F32, DType::I64) => launch!(f32, i64),
        (DType::F32, DType::I32) => launch!(f32, i32),
        (DType::F16, DType::I64) => launch!(half::f16, i64),
        (DType::F16, DType::I32) => launch!(half::f16, i32),
        (zd, td) => panic!("cross_entropy: unsupported dtypes {zd:?} logits, {td:?} targets"),
    }
    result
}
