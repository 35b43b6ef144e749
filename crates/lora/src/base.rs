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
        let y = crate::matmul::linear(x, self.weight.val());
        match &self.bias {
            Some(b) => y + b.val().unsqueeze::<D>(),
            None => y,
        }
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.shape().dims::<2>()
    }
}

/// A base projection: dense, or packed 4-bit (QLoRA).
#[derive(Module, Debug)]
pub enum BaseLinear {
    /// Full-precision weights.
    Dense(DenseLinear),
    /// bitsandbytes-layout NF4/FP4 weights, dequantized on the fly; never trained.
    Nf4(nf4_quant::Nf4Linear),
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
            BaseLinear::Nf4(l) => l.forward(x),
        }
    }

    /// The base output by its gradient only (see [`nf4_quant::Nf4Linear::forward_gradient_only`]):
    /// a packed base on the GPU leaves its value out (zeros); any other base is [`BaseLinear::forward`].
    /// The input's gradient is the same.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward_gradient_only<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            BaseLinear::Dense(l) => l.forward(x),
            BaseLinear::Nf4(l) => l.forward_gradient_only(x),
        }
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        match self {
            BaseLinear::Dense(l) => l.dims(),
            BaseLinear::Nf4(l) => [l.d_output(), l.d_input()],
        }
    }

    /// The dense weight `[out, in]` (dequantized for packed bases).
    pub fn dense_weight(&self) -> Tensor<2> {
        match self {
            BaseLinear::Dense(l) => l.weight.val(),
            BaseLinear::Nf4(l) => l.dequantize_weight(),
        }
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<Tensor<1>> {
        match self {
            BaseLinear::Dense(l) => l.bias.as_ref().map(|b| b.val()),
            BaseLinear::Nf4(l) => l.bias.as_ref().map(|b| b.val()),
        }
    }
}
