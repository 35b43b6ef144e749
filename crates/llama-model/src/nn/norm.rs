//! RMSNorm as in HF Llama: `y = w ⊙ x / √(mean(x²) + ε)`, statistics in f32
//! (`gpu_kernels::rms_norm`: one kernel forward and one backward on CUDA).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

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

    /// Normalizes over the last axis; statistics in f32 whatever the input dtype, the result cast
    /// back to it before the scale (HF's order).
    ///
    /// # Shapes
    /// - x: `[..., d]`
    /// - output: `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        gpu_kernels::rms_norm(x, self.weight.val(), self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device, Distribution, Tolerance};

    #[test]
    fn matches_the_formula_in_f32_and_bf16() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 3, 1024], Distribution::Normal(0.0, 2.0), &device);
        let w = Tensor::<1>::random([1024], Distribution::Normal(1.0, 0.2), &device);
        let norm = RmsNorm::new(w.clone(), 1e-5);
        let want = x.clone() / (x.clone().square().mean_dim(2).add_scalar(1e-5)).sqrt() * w.clone().unsqueeze::<3>();
        norm.forward(x.clone()).into_data().assert_approx_eq::<f32>(&want.clone().into_data(), Tolerance::rel_abs(1e-5, 1e-6));
        let bf16 = RmsNorm::new(w.cast(DType::BF16), 1e-5).forward(x.cast(DType::BF16));
        assert_eq!(bf16.dtype(), DType::BF16);
        bf16.cast(DType::F32).into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(2e-2, 2e-2));
    }
}
