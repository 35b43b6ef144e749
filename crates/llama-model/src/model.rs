//! The Llama decoder: embeddings → blocks → final norm → `lm_head` (or tied embeddings).

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor};
use lora::Projection;

use crate::config::LlamaConfig;
use crate::nn::{Block, KvCache, RmsNorm, RopeTables, TokenEmbedding, rope};

/// What every decoder block of one forward pass shares: the RoPE tables of the rows' positions
/// and, for packed rows, the mask that keeps their sequences apart. Lets a caller run the
/// blocks one at a time ([`Llama::embed`], [`LayerContext::block`], [`Llama::head`]), e.g. to
/// recompute each block in the backward.
pub struct LayerContext {
    rope: RopeTables,
    mask: Option<Tensor<4, Bool>>,
}

impl LayerContext {
    /// `block`'s output for its input `x` in this pass.
    ///
    /// # Shapes
    /// - x, output: `[batch, len, d]`
    pub fn block(&self, block: &Block, x: Tensor<3>) -> Tensor<3> {
        block.forward(x, &self.rope, self.mask.as_ref(), None)
    }

    /// `block` for gradients only ([`Block::forward_for_gradients`]): `block`'s gradients, but
    /// not always its value — for a pass that backpropagates through the output unread.
    ///
    /// # Shapes
    /// - x, output: `[batch, len, d]`
    pub fn block_for_gradients(&self, block: &Block, x: Tensor<3>) -> Tensor<3> {
        block.forward_for_gradients(x, &self.rope, self.mask.as_ref())
    }
}

