//! The optimizer's per-parameter arithmetic as single kernels: AdamW's update and the squared
//! L2 norm of the gradients (for global-norm clipping).
//!
//! A LoRA run updates hundreds of small tensors per step (448 for r64 on every projection of a
//! 32-layer model). Written as burn ops, AdamW is ~18 kernels per tensor and the norm 3 plus a
//! concatenation; on CUDA each of [`adamw_update`] and [`squared_norm`] is one kernel per tensor,
//! with the same arithmetic in the same order. Elsewhere both are the burn ops below.
//!
//! AdamW (torch / bitsandbytes `AdamW32bit`), for a parameter `p`, gradient `g` scaled by the
//! clipping coefficient `c` (a one-element device tensor: computed on the device from
//! [`squared_norm`], it needs no read-back before the updates are queued), step `t`, rate `η`,
//! decay `λ`, all in f32:
//! `g ← c·g`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p·(1 − ηλ) − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`; `p` is returned in its own dtype,
//! `m` and `v` in theirs: f32, or bf16 (half the memory) stored by stochastic rounding
//! ([`crate::stochastic_round`]) with the draws of [`crate::counter_hash::counter_hash`]`(seed, i)`
//! (`m` its low 16 bits, `v` its high 16 bits); `p` is computed from the unrounded f32 moments.

use burn::tensor::{DType, Tensor, TensorData};

use crate::stochastic_round::to_bf16_stochastic;

/// The scalars of one AdamW update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate `η`.
    pub lr: f64,
    /// `β₁`.
    pub beta1: f64,
    /// `β₂`.
    pub beta2: f64,
    /// `ε`.
    pub eps: f64,
    /// Decoupled weight decay `λ`.
    pub weight_decay: f64,
    /// Bias correction `1 − β₁ᵗ`.
    pub bias_correction1: f64,
    /// Bias correction `1 − β₂ᵗ`.
    pub bias_correction2: f64,
    /// Seed of the stochastic rounding of bf16 moments (a fresh one per tensor and step;
    /// unused for f32 moments).
    pub seed: u64,
}

/// One AdamW update of `p` with gradient `grad_scale[0] · g` and moments `m`, `v` (all one
/// shape; the moments both f32 or both bf16); returns the new `(p, m, v)`, each in its own
/// dtype, detached.
///
/// # Shapes
/// `p`, `g`, `m`, `v`: `[rows, cols]` → three tensors of that shape; `grad_scale`: `[1]`, f32,
/// on the parameters' device (e.g. the clipping factor, or ones).
///
/// # Panics
/// If the shapes differ, or the moments' dtypes differ or are neither f32 nor bf16.
pub fn adamw_update(
    p: Tensor<2>,
    g: Tensor<2>,
    m: Tensor<2>,
    v: Tensor<2>,
    s: &AdamWStep,
    grad_scale: &Tensor<1>,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    assert!(p.dims() == g.dims() && p.dims() == m.dims() && p.dims() == v.dims(), "adamw_update: shapes differ");
    assert_eq!(grad_scale.dims(), [1], "adamw_update: the gradient factor is one value");
    assert!(
        m.dtype() == v.dtype() && matches!(m.dtype(), DType::F32 | DType::BF16),
        "adamw_update: moments must be both f32 or both bf16, not {:?} and {:?}",
        m.dtype(),
        v.dtype()
    );
    #[cfg(feature = "cuda")]
    if crate::is_cuda(&p.device()) {
        // The kernel takes the plain CUDA tensors; results go back to the autodiff device (with
        // the same checkpointing strategy) when the inputs were there.
        let plain = |t: &Tensor<2>| t.clone().without_autodiff();
        let scale = grad_scale.clone().without_autodiff();
        if let Some((pn, mn, vn)) = crate::cuda::optim::adamw(&plain(&p), &plain(&g), &plain(&m), &plain(&v), &scale, s) {
            let back = |t: Tensor<2>, like: &Tensor<2>| match like.gradient_checkpointing_strategy() {
                Some(strategy) => t.autodiff().with_gradient_checkpointing_strategy(strategy),
                None => t,
            };
            return (back(pn, &p), back(mn, &m), back(vn, &v));
        }
    }
    portable_adamw_update(p, g, m, v, s, grad_scale)
}

