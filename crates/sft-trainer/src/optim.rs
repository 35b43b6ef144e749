//! AdamW (torch / bitsandbytes `AdamW32bit` math) with its states in f32 on the device, in f32
//! in host memory ("paged", streamed to the device per update), or in bf16 on the device
//! (stochastically rounded, half the memory: `gpu_kernels::stochastic_round`), and HF's
//! global-norm gradient clipping. The arithmetic is `gpu_kernels::optim` (on CUDA one kernel
//! per group of `gpu_kernels::UPDATE_GROUP` tensors), always in f32.
//!
//! For a parameter `p` with gradient `g` at step `t` (1-based), rate `η`, decay `λ`:
//! `p ← p·(1 − ηλ)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
//! Clipping (torch's `clip_grad_norm_`): `N = √Σ‖g‖²`, every `g ← g · min(c / (N + 10⁻⁶), 1)`,
//! the factor computed on the device in f32 and applied inside the update's kernel, so that a
//! step queues its updates without waiting for the norm; the norm is read afterwards.

use burn::tensor::{DType, Device, Tensor, TensorData};
use gpu_kernels::env_switch::EnvSwitch;
use gpu_kernels::{AdamWStep, UPDATE_GROUP, adamw_update, squared_norm, squared_norm_grouped};
use serde::{Deserialize, Serialize};

use crate::{Error, OptimizerKind, Result};

/// `KINDLING_OPTIM=per-tensor`: one kernel per tensor for the gradient norm and the updates of
/// device-resident moments, instead of one per group of [`gpu_kernels::UPDATE_GROUP`] tensors
/// (`gpu_kernels::adamw_update_all`, `squared_norm_grouped`; the same arithmetic). On CUDA the
/// grouped launches take ≈ 7 % off an all-linear Llama-3-8B step on the H200
/// (`docs/benchmarks.md`, sessions 20–21); this switch is for comparing the two.
static PER_TENSOR: EnvSwitch = EnvSwitch::new("KINDLING_OPTIM", "per-tensor");

/// Optimizer hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// The update kernels' scalars for update `t` (1-based) at rate `lr`: the bias corrections
    /// `1 − βᵗ`; seed 0 (each tensor gets its own).
    pub fn step(&self, lr: f64, t: usize) -> AdamWStep {
        let t = t as i32;
        AdamWStep {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            bias_correction1: 1.0 - self.beta1.powi(t),
            bias_correction2: 1.0 - self.beta2.powi(t),
            seed: 0,
        }
    }
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Where the moment estimates live.
#[derive(Debug, Clone)]
enum Moments {
    /// On the parameters' device.
    Device { m: Tensor<2>, v: Tensor<2> },
    /// In host memory, streamed to the device for each update ("paged").
    Host { m: Vec<f32>, v: Vec<f32>, shape: [usize; 2] },
}

/// AdamW over a fixed list of 2-D parameters.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    moments: Vec<Moments>,
    /// The dtype of device-resident moments (f32, or bf16 with stochastic rounding).
    dtype: DType,
    /// Updates made so far.
    pub step: usize,
}

/// `t` rounded to bf16 (to nearest, as autocast casts it), detached: the copy a bf16 model
/// computes with.
pub(crate) fn bf16_copy(t: &Tensor<2>) -> Tensor<2> {
    t.clone().cast(DType::BF16).detach()
}

fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))
}

impl AdamW {
    /// Zero states for parameters of the given shapes, placed and typed as `kind` says.
    pub fn new(config: AdamWConfig, shapes: &[[usize; 2]], device: &Device, kind: OptimizerKind) -> Self {
        let dtype = if kind == OptimizerKind::AdamwBf16 { DType::BF16 } else { DType::F32 };
        let moments = shapes
            .iter()
            .map(|&shape| {
                if kind == OptimizerKind::PagedAdamw32bit {
                    let n = shape[0] * shape[1];
                    Moments::Host { m: vec![0.0; n], v: vec![0.0; n], shape }
                } else {
                    let zeros = || Tensor::<2>::zeros(shape, (device, dtype));
                    Moments::Device { m: zeros(), v: zeros() }
                }
            })
            .collect();
        Self { config, moments, dtype, step: 0 }
    }

