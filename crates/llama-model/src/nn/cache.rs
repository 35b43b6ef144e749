//! The explicit key/value cache of autoregressive decoding.

use burn::tensor::Tensor;

/// Keys and values of one layer for the positions seen so far.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// `[batch, kv_heads, len, head_dim]` after RoPE.
    pub keys: Option<Tensor<4>>,
    /// `[batch, kv_heads, len, head_dim]`.
    pub values: Option<Tensor<4>>,
}

impl LayerCache {
    /// Appends new keys/values along the sequence axis and returns the full tensors.
    ///
    /// # Shapes
    /// - k, v: `[batch, kv_heads, new, head_dim]`
    /// - output: `[batch, kv_heads, len + new, head_dim]` each
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let k = match self.keys.take() {
            Some(prev) => Tensor::cat(vec![prev, k], 2),
            None => k,
        };
        let v = match self.values.take() {
            Some(prev) => Tensor::cat(vec![prev, v], 2),
            None => v,
        };
        self.keys = Some(k.clone());
        self.values = Some(v.clone());
        (k, v)
    }
}

/// The cache of a whole model: one [`LayerCache`] per block and the number of positions seen.
///
/// Passed explicitly to [`crate::Llama::forward`]; a fresh cache starts at position 0.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// One entry per decoder block.
    pub layers: Vec<LayerCache>,
    /// Positions already processed (the next token's position).
    pub len: usize,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` blocks.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![LayerCache::default(); num_layers], len: 0 }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = Self::new(self.layers.len());
    }
}
