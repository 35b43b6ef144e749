//! The LoRA side path: `Δy = s · (dropout(x) · Aᵀ) · Bᵀ`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor};

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
        Self {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
            enabled: true,
        }
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.a.shape().dims::<2>()[0]
    }

    /// The adapter's contribution for input `x`.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn delta<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = self.dropout.forward(x);
        let h = crate::matmul::linear(x, self.a.val());
        crate::matmul::linear(h, self.b.val()).mul_scalar(self.scaling)
    }

    /// The dense weight update `s · B · A`, shape `[out, in]` (for merging).
    pub fn delta_weight(&self) -> Tensor<2> {
        self.b.val().matmul(self.a.val()).mul_scalar(self.scaling)
    }

    /// Trainable parameter count `r · (in + out)`.
    pub fn num_trainable(&self) -> usize {
        let [r, d_in] = self.a.shape().dims::<2>();
        let [d_out, _] = self.b.shape().dims::<2>();
        r * (d_in + d_out)
    }
}