    /// One update with rate `lr`; `params` and `grads` are in the order given to [`AdamW::new`].
    /// Returns the new parameter values (detached).
    ///
    /// # Errors
    /// Host/device transfer failures.
    pub fn update(&mut self, lr: f64, params: Vec<Tensor<2>>, grads: Vec<Tensor<2>>) -> Result<Vec<Tensor<2>>> {
        let Some(first) = params.first() else { return self.update_scaled(lr, params, grads, None) };
        let one = Tensor::<1>::ones([1], (&first.device(), DType::F32));
        self.update_scaled(lr, params, grads, Some(&one))
    }

    /// [`AdamW::update`] with every gradient multiplied by `grad_scale[0]` first (`[1]`, f32, on
    /// the parameters' device: [`Clip::factor`]), inside the update's kernels on CUDA — nothing
    /// is read back (but for host-resident moments). `None` only without parameters.
    ///
    /// # Errors
    /// Host/device transfer failures.
    pub fn update_scaled(
        &mut self,
        lr: f64,
        params: Vec<Tensor<2>>,
        grads: Vec<Tensor<2>>,
        grad_scale: Option<&Tensor<1>>,
    ) -> Result<Vec<Tensor<2>>> {
        Ok(self.update_inner(lr, params, grads, grad_scale, false)?.into_iter().map(|(p, _)| p).collect())
    }

    /// [`AdamW::update_scaled`] of f32 masters, also returning the new values rounded to bf16
    /// (to nearest, as a cast: the copies a bf16 model computes with), written by the update's
    /// own kernel on CUDA.
    ///
    /// # Errors
    /// Host/device transfer failures.
    pub fn update_with_bf16_copies(
        &mut self,
        lr: f64,
        params: Vec<Tensor<2>>,
        grads: Vec<Tensor<2>>,
        grad_scale: &Tensor<1>,
    ) -> Result<(Vec<Tensor<2>>, Vec<Tensor<2>>)> {
        let updated = self.update_inner(lr, params, grads, Some(grad_scale), true)?;
        let mut copies = Vec::with_capacity(updated.len());
        let mut out = Vec::with_capacity(updated.len());
        for (p, copy) in updated {
            copies.push(copy.unwrap_or_else(|| bf16_copy(&p)));
            out.push(p);
        }
        Ok((out, copies))
    }