/// A Llama-architecture causal language model.
#[derive(Module, Debug)]
pub struct Llama {
    /// `model.embed_tokens`, weight `[vocab, d]` (on the device, or in host memory for
    /// training: [`crate::LoadOptions::host_embeddings`]).
    pub embed_tokens: TokenEmbedding,
    /// `model.layers`.
    pub layers: Vec<Block>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head` `[vocab, d]`; `None` when tied to the embeddings.
    pub lm_head: Option<Projection>,
    /// The configuration the model was built from.
    #[module(skip)]
    pub config: LlamaConfig,
    /// RoPE inverse frequencies, `[head_dim / 2]`.
    #[module(skip)]
    pub inv_freq: Vec<f32>,
}

impl Llama {
    /// Assembles a model from its parts (see [`crate::load`] to read one from disk).
    pub fn from_parts(
        config: LlamaConfig,
        embed_tokens: TokenEmbedding,
        layers: Vec<Block>,
        norm: RmsNorm,
        lm_head: Option<Projection>,
    ) -> Self {
        let inv_freq = rope::inv_freq(&config);
        Self { embed_tokens, layers, norm, lm_head, config, inv_freq }
    }

    /// Hidden states after the final norm.
    ///
    /// With a cache, `tokens` continue the cached sequence (positions start at `cache.len`)
    /// and the cache is extended; without one, positions start at 0.
    ///
    /// # Shapes
    /// - tokens: `[batch, len]`
    /// - output: `[batch, len, d]`
    pub fn forward_hidden(&self, tokens: Tensor<2, Int>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [_, len] = tokens.dims();
        let device = tokens.device();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let mut h = self.embed_tokens.forward(tokens);
        let rope = RopeTables::new(&self.inv_freq, start, len, &device, h.dtype());
        for (i, block) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_mut().map(|c| &mut c.layers[i]);
            h = block.forward(h, &rope, None, layer_cache);
        }
        if let Some(c) = cache {
            c.len += len;
        }
        self.norm.forward(h)
    }

    /// Hidden states of one token at the position held on the device by `rope`
    /// ([`RopeTables::at_device_position`]) — the same values as [`Llama::forward_hidden`] at
    /// that position — writing the cache in place (reserved beforehand: [`Llama::reserve_cache`])
    /// and leaving its host-side counts as they were. The step a CUDA graph records
    /// (`crate::greedy_graph`); blocks take the fused decoding route where they can.
    ///
    /// # Shapes
    /// - tokens: `[1, 1]`; output: `[1, 1, d]`
    pub fn forward_hidden_at(&self, tokens: Tensor<2, Int>, rope: &RopeTables, cache: &mut KvCache) -> Tensor<3> {
        let mut h = self.embed_tokens.forward(tokens);
        for (block, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            h = block.forward(h, rope, None, Some(layer_cache));
        }
        self.norm.forward(h)
    }

    /// Whether every block decodes one row through the fused route (packed projections on a
    /// GPU, no enabled adapter).
    pub fn decodes_fused(&self) -> bool {
        let dtype = self.embed_tokens.dtype();
        self.layers.iter().all(|b| b.decodes_fused(dtype))
    }

    /// Gives every layer of `cache` room for `capacity` positions now (see
    /// [`crate::nn::LayerCache::reserve`]) and returns the capacity taken (≥ `capacity`).
    pub fn reserve_cache(&self, cache: &mut KvCache, capacity: usize) -> usize {
        let (device, dtype) = (self.embed_tokens.device(), self.embed_tokens.dtype());
        let dims = [1, self.config.num_kv_heads, self.config.head_dim];
        for layer in &mut cache.layers {
            layer.reserve(capacity, dims, &device, dtype);
        }
        cache.layers.first().map_or(capacity, |l| l.capacity())
    }

    /// Hidden states of packed rows: `positions` (row-major `[batch, len]`) restart at 0 where
    /// each sequence starts; every sequence is rotated by its own positions and attends only to
    /// itself ([`crate::packing`]), so it gets the states it would get alone.
    ///
    /// # Shapes
    /// - tokens: `[batch, len]`, positions: `batch · len` entries
    /// - output: `[batch, len, d]`
    ///
    /// # Panics
    /// If `positions` does not fit `tokens` or is not a valid packing.
    pub fn forward_hidden_packed(&self, tokens: Tensor<2, Int>, positions: &[i64]) -> Tensor<3> {
        let (mut h, ctx) = self.embed(tokens, Some(positions));
        for block in &self.layers {
            h = ctx.block(block, h);
        }
        self.norm.forward(h)
    }

    /// The token embeddings (the first block's input) and the context the blocks share, for a
    /// pass without a cache: positions `0..len`, or the packed rows' `positions` (see
    /// [`Llama::forward_hidden_packed`]).
    ///
    /// # Shapes
    /// - tokens: `[batch, len]`, positions: `batch · len` entries
    /// - output: `[batch, len, d]`
    ///
    /// # Panics
    /// If `positions` does not fit `tokens` or is not a valid packing.
    pub fn embed(&self, tokens: Tensor<2, Int>, positions: Option<&[i64]>) -> (Tensor<3>, LayerContext) {
        let dims = tokens.dims();
        let device = tokens.device();
        let h = self.embed_tokens.forward(tokens);
        let ctx = match positions {
            Some(p) => LayerContext {
                mask: Some(crate::packing::segment_mask(p, dims, &device)),
                rope: RopeTables::at_positions(&self.inv_freq, p, dims, &device, h.dtype()),
            },
            None => LayerContext { mask: None, rope: RopeTables::new(&self.inv_freq, 0, dims[1], &device, h.dtype()) },
        };
        (h, ctx)
    }

    /// Logits from the last block's output: the final norm, then the vocabulary projection.
    ///
    /// # Shapes
    /// - h: `[batch, len, d]`
    /// - output: `[batch, len, vocab]`
    pub fn head(&self, h: Tensor<3>) -> Tensor<3> {
        self.logits(self.norm.forward(h))
    }

    /// The final norm alone: [`Llama::head`] is `logits(final_norm(h))`.
    ///
    /// # Shapes
    /// - h: `[batch, len, d]` → `[batch, len, d]`
    pub fn final_norm(&self, h: Tensor<3>) -> Tensor<3> {
        self.norm.forward(h)
    }

    /// The vocabulary projection's weight `[vocab, d]` when [`Llama::logits`] is exactly
    /// `hidden · Wᵀ` (tied embeddings, or an `lm_head` without bias or enabled adapter), for
    /// callers that fuse it with the loss (`gpu_kernels::linear_cross_entropy`).
    pub fn vocab_weight(&self) -> Option<Tensor<2>> {
        match &self.lm_head {
            Some(head) => head.plain_weight(),
            None => self.embed_tokens.device_weight(),
        }
    }

    /// Logits of packed rows (see [`Llama::forward_hidden_packed`]).
    ///
    /// # Shapes
    /// - tokens: `[batch, len]`, positions: `batch · len` entries
    /// - output: `[batch, len, vocab]`
    pub fn forward_packed(&self, tokens: Tensor<2, Int>, positions: &[i64]) -> Tensor<3> {
        self.logits(self.forward_hidden_packed(tokens, positions))
    }

    /// Vocabulary logits for hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, len, d]`
    /// - output: `[batch, len, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => lora::matmul::linear(hidden, self.embed_tokens.device_weight().expect("tied embeddings live on the device")),
        }
    }

    /// Logits for every position.
    ///
    /// # Shapes
    /// - tokens: `[batch, len]`
    /// - output: `[batch, len, vocab]`
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.logits(self.forward_hidden(tokens, cache))
    }

    /// A fresh, empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Visits every projection with its HF module path (`model.layers.0.self_attn.q_proj`).
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = Vec::new();
        for (i, b) in self.layers.iter().enumerate() {
            for (name, p) in b.projections() {
                out.push((format!("model.layers.{i}.{name}"), p));
            }
        }
        out
    }

    /// Mutable access to every projection with its HF module path.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Projection)> {
        let mut out = Vec::new();
        for (i, b) in self.layers.iter_mut().enumerate() {
            let a = &mut b.self_attn;
            let m = &mut b.mlp;
            for (name, p) in [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ] {
                out.push((format!("model.layers.{i}.{name}"), p));
            }
        }
        out
    }
}