/// How many tensors one multi-tensor launch updates ([`adamw_update_all`] on CUDA). A caller that
/// passes at most this many per call, and drops each call's inputs before the next, holds the
/// old and new states of only that many tensors at once (as the per-tensor path does).
pub const UPDATE_GROUP: usize = 48;

/// The new values of one parameter's AdamW update ([`adamw_update_all`]).
#[derive(Debug, Clone)]
pub struct AdamWOutputs {
    /// The parameter (f32).
    pub p: Tensor<2>,
    /// The first moment, in the moments' dtype.
    pub m: Tensor<2>,
    /// The second moment, in the moments' dtype.
    pub v: Tensor<2>,
    /// `p` rounded to bf16 (to nearest, as a cast), when asked for: the copy a bf16 model
    /// computes with while `p` stays the f32 master.
    pub p_bf16: Option<Tensor<2>>,
}

/// One AdamW update of each `(p, g, m, v)` (as [`adamw_update`]) with the scalars of `s`, tensor
/// `k` drawing its rounding bits from `seeds[k]`; returns the new values per tensor, with bf16
/// copies of the new parameters when `bf16_copies` is set.
///
/// On CUDA, f32 parameters with gradients of one dtype and moments of one dtype (f32 or bf16)
/// take one multi-tensor launch per [`UPDATE_GROUP`] tensors (`cuda::multi_tensor`; each output
/// a fresh allocation; the copies written by the same kernel); everything else, and every other
/// backend, the per-tensor path (and a cast for each copy).
///
/// # Panics
/// As [`adamw_update`], or when `seeds` and `items` differ in length.
pub fn adamw_update_all(
    items: Vec<(Tensor<2>, Tensor<2>, Tensor<2>, Tensor<2>)>,
    s: &AdamWStep,
    seeds: &[u64],
    grad_scale: &Tensor<1>,
    bf16_copies: bool,
) -> crate::Result<Vec<AdamWOutputs>> {
    assert_eq!(items.len(), seeds.len(), "adamw_update_all: one seed per tensor");
    #[cfg(feature = "cuda")]
    if let Some(first) = items.first()
        && crate::is_cuda(&first.0.device())
    {
        let prim = |t: &Tensor<2>| t.clone().without_autodiff().try_into_primitive::<burn_cubecl::CubeBackend>().ok();
        let prims: Option<Vec<_>> = items.iter().map(|(p, g, m, v)| Some((prim(p)?, prim(g)?, prim(m)?, prim(v)?))).collect();
        let scale = grad_scale.clone().without_autodiff().try_into_primitive::<burn_cubecl::CubeBackend>().ok();
        if let (Some(prims), Some(scale)) = (prims, scale)
            && let Some(outs) = crate::cuda::multi_tensor::adamw(&prims, &scale, s, seeds, bf16_copies)?
        {
            let wrap = |t, like: &Tensor<2>| {
                let t = Tensor::<2>::from_primitive::<burn_cubecl::CubeBackend>(t);
                match like.gradient_checkpointing_strategy() {
                    Some(strategy) => t.autodiff().with_gradient_checkpointing_strategy(strategy),
                    None => t,
                }
            };
            return Ok(outs
                .into_iter()
                .zip(&items)
                .map(|(u, (lp, _, lm, lv))| AdamWOutputs {
                    p: wrap(u.p, lp),
                    m: wrap(u.m, lm),
                    v: wrap(u.v, lv),
                    p_bf16: u.p_bf16.map(|c| wrap(c, lp)),
                })
                .collect());
        }
    }
    Ok(items
        .into_iter()
        .zip(seeds)
        .map(|((p, g, m, v), &seed)| {
            let (p, m, v) = adamw_update(p, g, m, v, &AdamWStep { seed, ..*s }, grad_scale);
            let p_bf16 = bf16_copies.then(|| p.clone().cast(DType::BF16).detach());
            AdamWOutputs { p, m, v, p_bf16 }
        })
        .collect())
}

