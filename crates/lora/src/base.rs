//! The frozen base projections an adapter can sit on.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

/// A dense projection with HF's weight layout `[out, in]`: `y = x · Wᵀ + b`.
#[derive(Module, Debug)]
pub struct DenseLinear {
    /// Weight `[out, in]`.
    pub weight: Param<Tensor<2>>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
}

impl DenseLinear {
    /// A projection from a weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self { weight: Param::from_tensor(weight), bias: bias.map(Param::from_tensor) }
    }

    /// `y = x · Wᵀ + b`.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        burn::tensor::module::linear(x, self.weight.val().transpose(), self.bias.as_ref().map(|b| b.val()))
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.shape().dims::<2>()
    }
}

/// A base projection: dense, or packed NF4 (added by the QLoRA path).
#[derive(Module, Debug)]
pub enum BaseLinear {
    /// Full-precision weights.
    Dense(DenseLinear),
}

impl BaseLinear {
    /// The base output.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            BaseLinear::Dense(l) => l.forward(x),
        }
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        match self {
            BaseLinear::Dense(l) => l.dims(),
        }
    }

    /// The dense weight `[out, in]` (dequantized for packed bases).
    pub fn dense_weight(&self) -> Tensor<2> {
        match self {
            BaseLinear::Dense(l) => l.weight.val(),
        }
    }
}