    /// The update; each new parameter with its bf16 copy when `copies` and the path makes one.
    fn update_inner(
        &mut self,
        lr: f64,
        params: Vec<Tensor<2>>,
        grads: Vec<Tensor<2>>,
        grad_scale: Option<&Tensor<1>>,
        copies: bool,
    ) -> Result<Vec<(Tensor<2>, Option<Tensor<2>>)>> {
        assert_eq!(params.len(), self.moments.len(), "one gradient per parameter");
        assert!(grad_scale.is_some() || params.is_empty(), "a gradient factor for every update");
        self.step += 1;
        let step = self.config.step(lr, self.step);
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let scale = grad_scale.ok_or_else(|| Error::Tensor("no gradient factor".into()))?;
        // The rounding draws of bf16 states: one stream per (step, tensor), so a resumed run
        // draws what the uninterrupted one did.
        let seeds: Vec<u64> = (0..params.len()).map(|index| (self.step as u64) << 32 | index as u64).collect();
        if !PER_TENSOR.is_on() && self.moments.iter().all(|s| matches!(s, Moments::Device { .. })) {
            // A group at a time, its states replaced before the next group's outputs are
            // allocated: the old moments and the gradients are freed as the update goes, so
            // that only one group's old and new states coexist (as on the per-tensor path).
            let mut out = Vec::with_capacity(params.len());
            let (mut params, mut grads) = (params.into_iter(), grads.into_iter());
            for (start, states) in (0..self.moments.len()).step_by(UPDATE_GROUP).zip(self.moments.chunks_mut(UPDATE_GROUP)) {
                let items = states
                    .iter()
                    .zip(params.by_ref())
                    .zip(grads.by_ref())
                    .map(|((state, p), g)| match state {
                        Moments::Device { m, v } => (p, g, m.clone(), v.clone()),
                        Moments::Host { .. } => unreachable!("checked above"),
                    })
                    .collect();
                let seeds = &seeds[start..start + states.len()];
                let updated =
                    gpu_kernels::adamw_update_all(items, &step, seeds, scale, copies).map_err(|e| Error::Tensor(e.to_string()))?;
                for (u, state) in updated.into_iter().zip(states.iter_mut()) {
                    *state = Moments::Device { m: u.m, v: u.v };
                    out.push((u.p, u.p_bf16));
                }
            }
            return Ok(out);
        }
        let mut out = Vec::with_capacity(params.len());
        for (index, ((p, g), state)) in params.into_iter().zip(grads).zip(self.moments.iter_mut()).enumerate() {
            let step = AdamWStep { seed: seeds[index], ..step };
            let device = p.device();
            let (m, v) = match state {
                Moments::Device { m, v } => (m.clone(), v.clone()),
                Moments::Host { m, v, shape } => (
                    Tensor::from_data(TensorData::new(m.clone(), *shape), &device),
                    Tensor::from_data(TensorData::new(v.clone(), *shape), &device),
                ),
            };
            let (p_new, m, v) = adamw_update(p, g, m, v, &step, scale);
            out.push((p_new, None));
            *state = match state {
                Moments::Device { .. } => Moments::Device { m, v },
                Moments::Host { shape, .. } => Moments::Host { m: host(m)?, v: host(v)?, shape: *shape },
            };
        }
        Ok(out)
    }

    /// The moment estimates as host vectors `(m, v)` per parameter, for checkpoints.
    ///
    /// # Errors
    /// Device transfer failures.
    pub fn export(&self) -> Result<Vec<(Vec<f32>, Vec<f32>, [usize; 2])>> {
        self.moments
            .iter()
            .map(|s| match s {
                Moments::Device { m, v } => Ok((host(m.clone())?, host(v.clone())?, m.dims())),
                Moments::Host { m, v, shape } => Ok((m.clone(), v.clone(), *shape)),
            })
            .collect()
    }

    /// Restores states exported by [`AdamW::export`].
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the shapes do not match the parameters.
    pub fn import(&mut self, states: Vec<(Vec<f32>, Vec<f32>, [usize; 2])>, step: usize, device: &Device) -> Result<()> {
        if states.len() != self.moments.len() {
            return Err(Error::Checkpoint(format!("optimizer state has {} tensors, the model {}", states.len(), self.moments.len())));
        }
        for (slot, (m, v, shape)) in self.moments.iter_mut().zip(states) {
            let expected = match slot {
                Moments::Device { m, .. } => m.dims(),
                Moments::Host { shape, .. } => *shape,
            };
            if expected != shape || m.len() != shape[0] * shape[1] || v.len() != m.len() {
                return Err(Error::Checkpoint(format!("optimizer state shape {shape:?} does not match parameter {expected:?}")));
            }
            *slot = match slot {
                Moments::Device { .. } => Moments::Device {
                    m: Tensor::from_data(TensorData::new(m, shape).convert_dtype(self.dtype), (device, self.dtype)),
                    v: Tensor::from_data(TensorData::new(v, shape).convert_dtype(self.dtype), (device, self.dtype)),
                },
                Moments::Host { .. } => Moments::Host { m, v, shape },
            };
        }
        self.step = step;
        Ok(())
    }
}

/// The global gradient norm and its clipping factor, both still on the device.
#[derive(Debug, Clone)]
pub struct Clip {
    /// `Σ‖g‖²`, `[1]` f32.
    pub squared_norm: Tensor<1>,
    /// `min(c / (N + 10⁻⁶), 1)` with `N = √Σ‖g‖²` (1 without a `c`), `[1]` f32: what
    /// [`AdamW::update_scaled`] multiplies every gradient by.
    pub factor: Tensor<1>,
}

