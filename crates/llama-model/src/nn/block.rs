//! One pre-norm decoder block: `h = x + attn(norm₁(x))`, `y = h + mlp(norm₂(h))`.

use burn::module::Module;
use burn::tensor::{Bool, Tensor};

use super::attention::Attention;
use super::cache::LayerCache;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RopeTables;
use lora::Projection;

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

    /// The block's seven projections with their paths inside the block
    /// (`self_attn.q_proj`, …, `mlp.down_proj`), in HF's order.
    pub fn projections(&self) -> [(&'static str, &Projection); 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            ("self_attn.q_proj", &a.q_proj),
            ("self_attn.k_proj", &a.k_proj),
            ("self_attn.v_proj", &a.v_proj),
            ("self_attn.o_proj", &a.o_proj),
            ("mlp.gate_proj", &m.gate_proj),
            ("mlp.up_proj", &m.up_proj),
            ("mlp.down_proj", &m.down_proj),
        ]
    }
}
