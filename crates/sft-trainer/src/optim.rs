//! AdamW with 32-bit states (torch / bitsandbytes `AdamW32bit` math), HF's global-norm gradient
//! clipping, and an optional "paged" mode that keeps the states in host memory.
//!
//! For a parameter `p` with gradient `g` at step `t` (1-based), rate `η`, decay `λ`:
//! `p ← p·(1 − ηλ)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
//! Clipping: `N = √Σ‖g‖²`; if `N > c`, every `g ← g · c / (N + 10⁻⁶)`.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    /// Updates made so far.
    pub step: usize,
}

fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))
}

impl AdamW {
    /// Zero states for parameters of the given shapes.
    pub fn new(config: AdamWConfig, shapes: &[[usize; 2]], device: &Device, paged: bool) -> Self {
        let moments = shapes
            .iter()
            .map(|&shape| {
                if paged {
                    let n = shape[0] * shape[1];
                    Moments::Host { m: vec![0.0; n], v: vec![0.0; n], shape }
                } else {
                    Moments::Device { m: Tensor::zeros(shape, device), v: Tensor::zeros(shape, device) }
                }
            })
            .collect();
        Self { config, moments, step: 0 }
    }

    /// One update with rate `lr`; `params` and `grads` are in the order given to [`AdamW::new`].
    /// Returns the new parameter values (detached).
    ///
    /// # Errors
    /// Host/device transfer failures.
    pub fn update(&mut self, lr: f64, params: Vec<Tensor<2>>, grads: Vec<Tensor<2>>) -> Result<Vec<Tensor<2>>> {
        assert_eq!(params.len(), self.moments.len(), "one gradient per parameter");
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        let mut out = Vec::with_capacity(params.len());
        for ((p, g), state) in params.into_iter().zip(grads).zip(self.moments.iter_mut()) {
            let device = p.device();
            let (m, v) = match state {
                Moments::Device { m, v } => (m.clone(), v.clone()),
                Moments::Host { m, v, shape } => (
                    Tensor::from_data(TensorData::new(m.clone(), *shape), &device),
                    Tensor::from_data(TensorData::new(v.clone(), *shape), &device),
                ),
            };
            let g = g.cast(burn::tensor::DType::F32);
            let m = m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
            let v = v.mul_scalar(c.beta2) + g.square().mul_scalar(1.0 - c.beta2);
            let denom = v.clone().div_scalar(bc2).sqrt().add_scalar(c.eps);
            let dtype = p.dtype();
            let p32 = p.cast(burn::tensor::DType::F32).mul_scalar(1.0 - lr * c.weight_decay);
            let p_new = p32 - m.clone().div_scalar(bc1).div(denom).mul_scalar(lr);
            out.push(p_new.cast(dtype).detach());
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
                    m: Tensor::from_data(TensorData::new(m, shape), device),
                    v: Tensor::from_data(TensorData::new(v, shape), device),
                },
                Moments::Host { .. } => Moments::Host { m, v, shape },
            };
        }
        self.step = step;
        Ok(())
    }
}

/// Global L2 norm of the gradients, and the gradients clipped to `max_norm` (HF/torch
/// `clip_grad_norm_`: scaled by `max_norm / (N + 1e-6)` when `N > max_norm`).
///
/// # Errors
/// Device transfer failures.
pub fn clip_global_norm(grads: Vec<Tensor<2>>, max_norm: Option<f64>) -> Result<(f64, Vec<Tensor<2>>)> {
    // One device sum, one read-back.
    let squares: Vec<Tensor<1>> = grads.iter().map(|g| g.clone().cast(burn::tensor::DType::F32).square().sum()).collect();
    let sq: f32 = if squares.is_empty() { 0.0 } else { Tensor::cat(squares, 0).sum().into_scalar() };
    let norm = (sq as f64).sqrt();
    let grads = match max_norm {
        Some(max) if max > 0.0 && norm > max => {
            let coef = max / (norm + 1e-6);
            grads.into_iter().map(|g| g.mul_scalar(coef)).collect()
        }
        _ => grads,
    };
    Ok((norm, grads))
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
        let mut opt = AdamW::new(AdamWConfig::default(), &[[1, 3]], &d, false);
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
        let mut a = AdamW::new(cfg, &[[1, 4]], &d, false);
        let mut b = AdamW::new(cfg, &[[1, 4]], &d, true);
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
    fn clipping_scales_to_max_norm() {
        let d = Device::flex();
        let (norm, clipped) = clip_global_norm(vec![t(vec![3.0], &d), t(vec![4.0], &d)], Some(1.0)).expect("clip");
        assert!((norm - 5.0).abs() < 1e-9);
        let a = host(clipped[0].clone()).expect("a")[0];
        assert!((a - 3.0 / (5.0 + 1e-6)) as f64 <= 1e-6);
    }
}
