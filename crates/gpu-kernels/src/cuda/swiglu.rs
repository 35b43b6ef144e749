//! SwiGLU kernels (CubeCL): element-wise over contiguous 1-D operands, f32 arithmetic, one
//! rounding to the inputs' dtype. Formulas in [`crate::swiglu`].

use super::interop::contiguous;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// 0: forward `g·σ(g)·u`; 1: `dg`; 2: `du`.
#[cube(launch_unchecked)]
fn swiglu_kernel<F: Float>(g: &[F], u: &[F], dh: &[F], out: &mut [F], #[comptime] mode: u32) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let gi = f32::cast_from(g[i]);
    let sig = 1.0f32 / (1.0f32 + (-gi).exp());
    if comptime![mode == 0] {
        out[i] = F::cast_from(gi * sig * f32::cast_from(u[i]));
    } else if comptime![mode == 1] {
        let d = f32::cast_from(dh[i]) * f32::cast_from(u[i]);
        out[i] = F::cast_from(d * sig * (1.0f32 + gi * (1.0f32 - sig)));
    } else {
        out[i] = F::cast_from(f32::cast_from(dh[i]) * gi * sig);
    }
}

/// `h` (`grad = None`), `dg` (`Some(dh)`, `wrt_up = false`) or `du`.
///
/// # Panics
/// Operands of different dtypes or lengths, or an unsupported dtype.
pub(crate) fn swiglu(gate: CubeTensor, up: CubeTensor, grad: Option<CubeTensor>, wrt_up: bool) -> CubeTensor {
    let (g, u, dh) = (contiguous(gate), contiguous(up), grad.map(contiguous));
    let n = g.meta.num_elements();
    assert!(u.dtype == g.dtype && u.meta.num_elements() == n, "swiglu: gate and up differ");
    assert!(dh.as_ref().is_none_or(|d| d.dtype == g.dtype && d.meta.num_elements() == n), "swiglu: the gradient differs");
    let client = g.client.clone();
    let out = client.empty(n * g.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), g.device.clone(), [n].into(), out.clone(), g.dtype);
    if n == 0 {
        return result;
    }
    let mode = match (&dh, wrt_up) {
        (None, _) => 0u32,
        (Some(_), false) => 1,
        (Some(_), true) => 2,
    };
    let dh = dh.unwrap_or_else(|| g.clone());
    let cube_dim = CubeDim::new_1d(256);
    let count = cubecl::calculate_cube_count_elemwise(&client, n, cube_dim);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: the four buffers hold n contiguous elements; the kernel guards `i < n`.
            unsafe {
                swiglu_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    BufferArg::from_raw_parts(g.handle.clone(), n),
                    BufferArg::from_raw_parts(u.handle.clone(), n),
                    BufferArg::from_raw_parts(dh.handle.clone(), n),
                    BufferArg::from_raw_parts(out, n),
                    mode,
                )
            }
        };
    }
    match g.dtype {
        DType::F32 => launch!(f32),
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        other => panic!("swiglu: unsupported dtype {other:?}"),
    }
    result
}