/// [`adamw_update`] as burn ops (every backend); bf16 moments are rounded on the host.
pub fn portable_adamw_update(
    p: Tensor<2>,
    g: Tensor<2>,
    m: Tensor<2>,
    v: Tensor<2>,
    s: &AdamWStep,
    grad_scale: &Tensor<1>,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let state = m.dtype();
    let (m, v) = (m.cast(DType::F32), v.cast(DType::F32));
    let g = g.cast(DType::F32);
    let factor = grad_scale.clone().cast(DType::F32).to_device(&g.device()).reshape([1, 1]);
    let g = g.mul(factor);
    let m = m.mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1);
    let v = v.mul_scalar(s.beta2) + g.square().mul_scalar(1.0 - s.beta2);
    let denom = v.clone().div_scalar(s.bias_correction2).sqrt().add_scalar(s.eps);
    let dtype = p.dtype();
    let p32 = p.cast(DType::F32).mul_scalar(1.0 - s.lr * s.weight_decay);
    let p_new = p32 - m.clone().div_scalar(s.bias_correction1).div(denom).mul_scalar(s.lr);
    let (m, v) = if state == DType::BF16 { round_moments(m, v, s.seed) } else { (m, v) };
    (p_new.cast(dtype).detach(), m.detach(), v.detach())
}

/// `m`, `v` (f32) stochastically rounded to bf16 with the draws of element `i`'s hash (`m` the
/// low 16 bits, `v` the high), on the host.
fn round_moments(m: Tensor<2>, v: Tensor<2>, seed: u64) -> (Tensor<2>, Tensor<2>) {
    let (shape, device) = (m.dims(), m.device());
    let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 moments");
    let (mh, vh) = (host(m), host(v));
    let hash = |i: usize| crate::counter_hash::counter_hash(seed, i as u32);
    let mb: Vec<half::bf16> = mh.iter().enumerate().map(|(i, &x)| to_bf16_stochastic(x, hash(i))).collect();
    let vb: Vec<half::bf16> = vh.iter().enumerate().map(|(i, &x)| to_bf16_stochastic(x, hash(i) >> 16)).collect();
    let up = |values: Vec<half::bf16>| Tensor::from_data(TensorData::new(values, shape), (&device, DType::BF16));
    (up(mb), up(vb))
}

/// `Σ ‖g‖²` over all `grads`, summed in f32, as a one-element tensor on their device (one
/// read-back gives the global norm).
///
/// # Panics
/// If `grads` is empty.
pub fn squared_norm(grads: &[Tensor<2>]) -> Tensor<1> {
    assert!(!grads.is_empty(), "squared_norm: no tensors");
    #[cfg(feature = "cuda")]
    if crate::is_cuda(&grads[0].device()) {
        let plain: Vec<Tensor<2>> = grads.iter().map(|g| g.clone().without_autodiff()).collect();
        if let Some(out) = crate::cuda::optim::squared_norm(&plain) {
            return out;
        }
    }
    portable_squared_norm(grads)
}

/// [`squared_norm`] with one kernel per group of 48 tensors on CUDA (`cuda::multi_tensor`: one
/// partial sum per 4,096 elements, in a fixed order, then one sum) instead of one per tensor;
/// elsewhere, and for dtypes other than f32 and bf16, [`squared_norm`].
///
/// # Panics
/// If `grads` is empty.
pub fn squared_norm_grouped(grads: &[Tensor<2>]) -> Tensor<1> {
    assert!(!grads.is_empty(), "squared_norm_grouped: no tensors");
    #[cfg(feature = "cuda")]
    if crate::is_cuda(&grads[0].device()) {
        let prims: Option<Vec<_>> =
            grads.iter().map(|g| g.clone().without_autodiff().try_into_primitive::<burn_cubecl::CubeBackend>().ok()).collect();
        // A failure to queue (no verified stream) falls back to the per-tensor kernels.
        if let Some(Ok(Some(partial))) = prims.map(|p| crate::cuda::multi_tensor::squared_norm_partials(&p)) {
            return Tensor::<1>::from_primitive::<burn_cubecl::CubeBackend>(partial).sum();
        }
    }
    squared_norm(grads)
}

