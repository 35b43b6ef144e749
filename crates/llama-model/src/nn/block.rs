//! One pre-norm decoder block: `h = x + attn(norm₁(x))`, `y = h + mlp(norm₂(h))`.
//!
//! Decoding one position with packed projections on the GPU takes the fused route
//! ([`gpu_kernels::nf4_gemv_fused`]: five launches for the projections, norms, SwiGLU and
//! residuals); everything else runs the layer's ops one by one.

use burn::module::Module;
use burn::tensor::{Bool, DType, Tensor};
use gpu_kernels::env_switch::EnvSwitch;
use gpu_kernels::{GemvEpilogue, PackedNf4, nf4_gemv_fused};

use super::attention::Attention;
use super::cache::LayerCache;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RopeTables;
use lora::Projection;

/// `KINDLING_DECODE=unfused`: decode through the separate ops, to compare the two on a device.
static UNFUSED_DECODE: EnvSwitch = EnvSwitch::new("KINDLING_DECODE", "unfused");
/// `KINDLING_DECODE=gemv`: the fused products, the attention as separate ops.
static GEMV_ONLY_DECODE: EnvSwitch = EnvSwitch::new("KINDLING_DECODE", "gemv");

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
        let [b, s, _] = x.dims();
        if rope.device_position.is_some() {
            assert!(b == 1 && s == 1 && mask.is_none(), "a position held on the device decodes one row, unmasked");
            let cache = cache.expect("decoding at a device position needs a cache");
            return match self.packed_weights(x.dtype()).filter(|_| !UNFUSED_DECODE.is_on()) {
                Some(weights) => self.decode_step(x, rope, Some(cache), weights),
                None => self.decode_step_at(x, rope, cache),
            };
        }
        if b == 1
            && s == 1
            && mask.is_none()
            && !UNFUSED_DECODE.is_on()
            && let Some(weights) = self.packed_weights(x.dtype())
        {
            return self.decode_step(x, rope, cache, weights);
        }
        let h = self.attention_residual(x, rope, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }

    /// The block for gradients only (layer recomputation's second pass): a tensor whose
    /// gradients in `x` and in the adapters' factors are [`Block::forward`]'s, and whose value is
    /// `forward`'s **less the down projection's base term** where that term can be skipped (a
    /// packed `W_down` on the GPU: [`Mlp::forward_gradient_only`]). Only for a caller that
    /// backpropagates through the output without reading it.
    ///
    /// # Shapes
    /// - x: `[batch, len, d]`
    /// - output: `[batch, len, d]`
    pub fn forward_for_gradients(&self, x: Tensor<3>, rope: &RopeTables, mask: Option<&Tensor<4, Bool>>) -> Tensor<3> {
        assert!(rope.device_position.is_none(), "gradients are taken over whole sequences, not a decoded position");
        let h = self.attention_residual(x, rope, mask, None);
        h.clone() + self.mlp.forward_gradient_only(self.post_attention_layernorm.forward(h))
    }

    /// `h = x + attn(norm₁(x))`, the block's first half.
    fn attention_residual(
        &self,
        x: Tensor<3>,
        rope: &RopeTables,
        mask: Option<&Tensor<4, Bool>>,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), rope, mask, cache)
    }

    /// Whether one row decodes through the fused route ([`Block::forward`]'s first branch).
    pub(crate) fn decodes_fused(&self, dtype: DType) -> bool {
        !UNFUSED_DECODE.is_on() && !GEMV_ONLY_DECODE.is_on() && self.packed_weights(dtype).is_some()
    }

    /// The seven packed weights in [`Block::projections`]' order when every projection is a
    /// bare packed product in `dtype` (GPU-resident, no bias, no enabled adapter).
    pub(crate) fn packed_weights(&self, dtype: DType) -> Option<[&PackedNf4; 7]> {
        let mut out = Vec::with_capacity(7);
        for (_, p) in self.projections() {
            out.push(p.packed_plain(dtype)?);
        }
        out.try_into().ok()
    }

    /// One decoded position in five fused launches ([`gpu_kernels::nf4_gemv_fused`],
    /// [`gpu_kernels::decode_attention`]): norm and q/k/v; RoPE, the cache write and the
    /// attention; `W_o` and the residual; norm, gate/up and SwiGLU; `W_down` and the residual —
    /// the values of [`Block::forward`]'s separate ops (up to the attention's summation order).
    fn decode_step(&self, x: Tensor<3>, rope: &RopeTables, cache: Option<&mut LayerCache>, w: [&PackedNf4; 7]) -> Tensor<3> {
        let d = x.dims()[2];
        let x = x.reshape([1, d]);
        let (attn, n1, n2) = (&self.self_attn, &self.input_layernorm, &self.post_attention_layernorm);
        let qkv = nf4_gemv_fused(x.clone(), &w[..3], Some((n1.weight.val(), n1.eps)), GemvEpilogue::Concat, None);
        let (nq, nkv) = (w[0].shape()[0], w[1].shape()[0]);
        let mixed = match cache {
            Some(c) if rope.device_position.is_some() => c.attend_at(qkv, rope, attn.num_heads),
            Some(c) if !GEMV_ONLY_DECODE.is_on() => {
                c.attend_one(qkv, rope.cos.clone(), rope.sin.clone(), attn.num_heads, attn.num_kv_heads, attn.head_dim)
            }
            cache => {
                let part = |start: usize, len: usize| qkv.clone().narrow(1, start, len).reshape([1, 1, len]);
                attn.mix(part(0, nq), part(nq, nkv), part(nq + nkv, nkv), rope, None, cache).reshape([1, nq])
            }
        };
        let h = nf4_gemv_fused(mixed, &w[3..4], None, GemvEpilogue::Residual, Some(x));
        let gated = nf4_gemv_fused(h.clone(), &w[4..6], Some((n2.weight.val(), n2.eps)), GemvEpilogue::SwiGlu, None);
        nf4_gemv_fused(gated, &w[6..7], None, GemvEpilogue::Residual, Some(h)).reshape([1, 1, d])
    }

    /// One decoded position at the device position of `rope` through the separate projections
    /// (any projection kind: adapters, dense or packed weights, every backend); the attention is
    /// [`LayerCache::attend_at`]'s, as on the fused route.
    fn decode_step_at(&self, x: Tensor<3>, rope: &RopeTables, cache: &mut LayerCache) -> Tensor<3> {
        let a = &self.self_attn;
        let xn = self.input_layernorm.forward(x.clone());
        let (q, k, v) = (a.q_proj.forward(xn.clone()), a.k_proj.forward(xn.clone()), a.v_proj.forward(xn));
        let width = q.dims()[2] + 2 * k.dims()[2];
        let mixed = cache.attend_at(Tensor::cat(vec![q, k, v], 2).reshape([1, width]), rope, a.num_heads);
        let n = mixed.dims()[1];
        let h = x + a.o_proj.forward(mixed.reshape([1, 1, n]));
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
