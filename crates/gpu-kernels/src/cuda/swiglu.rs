//! SwiGLU kernels (CubeCL): element-wise over contiguous 1-D operands in 16-byte vectors (8
//! bf16/f16 or 4 f32 values per thread, when the length and the buffers' offsets allow; one
//! value per thread otherwise), f32 arithmetic, one rounding to the inputs' dtype. The backward
//! writes `dg` and `du` in one pass over `g`, `u` and `dh`. Formulas in [`crate::swiglu`].

use super::interop::{Elemwise, contiguous, empty_1d};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// `h = g·σ(g)·u` over `len` vectors.
#[cube(launch_unchecked)]
fn swiglu_forward_kernel<F: Float, N: Size>(g: &[Vector<F, N>], u: &[Vector<F, N>], h: &mut [Vector<F, N>], len: usize) {
    let i = ABSOLUTE_POS;
    if i >= len {
        terminate!();
    }
    let gi = Vector::<f32, N>::cast_from(g[i]);
    let one = Vector::<f32, N>::new(1.0f32);
    let sig = one / (one + Vector::exp(-gi));
    h[i] = Vector::<F, N>::cast_from(gi * sig * Vector::<f32, N>::cast_from(u[i]));
}

/// `dg = dh·u·σ(g)·(1 + g·(1 − σ(g)))` and `du = dh·g·σ(g)` over `len` vectors.
#[cube(launch_unchecked)]
fn swiglu_backward_kernel<F: Float, N: Size>(
    g: &[Vector<F, N>],
    u: &[Vector<F, N>],
    dh: &[Vector<F, N>],
    dg: &mut [Vector<F, N>],
    du: &mut [Vector<F, N>],
    len: usize,
) {
    let i = ABSOLUTE_POS;
    if i >= len {
        terminate!();
    }
    let gi = Vector::<f32, N>::cast_from(g[i]);
    let one = Vector::<f32, N>::new(1.0f32);
    let sig = one / (one + Vector::exp(-gi));
    let dhi = Vector::<f32, N>::cast_from(dh[i]);
    let d = dhi * Vector::<f32, N>::cast_from(u[i]);
    dg[i] = Vector::<F, N>::cast_from(d * sig * (one + gi * (one - sig)));
    du[i] = Vector::<F, N>::cast_from(dhi * gi * sig);
}

/// `silu(gate) ⊙ up` of two 1-D tensors of one dtype and length.
///
/// # Panics
/// Operands of different dtypes or lengths, or an unsupported dtype.
pub(crate) fn swiglu(gate: CubeTensor, up: CubeTensor) -> CubeTensor {
    let (g, u) = (contiguous(gate), contiguous(up));
    let n = g.meta.num_elements();
    assert!(u.dtype == g.dtype && u.meta.num_elements() == n, "swiglu: gate and up differ");
    let h = empty_1d(&g, n, g.dtype);
    if n == 0 {
        return h;
    }
    let client = g.client.clone();
    let Elemwise { vs, len, cube_dim, count } = Elemwise::new(n, 16 / g.dtype.size(), &[&g, &u, &h]);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: the three buffers hold n contiguous elements (`len` vectors of `vs`,
            // 16-byte aligned when vs > 1); the kernel guards `i < len`.
            unsafe {
                swiglu_forward_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    vs,
                    BufferArg::from_raw_parts(g.handle.clone(), n),
                    BufferArg::from_raw_parts(u.handle.clone(), n),
                    BufferArg::from_raw_parts(h.handle.clone(), n),
                    len,
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
    h
}

/// `(dg, du)` of [`swiglu`] for upstream `grad`, in one launch.
///
/// # Panics
/// Operands of different dtypes or lengths, or an unsupported dtype.
pub(crate) fn swiglu_backward(gate: CubeTensor, up: CubeTensor, grad: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (g, u, dh) = (contiguous(gate), contiguous(up), contiguous(grad));
    let n = g.meta.num_elements();
    assert!(u.dtype == g.dtype && u.meta.num_elements() == n, "swiglu: gate and up differ");
    assert!(dh.dtype == g.dtype && dh.meta.num_elements() == n, "swiglu: the gradient differs");
    let (dg, du) = (empty_1d(&g, n, g.dtype), empty_1d(&g, n, g.dtype));
    if n == 0 {
        return (dg, du);
    }
    let client = g.client.clone();
    let Elemwise { vs, len, cube_dim, count } = Elemwise::new(n, 16 / g.dtype.size(), &[&g, &u, &dh, &dg, &du]);
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: the five buffers hold n contiguous elements (`len` vectors of `vs`,
            // 16-byte aligned when vs > 1); the kernel guards `i < len`.
            unsafe {
                swiglu_backward_kernel::launch_unchecked::<$f>(
                    &client,
                    count,
                    cube_dim,
                    vs,
                    BufferArg::from_raw_parts(g.handle.clone(), n),
                    BufferArg::from_raw_parts(u.handle.clone(), n),
                    BufferArg::from_raw_parts(dh.handle.clone(), n),
                    BufferArg::from_raw_parts(dg.handle.clone(), n),
                    BufferArg::from_raw_parts(du.handle.clone(), n),
                    len,
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
    (dg, du)
}
