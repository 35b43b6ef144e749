//! The SwiGLU feed-forward: `down(silu(gate(x)) ⊙ up(x))`.

use burn::module::Module;
use burn::tensor::{Tensor, activation::silu};
use lora::Projection;

/// Llama's gated MLP.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `gate_proj`: `[ffn, d]`.
    pub gate_proj: Projection,
    /// `up_proj`: `[ffn, d]`.
    pub up_proj: Projection,
    /// `down_proj`: `[d, ffn]`.
    pub down_proj: Projection,
}

impl Mlp {
    /// # Shapes
    /// - x: `[batch, len, d]`
    /// - output: `[batch, len, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
