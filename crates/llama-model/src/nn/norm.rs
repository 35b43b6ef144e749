//! RMSNorm as in HF Llama: `y = w ⊙ x / √(mean(x²) + ε)`, computed in f32.

use burn::module::{Module, Param};
use burn::tensor::{DType, Tensor};

/// Root-mean-square layer norm over the last axis.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Scale `w`, `[d]`.
    pub weight: Param<Tensor<1>>,
    /// `ε`.
    pub eps: f64,
}

impl RmsNorm {
    /// A norm with the given scale.
    pub fn new(weight: Tensor<1>, eps: f64) -> Self {
        Self { weight: Param::from_tensor(weight), eps }
    }

    /// Normalizes over the last axis; statistics in f32 whatever the input dtype.
    ///
    /// # Shapes
    /// - x: `[..., d]`
    /// - output: `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x32 = if dtype == DType::F32 { x } else { x.cast(DType::F32) };
        let variance = x32.clone().square().mean_dim(D - 1);
        let normed = x32 * variance.add_scalar(self.eps).sqrt().recip();
        let normed = if dtype == DType::F32 { normed } else { normed.cast(dtype) };
        normed * self.weight.val().unsqueeze::<D>()
    }
}
