//! One pre-norm decoder block: `h = x + attn(norm₁(x))`, `y = h + mlp(norm₂(h))`.

use burn::module::Module;
use burn::tensor::{Bool, Tensor};

use super::attention::Attention;
use super::cache::LayerCache;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RopeTables;

/// A Llama decoder block.
#[derive(Module, Debug)]
pub struct Block {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `self_attn`.
    pub self_attn: Attention,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
    /// `mlp`.
    pub mlp: Mlp,
}

impl Block {
    /// `mask` as in [`Attention::forward`].
    ///
    /// # Shapes
    /// - x: `[batch, len, d]`
    /// - output: `[batch, len, d]`
    pub fn forward(&self, x: Tensor<3>, rope: &RopeTables, mask: Option<&Tensor<4, Bool>>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), rope, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}
