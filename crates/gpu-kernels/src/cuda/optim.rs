//! One-kernel AdamW update and squared-norm partial sums (CubeCL); see [`crate::optim`] for the
//! formulas. Both read their operands contiguously, one element per thread (AdamW) or a strided
//! run per thread (norm), and do their arithmetic in f32 in the order of the burn-ops path.
//! bf16 moments are written by stochastic rounding ([`crate::stochastic_round`]) with the
//! draws of [`super::counter_hash`].

use burn::tensor::{DType, Tensor};
use burn_cubecl::{CubeBackend, tensor::CubeTensor};
use cubecl::prelude::*;

use super::counter_hash::counter_hash;
use super::interop::contiguous;
use crate::optim::AdamWStep;

/// `x` as an `M`: stochastically rounded to bf16 with the low 16 bits of `r` when `stochastic`
/// (see [`crate::stochastic_round::to_bf16_stochastic`]), else converted.
#[cube]
fn store<M: Float>(x: f32, r: u32, #[comptime] stochastic: bool) -> M {
    if comptime![stochastic] {
        let b = u32::reinterpret(x);
        let mut y = x;
        if (b & 0x7F80_0000u32) != 0x7F80_0000u32 {
            y = f32::reinterpret((b + (r & 0xFFFFu32)) & 0xFFFF_0000u32);
        }
        M::cast_from(y)
    } else {
        M::cast_from(x)
    }
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel<P: Float, G: Float, M: Float>(
    p: &[P],
    g: &[G],
    m: &[M],
    v: &[M],
    p_out: &mut [P],
    m_out: &mut [M],
    v_out: &mut [M],
    grad_scale: &[f32],
    seed_lo: u32,
    seed_hi: u32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    eps: f32,
    decay: f32,
    lr: f32,
    #[comptime] stochastic: bool,
) {
    let i = ABSOLUTE_POS;
    if i >= p.len() {
        terminate!();
    }
    let gi = f32::cast_from(g[i]) * grad_scale[0];
    let mi = f32::cast_from(m[i]) * beta1 + gi * one_minus_beta1;
    let vi = f32::cast_from(v[i]) * beta2 + gi * gi * one_minus_beta2;
    let denom = (vi / bias_correction2).sqrt() + eps;
    let pi = f32::cast_from(p[i]) * decay;
    p_out[i] = P::cast_from(pi - mi / bias_correction1 / denom * lr);
    let mut r = 0u32;
    if comptime![stochastic] {
        r = counter_hash(i, seed_lo, seed_hi);
    }
    m_out[i] = store::<M>(mi, r, stochastic);
    v_out[i] = store::<M>(vi, r >> 16u32, stochastic);
}

#[cube(launch_unchecked)]
fn sum_squares_kernel<G: Float>(g: &[G], partial: &mut [f32], offset: usize, threads: usize, rounds: usize) {
    let t = ABSOLUTE_POS;
    let n = g.len();
    let mut acc = 0.0f32;
    for k in 0..rounds {
        let i = t + k * threads;
        if i < n {
            let x = f32::cast_from(g[i]);
            acc += x * x;
        }
    }
    partial[offset + t] = acc;
}

fn prim(t: &Tensor<2>) -> Option<CubeTensor> {
    Some(contiguous(t.clone().try_into_primitive::<CubeBackend>().ok()?))
}

const BLOCK: usize = 256;

/// The fused update, or `None` for dtypes it does not take (the caller uses the ops path).
pub(crate) fn adamw(
    p: &Tensor<2>,
    g: &Tensor<2>,
    m: &Tensor<2>,
    v: &Tensor<2>,
    grad_scale: &Tensor<1>,
    s: &AdamWStep,
) -> Option<(Tensor<2>, Tensor<2>, Tensor<2>)> {
    let (p, g, m, v) = (prim(p)?, prim(g)?, prim(m)?, prim(v)?);
    let scale = contiguous(grad_scale.clone().try_into_primitive::<CubeBackend>().ok()?);
    if scale.dtype != DType::F32 || scale.meta.num_elements() != 1 {
        return None;
    }
    let state = m.dtype;
    if v.dtype != state || !matches!(state, DType::F32 | DType::BF16) {
        return None;
    }
    let stochastic = state == DType::BF16;
    let n = p.meta.num_elements();
    let shape = p.meta.shape().clone();
    let client = p.client.clone();
    let device = p.device.clone();
    let p_out = client.empty(n * p.dtype.size());
    let m_out = client.empty(n * state.size());
    let v_out = client.empty(n * state.size());
    let new = |h, dtype| CubeTensor::new_contiguous(client.clone(), device.clone(), shape.clone(), h, dtype);
    let outs = (new(p_out.clone(), p.dtype), new(m_out.clone(), state), new(v_out.clone(), state));
    if n > 0 {
        let cube_dim = CubeDim::new_1d(BLOCK as u32);
        let count = cubecl::calculate_cube_count_elemwise(&client, n, cube_dim);
        macro_rules! launch {
            ($p:ty, $g:ty, $m:ty) => {
                // SAFETY: the seven buffers hold n elements each (inputs contiguous, outputs
                // allocated for n), the factor one f32, and the kernel guards its index.
                unsafe {
                    adamw_kernel::launch_unchecked::<$p, $g, $m>(
                        &client,
                        count,
                        cube_dim,
                        BufferArg::from_raw_parts(p.handle.clone(), n),
                        BufferArg::from_raw_parts(g.handle.clone(), n),
                        BufferArg::from_raw_parts(m.handle.clone(), n),
                        BufferArg::from_raw_parts(v.handle.clone(), n),
                        BufferArg::from_raw_parts(p_out, n),
                        BufferArg::from_raw_parts(m_out, n),
                        BufferArg::from_raw_parts(v_out, n),
                        BufferArg::from_raw_parts(scale.handle.clone(), 1),
                        s.seed as u32,
                        (s.seed >> 32) as u32,
                        s.beta1 as f32,
                        (1.0 - s.beta1) as f32,
                        s.beta2 as f32,
                        (1.0 - s.beta2) as f32,
                        s.bias_correction1 as f32,
                        s.bias_correction2 as f32,
                        s.eps as f32,
                        (1.0 - s.lr * s.weight_decay) as f32,
                        s.lr as f32,
                        stochastic,
                    )
                }
            };
            ($p:ty, $g:ty) => {
                if stochastic { launch!($p, $g, half::bf16) } else { launch!($p, $g, f32) }
            };
        }
        match (p.dtype, g.dtype) {
            (DType::F32, DType::F32) => launch!(f32, f32),
            (DType::BF16, DType::BF16) => launch!(half::bf16, half::bf16),
            (DType::F16, DType::F16) => launch!(half::f16, half::f16),
            (DType::F32, DType::BF16) => launch!(f32, half::bf16),
            _ => return None,
        }
    } else if !matches!(p.dtype, DType::F32 | DType::BF16 | DType::F16) {
        return None;
    }
    let wrap = |t: CubeTensor| Tensor::<2>::from_primitive::<CubeBackend>(t);
    Some((wrap(outs.0), wrap(outs.1), wrap(outs.2)))
}

/// Threads given to one tensor of `n` elements: a multiple of the block, each thread summing at
/// least 8 elements where there are enough, at most 64 blocks.
fn threads_for(n: usize) -> usize {
    BLOCK * n.div_ceil(BLOCK * 8).clamp(1, 64)
}

/// `Σ‖g‖²` as a one-element f32 tensor: one partial-sum kernel per tensor into a shared buffer,
/// then one sum; `None` for dtypes it does not take. Deterministic (fixed partition and order).
pub(crate) fn squared_norm(grads: &[Tensor<2>]) -> Option<Tensor<1>> {
    let prims: Vec<CubeTensor> = grads.iter().map(prim).collect::<Option<_>>()?;
    if prims.iter().any(|t| !matches!(t.dtype, DType::F32 | DType::BF16 | DType::F16)) {
        return None;
    }
    let client = prims[0].client.clone();
    let device = prims[0].device.clone();
    let total: usize = prims.iter().map(|t| threads_for(t.meta.num_elements())).sum();
    let partial = client.empty(total * 4);
    let mut offset = 0;
    for t in &prims {
        let n = t.meta.num_elements();
        let threads = threads_for(n);
        let cube_dim = CubeDim::new_1d(BLOCK as u32);
        let count = CubeCount::Static((threads / BLOCK) as u32, 1, 1);
        let rounds = n.div_ceil(threads);
        macro_rules! launch {
            ($g:ty) => {
                // SAFETY: `g` holds n contiguous elements (reads guarded by `i < n`); the
                // partial buffer holds `total` f32 and this launch writes [offset, offset + threads).
                unsafe {
                    sum_squares_kernel::launch_unchecked::<$g>(
                        &client,
                        count,
                        cube_dim,
                        BufferArg::from_raw_parts(t.handle.clone(), n),
                        BufferArg::from_raw_parts(partial.clone(), total),
                        offset,
                        threads,
                        rounds,
                    )
                }
            };
        }
        match t.dtype {
            DType::F32 => launch!(f32),
            DType::BF16 => launch!(half::bf16),
            _ => launch!(half::f16),
        }
        offset += threads;
    }
    let partial = CubeTensor::new_contiguous(client, device, [total].into(), partial, DType::F32);
    Some(Tensor::<1>::from_primitive::<CubeBackend>(partial).sum())
}
