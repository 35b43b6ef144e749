//! Causal grouped-query self-attention with RoPE and an optional KV cache.
//!
//! `q = x·W_qᵀ` split into `H` heads, `k, v = x·W_{k,v}ᵀ` into `H_kv` heads; RoPE on `q, k`;
//! each K/V head serves `H / H_kv` query heads;
//! `o = softmax(q·kᵀ/√d_h + causal) · v`, heads concatenated, then `W_o`.

use burn::module::Module;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};
use lora::Projection;

use super::cache::LayerCache;
use super::rope::RopeTables;

/// Llama self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// `q_proj`: `[H·d_h, d]`.
    pub q_proj: Projection,
    /// `k_proj`: `[H_kv·d_h, d]`.
    pub k_proj: Projection,
    /// `v_proj`: `[H_kv·d_h, d]`.
    pub v_proj: Projection,
    /// `o_proj`: `[d, H·d_h]`.
    pub o_proj: Projection,
    /// Query heads `H`.
    pub num_heads: usize,
    /// Key/value heads `H_kv`.
    pub num_kv_heads: usize,
    /// Head width `d_h`.
    pub head_dim: usize,
}

impl Attention {
    /// Attends over the cached positions (if any) and the new ones, causally; or, with `mask`
    /// (`true` = hidden, already causal, e.g. [`crate::packing::segment_mask`]), as it says.
    ///
    /// # Shapes
    /// - x: `[batch, len, d]`
    /// - mask: `[batch, 1, len, len]` (no cache)
    /// - output: `[batch, len, d]`
    pub fn forward(&self, x: Tensor<3>, rope: &RopeTables, mask: Option<&Tensor<4, Bool>>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        self.o_proj.forward(self.mix(q, k, v, rope, mask, cache))
    }

    /// The attention between the projections: RoPE, the cache, the heads' weighted values
    /// (before `W_o`), `mask` as in [`Attention::forward`].
    ///
    /// # Shapes
    /// - q: `[batch, len, H·d_h]`; k, v: `[batch, len, H_kv·d_h]`
    /// - output: `[batch, len, H·d_h]`
    pub fn mix(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        rope: &RopeTables,
        mask: Option<&Tensor<4, Bool>>,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        let [b, s, _] = q.dims();
        let (h, hkv, dh) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = rope.apply_heads(q.reshape([b, s, h, dh]));
        let k = rope.apply_heads(k.reshape([b, s, hkv, dh]));
        let v = v.reshape([b, s, hkv, dh]).swap_dims(1, 2);
        let (k, v) = match cache {
            Some(c) => c.append(k, v),
            None => (k, v),
        };
        let groups = h / hkv;
        let o = if s == 1 && mask.is_none() {
            // One new position (decoding): the `groups` query heads of each K/V head are the rows
            // of one product with that head's keys — `[b, H_kv, groups, d_h]` against
            // `[b, H_kv, t, d_h]`, nothing to mask — so the cache is never copied per head.
            attend(q.reshape([b, hkv, groups, dh]), k, v, false, None).reshape([b, h, 1, dh])
        } else {
            let t = k.dims()[2];
            let mask = mask.map(|m| m.clone().expand([b, h, s, t]));
            attend(q, k, v, mask.is_none() && s > 1, mask)
        };
        o.swap_dims(1, 2).reshape([b, s, h * dh])
    }
}

/// `softmax(q·kᵀ/√d_h (+ causal | mask)) · v` on the device's best route; each K/V head serves
/// `heads / kv_heads` consecutive query heads.
///
/// # Shapes
/// - q: `[batch, heads, rows, d_h]`; k, v: `[batch, kv_heads, t, d_h]`; mask: `[batch, heads, rows, t]`
/// - output: `[batch, heads, rows, d_h]`
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, mask: Option<Tensor<4, Bool>>) -> Tensor<4> {
    if gpu_kernels::is_cuda(&q.device()) {
        // cuBLASLt products and burn's element-wise kernels: burn's own attention and batched
        // matmul select CubeCL kernels that fail to launch on the H200 (docs/cuda.md). The
        // grouped heads are shared, not repeated, where the route allows.
        gpu_kernels::attention(q, k, v, causal, mask)
    } else {
        let groups = q.dims()[1] / k.dims()[1];
        let (k, v) = (gpu_kernels::attention::repeat_kv(k, groups), gpu_kernels::attention::repeat_kv(v, groups));
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
        attention(q, k, v, mask, None, options)
    }
}