impl Clip {
    /// `N`, read back (waits for the device).
    ///
    /// # Errors
    /// Device transfer failures.
    pub fn norm(&self) -> Result<f64> {
        let sq =
            self.squared_norm.clone().into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))?;
        Ok(f64::from(sq.first().copied().unwrap_or(0.0)).sqrt())
    }
}

/// The global L2 norm of `grads` and the factor that clips them to `max_norm` (torch's
/// `clip_grad_norm_`, in f32): one reduction and a few one-element ops on `device`, no read-back.
pub fn clip(grads: &[Tensor<2>], max_norm: Option<f64>, device: &Device) -> Clip {
    let squared_norm = match grads {
        [] => Tensor::<1>::zeros([1], (device, DType::F32)),
        _ if PER_TENSOR.is_on() => squared_norm(grads),
        _ => squared_norm_grouped(grads),
    };
    let factor = match max_norm {
        Some(max) if max > 0.0 => {
            let norm = squared_norm.clone().sqrt();
            Tensor::<1>::full([1], max, (&norm.device(), DType::F32)).div(norm.add_scalar(1e-6)).clamp_max(1.0)
        }
        _ => Tensor::<1>::ones([1], (&squared_norm.device(), DType::F32)),
    };
    Clip { squared_norm, factor }
}