/// [`squared_norm`] as burn ops (every backend).
pub fn portable_squared_norm(grads: &[Tensor<2>]) -> Tensor<1> {
    let squares: Vec<Tensor<1>> = grads.iter().map(|g| g.clone().cast(DType::F32).square().sum()).collect();
    Tensor::cat(squares, 0).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    fn t(values: Vec<f32>, shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), d)
    }

    fn scale(value: f32, d: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![value], [1]), d)
    }

    /// Step 3 at rate 0.01 with decay 0.1 (torch's betas and ε).
    fn third_step(seed: u64) -> AdamWStep {
        AdamWStep {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            bias_correction1: 1.0 - 0.9f64.powi(3),
            bias_correction2: 1.0 - 0.999f64.powi(3),
            seed,
        }
    }

    #[test]
    fn update_follows_the_formula_element_by_element() {
        let d = Device::flex();
        let s = third_step(7);
        let grad_scale = 0.5f64;
        let (p, g, m, v) = ([1.0f32, -2.0, 0.5, 0.0], [0.3f32, -4.0, 0.0, 1.0], [0.1f32, 0.2, -0.3, 0.0], [0.01f32, 0.5, 0.2, 0.0]);
        let (pn, mn, vn) = adamw_update(
            t(p.to_vec(), [2, 2], &d),
            t(g.to_vec(), [2, 2], &d),
            t(m.to_vec(), [2, 2], &d),
            t(v.to_vec(), [2, 2], &d),
            &s,
            &scale(0.5, &d),
        );
        let (mut pe, mut me, mut ve) = (vec![], vec![], vec![]);
        for i in 0..4 {
            let g = g[i] as f64 * grad_scale;
            let m = s.beta1 * m[i] as f64 + (1.0 - s.beta1) * g;
            let v = s.beta2 * v[i] as f64 + (1.0 - s.beta2) * g * g;
            let p =
                p[i] as f64 * (1.0 - s.lr * s.weight_decay) - s.lr * (m / s.bias_correction1) / ((v / s.bias_correction2).sqrt() + s.eps);
            pe.push(p as f32);
            me.push(m as f32);
            ve.push(v as f32);
        }
        let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-7);
        pn.into_data().assert_approx_eq::<f32>(&TensorData::new(pe, [2, 2]), tol);
        mn.into_data().assert_approx_eq::<f32>(&TensorData::new(me, [2, 2]), tol);
        vn.into_data().assert_approx_eq::<f32>(&TensorData::new(ve, [2, 2]), tol);
    }

    /// 1,100 steps of one `[4, 64]` tensor with f32 and with bf16 moments: a gradient of 1 for
    /// 100 steps, then 0.1, so that `v` must decay from ≈ 0.095 to ≈ 0.041 by steps of 10⁻³ of
    /// itself — below half a bf16 gap, where rounding to nearest leaves it at 0.095.
    #[test]
    fn bf16_moments_follow_f32_moments_where_nearest_rounding_stalls() {
        let d = Device::flex();
        let shape = [4, 64];
        let n = shape[0] * shape[1];
        let zeros = || t(vec![0.0; n], shape, &d);
        let (mut p32, mut m32, mut v32) = (zeros(), zeros(), zeros());
        let (mut p16, mut m16, mut v16) = (zeros(), zeros().cast(DType::BF16), zeros().cast(DType::BF16));
        let mut v_nearest = vec![half::bf16::ZERO; n];
        for step in 1..=1100 {
            let gv = if step <= 100 { 1.0f32 } else { 0.1 };
            let s = AdamWStep {
                lr: 1e-6,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                bias_correction1: 1.0 - 0.9f64.powi(step),
                bias_correction2: 1.0 - 0.999f64.powi(step),
                seed: step as u64,
            };
            let g = t(vec![gv; n], shape, &d);
            (p32, m32, v32) = adamw_update(p32, g.clone(), m32, v32, &s, &scale(1.0, &d));
            (p16, m16, v16) = adamw_update(p16, g, m16, v16, &s, &scale(1.0, &d));
            for v in &mut v_nearest {
                *v = half::bf16::from_f32(v.to_f32() * 0.999 + gv * gv * 0.001);
            }
        }
        assert_eq!((m16.dtype(), v16.dtype(), p16.dtype()), (DType::BF16, DType::BF16, DType::F32));
        let mean = |x: Tensor<2>| f64::from(x.cast(DType::F32).mean().into_scalar::<f32>());
        let (want, got) = (mean(v32), mean(v16));
        assert!((0.035..0.045).contains(&want), "f32 v {want}");
        assert!((got - want).abs() < 0.02 * want, "bf16 v {got} against f32 {want}");
        let nearest = f64::from(v_nearest[0].to_f32());
        assert!(nearest > 2.0 * want, "rounding to nearest stalls at {nearest}");
        let (want, got) = (mean(m32), mean(m16));
        assert!((got - want).abs() < 0.01 * want, "bf16 m {got} against f32 {want}");
        let (want, got) = (mean(p32), mean(p16));
        assert!((got - want).abs() < 0.02 * want.abs(), "p {got} against {want}");
    }

    /// Off CUDA the grouped entry points are the per-tensor ones (seed `k` for tensor `k`).
    #[test]
    fn grouped_entry_points_equal_the_per_tensor_ones() {
        let d = Device::flex();
        let s = third_step(0);
        let item = |k: f32| {
            let x = |base: f32| t(vec![base * k, -base, 0.5 * base, k], [2, 2], &d);
            (x(1.0), x(0.3), x(0.1).cast(DType::BF16), x(0.01).abs().cast(DType::BF16))
        };
        let items = vec![item(1.0), item(2.0)];
        let seeds = [5u64 << 32, 5u64 << 32 | 1];
        let grouped = adamw_update_all(items.clone(), &s, &seeds, &scale(0.5, &d), true).expect("update");
        for ((p, g, m, v), (k, got)) in items.into_iter().zip(grouped.into_iter().enumerate()) {
            let want = adamw_update(p, g, m, v, &AdamWStep { seed: seeds[k], ..s }, &scale(0.5, &d));
            let copy = got.p_bf16.expect("a bf16 copy");
            assert_eq!(copy.dtype(), DType::BF16);
            assert_eq!(copy.into_data(), want.0.clone().cast(DType::BF16).into_data(), "copy {k}");
            for (a, b) in [(got.p, want.0), (got.m, want.1), (got.v, want.2)] {
                assert_eq!(a.into_data().convert::<f32>(), b.into_data().convert::<f32>(), "tensor {k}");
            }
        }
        let grads = [t(vec![3.0, 4.0], [1, 2], &d), t(vec![1.0, 2.0, 2.0, 0.0], [2, 2], &d)];
        assert_eq!(squared_norm_grouped(&grads).into_scalar::<f32>(), squared_norm(&grads).into_scalar::<f32>());
    }

    #[test]
    fn squared_norm_sums_every_tensor() {
        let d = Device::flex();
        let grads = [t(vec![3.0, 4.0], [1, 2], &d), t(vec![1.0, 2.0, 2.0, 0.0], [2, 2], &d)];
        let got: f32 = squared_norm(&grads).into_scalar();
        assert_eq!(got, 25.0 + 9.0);
    }
}
