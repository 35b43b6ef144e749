//! The LoRA side path: `Δy = s · (dropout(x) · Aᵀ) · Bᵀ`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{DType, Device, Distribution, Tensor};
use gpu_kernels::env_switch::EnvSwitch;

/// `KINDLING_LORA=bf16`: on the fused (CUDA) path, the side path's products in bf16 — the input
/// kept in bf16, the f32 factors cast to bf16 (their gradients come back in f32), as HF's bf16
/// autocast computes them — to measure that setting against the default f32 path on a device.
static BF16_SIDE_PATH: EnvSwitch = EnvSwitch::new("KINDLING_LORA", "bf16");

/// One adapter: two low-rank factors and a scale.
///
/// Shapes follow peft: `a: [r, in]`, `b: [out, r]`.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// Down projection `A: [r, in]`.
    pub a: Param<Tensor<2>>,
    /// Up projection `B: [out, r]`.
    pub b: Param<Tensor<2>>,
    /// Input dropout (active only on autodiff devices in training mode).
    pub dropout: Dropout,
    /// `s = α/r` (or `α/√r`).
    pub scaling: f64,
    /// When false the adapter contributes nothing (peft's `disable_adapter`).
    pub enabled: bool,
}

impl LoraAdapter {
    /// A fresh adapter initialized as peft does: `A ~ U(-1/√in, 1/√in)` (Kaiming-uniform with
    /// `a = √5`), `B = 0`, so the wrapped projection's output is unchanged at step 0.
    ///
    /// # Panics
    /// If `dropout` is not in `[0, 1)`.
    pub fn init(d_in: usize, d_out: usize, r: usize, scaling: f64, dropout: f64, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::<2>::random([r, d_in], Distribution::Uniform(-bound, bound), device);
        let b = Tensor::<2>::zeros([d_out, r], device);
        Self::from_tensors(a, b, scaling, dropout)
    }

    /// An adapter from existing factors `a: [r, in]`, `b: [out, r]`.
    ///
    /// # Panics
    /// If the ranks of `a` and `b` differ, or `dropout` is not in `[0, 1)`.
    pub fn from_tensors(a: Tensor<2>, b: Tensor<2>, scaling: f64, dropout: f64) -> Self {
        assert_eq!(a.dims()[0], b.dims()[1], "LoRA factors disagree on the rank");
        Self { a: Param::from_tensor(a), b: Param::from_tensor(b), dropout: DropoutConfig::new(dropout).init(), scaling, enabled: true }
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.a.shape().dims::<2>()[0]
    }

    /// The adapter's contribution for input `x`, computed in the factors' dtype (as peft does:
    /// the input is cast to `A`'s dtype, e.g. bf16 activations through f32 factors) and returned
    /// in `x`'s dtype.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn delta<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let y = self.delta_unrounded(x);
        if y.dtype() == dtype { y } else { y.cast(dtype) }
    }

    /// [`LoraAdapter::delta`] left in the factors' dtype (for [`gpu_kernels::add_cast`] to join
    /// the base's output with one rounding).
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn delta_unrounded<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (dtype, a, b) = (x.dtype(), self.a.val(), self.b.val());
        // CUDA training: one kernel casts, drops and scales (the path is linear in x, so `s`
        // moves to its input), and no mask is kept for the backward.
        let autocast = BF16_SIDE_PATH.is_on() && dtype == DType::BF16 && a.dtype() == DType::F32;
        let side = if autocast { DType::BF16 } else { a.dtype() };
        match gpu_kernels::dropout::fused_dropout(x.clone(), self.dropout.prob, self.scaling, side) {
            Some(scaled) => {
                let (a, b) = if autocast { (a.cast(side), b.cast(side)) } else { (a, b) };
                crate::matmul::linear(crate::matmul::linear(scaled, a), b)
            }
            None => {
                let x = self.dropout.forward(if a.dtype() == dtype { x } else { x.cast(a.dtype()) });
                crate::matmul::linear(crate::matmul::linear(x, a), b).mul_scalar(self.scaling)
            }
        }
    }

    /// The dense weight update `s · B · A`, shape `[out, in]` (for merging).
    pub fn delta_weight(&self) -> Tensor<2> {
        gpu_kernels::gemm(self.b.val(), self.a.val(), false, false).mul_scalar(self.scaling)
    }

    /// Trainable parameter count `r · (in + out)`.
    pub fn num_trainable(&self) -> usize {
        let [r, d_in] = self.a.shape().dims::<2>();
        let [d_out, _] = self.b.shape().dims::<2>();
        r * (d_in + d_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, FloatDType, Tolerance};

    #[test]
    fn bf16_inputs_run_through_f32_factors_and_come_back_in_bf16() {
        let device = Device::flex();
        let a = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device);
        let adapter = LoraAdapter::from_tensors(a, b, 0.5, 0.0);
        let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let want = adapter.delta(x.clone().cast(FloatDType::BF16).cast(FloatDType::F32));
        let got = adapter.delta(x.cast(FloatDType::BF16));
        assert_eq!((got.dims(), got.dtype()), ([2, 3, 6], DType::BF16));
        got.cast(FloatDType::F32).into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-2, 1e-2));
    }
}