/// Global L2 norm of the gradients, and the gradients clipped to `max_norm` (see [`clip`]).
///
/// # Errors
/// Device transfer failures.
pub fn clip_global_norm(grads: Vec<Tensor<2>>, max_norm: Option<f64>, device: &Device) -> Result<(f64, Vec<Tensor<2>>)> {
    let c = clip(&grads, max_norm, device);
    let grads = grads.into_iter().map(|g| g.mul(c.factor.clone().reshape([1, 1]))).collect();
    Ok((c.norm()?, grads))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: Vec<f32>, d: &Device) -> Tensor<2> {
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [1, n]), d)
    }

    #[test]
    fn first_step_moves_each_weight_by_about_lr() {
        // At t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε) ≈ ±lr.
        let d = Device::flex();
        let mut opt = AdamW::new(AdamWConfig::default(), &[[1, 3]], &d, OptimizerKind::Adamw32bit);
        let p = t(vec![1.0, -2.0, 0.5], &d);
        let g = t(vec![0.3, -4.0, 0.0], &d);
        let out = opt.update(0.1, vec![p], vec![g]).expect("update");
        let v = host(out[0].clone()).expect("host");
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6 && (v[2] - 0.5).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn paged_and_device_states_agree_over_steps() {
        let d = Device::flex();
        let cfg = AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() };
        let mut a = AdamW::new(cfg, &[[1, 4]], &d, OptimizerKind::Adamw32bit);
        let mut b = AdamW::new(cfg, &[[1, 4]], &d, OptimizerKind::PagedAdamw32bit);
        let (mut pa, mut pb) = (t(vec![0.1, 0.2, -0.3, 0.4], &d), t(vec![0.1, 0.2, -0.3, 0.4], &d));
        for step in 0..5 {
            let g = t(vec![0.5 - step as f32 * 0.1, 0.2, -0.1, 0.05 * step as f32], &d);
            pa = a.update(1e-2, vec![pa], vec![g.clone()]).expect("a").remove(0);
            pb = b.update(1e-2, vec![pb], vec![g]).expect("b").remove(0);
        }
        assert_eq!(host(pa).expect("a"), host(pb).expect("b"));
        assert_eq!(a.export().expect("a"), b.export().expect("b"));
    }

    #[test]
    fn updates_in_groups_equal_one_update_per_tensor() {
        // More tensors than one group holds, bf16 moments: tensor k of step t must draw its
        // rounding bits from seed `t << 32 | k` whichever group it falls in.
        let d = Device::flex();
        let n = 2 * UPDATE_GROUP + 3;
        let cfg = AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() };
        let mut opt = AdamW::new(cfg, &vec![[1, 3]; n], &d, OptimizerKind::AdamwBf16);
        let value = |k: usize, j: usize, s: f32| ((k * 3 + j) as f32 * 0.37 + s).sin();
        let params: Vec<Tensor<2>> = (0..n).map(|k| t((0..3).map(|j| value(k, j, 0.0)).collect(), &d)).collect();
        let grads = |step: usize| -> Vec<Tensor<2>> { (0..n).map(|k| t((0..3).map(|j| value(k, j, step as f32)).collect(), &d)).collect() };
        let one = Tensor::<1>::ones([1], (&d, DType::F32));
        let mut expected: Vec<(Tensor<2>, Tensor<2>, Tensor<2>)> = params
            .iter()
            .map(|p| (p.clone(), Tensor::zeros([1, 3], (&d, DType::BF16)), Tensor::zeros([1, 3], (&d, DType::BF16))))
            .collect();
        let mut got = params;
        for step in 1..=2usize {
            got = opt.update(1e-2, got, grads(step)).expect("grouped update");
            let s = cfg.step(1e-2, step);
            expected = expected
                .into_iter()
                .zip(grads(step))
                .enumerate()
                .map(|(k, ((p, m, v), g))| adamw_update(p, g, m, v, &AdamWStep { seed: (step as u64) << 32 | k as u64, ..s }, &one))
                .collect();
        }
        let states = opt.export().expect("export");
        for (k, ((p, m, v), (p_got, (m_got, v_got, _)))) in expected.into_iter().zip(got.into_iter().zip(states)).enumerate() {
            assert_eq!(host(p_got).expect("p"), host(p).expect("p"), "parameter {k}");
            assert_eq!((m_got, v_got), (host(m).expect("m"), host(v).expect("v")), "moments {k}");
        }
    }

    #[test]
    fn no_parameters_need_no_factor() {
        let d = Device::flex();
        let mut opt = AdamW::new(AdamWConfig::default(), &[], &d, OptimizerKind::AdamwBf16);
        assert!(opt.update(0.1, vec![], vec![]).expect("empty update").is_empty());
        assert_eq!(opt.step, 1);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let d = Device::flex();
        let (norm, clipped) = clip_global_norm(vec![t(vec![3.0], &d), t(vec![4.0], &d)], Some(1.0), &d).expect("clip");
        assert!((norm - 5.0).abs() < 1e-9);
        let a = host(clipped[0].clone()).expect("a")[0];
        assert!((a - 3.0 / (5.0 + 1e-6)).abs() <= 1e-6, "{a}");
        // Below the maximum, and without one, the factor is exactly 1.
        let one = |max| host(clip(&[t(vec![0.1], &d)], max, &d).factor.reshape([1, 1])).expect("factor")[0];
        assert_eq!((one(Some(1.0)), one(None)), (1.0, 1.0));
    }

    #[test]
    fn scaled_update_equals_clipping_then_updating() {
        let d = Device::flex();
        let grads = vec![t(vec![3.0, -1.0], &d), t(vec![4.0, 0.5], &d)];
        let params = vec![t(vec![0.1, 0.2], &d), t(vec![-0.3, 0.4], &d)];
        let cfg = AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() };
        let c = clip(&grads, Some(1.0), &d);
        let (norm, clipped) = clip_global_norm(grads.clone(), Some(1.0), &d).expect("clip");
        assert_eq!(c.norm().expect("norm"), norm);
        assert!((norm - (9.0f64 + 1.0 + 16.0 + 0.25).sqrt()).abs() < 1e-6, "{norm}");
        let mut a = AdamW::new(cfg, &[[1, 2], [1, 2]], &d, OptimizerKind::Adamw32bit);
        let mut b = AdamW::new(cfg, &[[1, 2], [1, 2]], &d, OptimizerKind::Adamw32bit);
        let fused = a.update_scaled(0.1, params.clone(), grads, Some(&c.factor)).expect("a");
        let plain = b.update(0.1, params, clipped).expect("b");
        for (x, y) in fused.into_iter().zip(plain) {
            let (x, y) = (host(x).expect("x"), host(y).expect("y"));
            assert!(x.iter().zip(&y).all(|(x, y)| (x - y).abs() <= 1e-6), "{x:?} vs {y:?}");
        }
    }
}
