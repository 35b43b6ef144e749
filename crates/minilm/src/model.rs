//! The BERT encoder: embeddings, then `L` post-norm transformer layers.
//!
//! Each layer computes, for hidden states `x` of shape `[B, S, d]`,
//!
//! ```text
//! a = LayerNorm(x + W_o · softmax(Q Kᵀ / √d_h + M) V)
//! y = LayerNorm(a + W_2 · GELU(W_1 a))
//! ```
//!
//! where `M` is `0` at real tokens and a large negative number at padding, and GELU is the
//! exact form `x/2 · (1 + erf(x/√2))` (Devlin et al., 2019, <https://arxiv.org/abs/1810.04805>).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;

/// The additive mask value for padded keys; `exp` of it underflows to exactly zero.
const MASKED: f32 = -1.0e9;

/// Word, position and token-type embeddings, summed and normalized.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Word-piece table `[vocab, d]`.
    pub word: Embedding,
    /// Absolute position table `[max_positions, d]`.
    pub position: Embedding,
    /// Token-type (segment) table `[type_vocab, d]`.
    pub token_type: Embedding,
    /// LayerNorm over the sum.
    pub norm: LayerNorm,
}

/// One encoder layer: self-attention and a feed-forward block, each with a residual and a
/// post-LayerNorm.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `W_q`.
    pub query: Linear,
    /// `W_k`.
    pub key: Linear,
    /// `W_v`.
    pub value: Linear,
    /// `W_o`, the attention output projection.
    pub attention_output: Linear,
    /// LayerNorm after attention.
    pub attention_norm: LayerNorm,
    /// `W_1`, `d → d_ff`.
    pub intermediate: Linear,
    /// `W_2`, `d_ff → d`.
    pub output: Linear,
    /// LayerNorm after the feed-forward block.
    pub output_norm: LayerNorm,
    /// Number of heads `h`.
    pub num_heads: usize,
}

/// The encoder: embeddings and layers (the pooler is not used for sentence embeddings).
#[derive(Module, Debug)]
pub struct BertModel {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// Encoder layers, in order.
    pub layers: Vec<BertLayer>,
}

impl BertConfig {
    /// A randomly initialized encoder of this shape (weights are then loaded into it).
    pub fn init(&self, device: &Device) -> BertModel {
        let d = self.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let embeddings = BertEmbeddings {
            word: EmbeddingConfig::new(self.vocab_size, d).init(device),
            position: EmbeddingConfig::new(self.max_positions, d).init(device),
            token_type: EmbeddingConfig::new(self.type_vocab_size, d).init(device),
            norm: norm(),
        };
        let layers = (0..self.num_layers)
            .map(|_| BertLayer {
                query: linear(d, d),
                key: linear(d, d),
                value: linear(d, d),
                attention_output: linear(d, d),
                attention_norm: norm(),
                intermediate: linear(d, self.intermediate_size),
                output: linear(self.intermediate_size, d),
                output_norm: norm(),
                num_heads: self.num_heads,
            })
            .collect();
        BertModel { embeddings, layers }
    }
}

impl BertEmbeddings {
    /// Sums the three embeddings and normalizes.
    ///
    /// # Shapes
    /// - `input_ids`, `token_type_ids`: `[B, S]`
    /// - output: `[B, S, d]`
    ///
    /// # Panics
    /// When `S` exceeds the position table.
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq]).repeat_dim(0, batch);
        let x = self.word.forward(input_ids) + self.position.forward(positions) + self.token_type.forward(token_type_ids);
        self.norm.forward(x)
    }
}

impl BertLayer {
    /// One layer.
    ///
    /// # Shapes
    /// - `x`: `[B, S, d]`
    /// - `mask_bias`: `[B, 1, 1, S]`, `0` at real tokens, very negative at padding
    /// - output: `[B, S, d]`
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let heads = self.num_heads;
        let dh = d / heads;
        let split = |t: Tensor<3>| t.reshape([batch, seq, heads, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        // [B, h, S, S]
        let scores = q.matmul(k.transpose()).div_scalar((dh as f32).sqrt()) + mask_bias;
        let probs = softmax(scores, 3);
        let context = probs.matmul(v).swap_dims(1, 2).reshape([batch, seq, d]);
        let a = self.attention_norm.forward(self.attention_output.forward(context) + x);
        let ff = self.output.forward(gelu(self.intermediate.forward(a.clone())));
        self.output_norm.forward(ff + a)
    }
}

impl BertModel {
    /// Runs the encoder.
    ///
    /// # Shapes
    /// - `input_ids`, `token_type_ids`: `[B, S]`
    /// - `attention_mask`: `[B, S]`, `1.0` at real tokens and `0.0` at padding
    /// - output: last hidden states `[B, S, d]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<3> {
        let [batch, seq] = attention_mask.dims();
        let mask_bias = attention_mask.neg().add_scalar(1.0).mul_scalar(MASKED).reshape([batch, 1, 1, seq]);
        let mut x = self.embeddings.forward(input_ids, token_type_ids);
        for layer in &self.layers {
            x = layer.forward(x, mask_bias.clone());
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn tiny() -> BertConfig {
        BertConfig::new(20, 8, 2, 2, 16, 10)
    }

    #[test]
    fn shapes_follow_the_config() {
        let device = Device::flex();
        let model = tiny().init(&device);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 0], [2, 3]), &device);
        let types = Tensor::<2, Int>::zeros([2, 3], &device);
        let mask = Tensor::<2>::from_data(TensorData::new(vec![1f32, 1., 1., 1., 1., 0.], [2, 3]), &device);
        assert_eq!(model.forward(ids, types, mask).dims(), [2, 3, 8]);
    }

    #[test]
    fn padding_does_not_change_real_positions() {
        // The same sequence alone and padded with a junk token: hidden states at the real
        // positions must agree, because padded keys get zero attention weight.
        let device = Device::flex();
        let model = tiny().init(&device);
        let run = |ids: Vec<i64>, mask: Vec<f32>| {
            let n = ids.len();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
            let types = Tensor::<2, Int>::zeros([1, n], &device);
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [1, n]), &device);
            model.forward(ids, types, mask).into_data().try_to_vec::<f32>().expect("f32")
        };
        let alone = run(vec![3, 7, 9], vec![1., 1., 1.]);
        let padded = run(vec![3, 7, 9, 11, 12], vec![1., 1., 1., 0., 0.]);
        for (a, p) in alone.iter().zip(&padded[..alone.len()]) {
            assert!((a - p).abs() < 1e-5, "{a} vs {p}");
        }
    }
}
