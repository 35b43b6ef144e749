//! The SwiGLU feed-forward: `down(silu(gate(x)) ⊙ up(x))` (the gate product is
//! `gpu_kernels::swiglu`: one kernel each way on CUDA).

use burn::module::Module;
use burn::tensor::Tensor;
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
        self.down_proj.forward(self.gated(x))
    }

    /// [`Mlp::forward`] for a recomputed forward whose output value nobody reads: `down`'s base
    /// enters by its gradient only ([`Projection::forward_gradient_only`]), so a packed `W_down`
    /// on the GPU is neither dequantized nor multiplied. Gradients as `forward`'s.
    ///
    /// # Shapes
    /// - x: `[batch, len, d]`
    /// - output: `[batch, len, d]`
    pub fn forward_gradient_only(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward_gradient_only(self.gated(x))
    }

    /// `silu(gate(x)) ⊙ up(x)`: `[batch, len, d]` → `[batch, len, ffn]`.
    fn gated(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        gpu_kernels::swiglu(gate, self.up_proj.forward(x))
    }
}
