//! Building a [`Llama`] from a [`WeightSource`], checking every tensor by name and shape.
//!
//! HF tensor names live here and in the weight sources only.

use std::collections::BTreeSet;

use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use lora::{BaseLinear, DenseLinear, Projection};
use nf4_quant::{Nf4Linear, Nf4LinearConfig, Nf4Tensor, QuantConfig};

use crate::config::LlamaConfig;
use crate::model::Llama;
use crate::nn::{Attention, Block, Mlp, RmsNorm, TokenEmbedding};
use crate::weights::WeightSource;
use crate::{Error, Result};

/// How to materialize the weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Device the model lives on.
    pub device: Device,
    /// Float dtype of dense weights and activations (f32 on CPU; bf16 on GPUs).
    pub dtype: DType,
    /// Keep the token-embedding table in host memory (rows are gathered there and only the
    /// looked-up `[batch, len, d]` block is uploaded): frees `vocab · d` elements of device
    /// memory (1 GiB in bf16 for Llama-3-8B) for training, where the lookup happens once per
    /// step. Ignored for tied embeddings, whose table is also the vocabulary projection.
    pub host_embeddings: bool,
}

impl LoadOptions {
    /// f32 on the given device.
    pub fn f32(device: &Device) -> Self {
        Self::new(device, DType::F32)
    }

    /// `dtype` on `device`, every table on the device.
    pub fn new(device: &Device, dtype: DType) -> Self {
        Self { device: device.clone(), dtype, host_embeddings: false }
    }

    /// The same options with the token-embedding table in host memory (see
    /// [`LoadOptions::host_embeddings`]).
    #[must_use]
    pub fn with_host_embeddings(mut self, on: bool) -> Self {
        self.host_embeddings = on;
        self
    }
}

/// Tensors a checkpoint may hold that the model deliberately ignores.
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq") || name == "rope_freqs.weight"
}

struct Builder<'a> {
    source: &'a dyn WeightSource,
    options: &'a LoadOptions,
    quant: Option<&'a QuantConfig>,
    used: BTreeSet<String>,
}

impl Builder<'_> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let data = self.data(name, shape)?;
        Ok(Tensor::<D>::from_data(data, (&self.options.device, self.options.dtype)))
    }

    /// `name`'s values in the compute dtype, on the host: converted before any upload, so a
    /// bf16 table never passes through the device in f32.
    fn data<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<TensorData> {
        let info = self
            .source
            .info(name)
            .ok_or_else(|| Error::MissingTensor { path: self.source.origin().to_path_buf(), name: name.to_string() })?;
        if info.shape != shape {
            return Err(Error::Shape {
                path: self.source.origin().to_path_buf(),
                name: name.into(),
                found: info.shape,
                expected: shape.to_vec(),
            });
        }
        let values = self.source.read_f32(name)?;
        self.used.insert(name.to_string());
        let data = TensorData::new(values, shape);
        Ok(if self.options.dtype == DType::F32 { data } else { data.convert_dtype(self.options.dtype) })
    }

    fn optional<const D: usize>(&mut self, name: &str, shape: [usize; D], present: bool) -> Result<Option<Tensor<D>>> {
        if present { self.tensor(name, shape).map(Some) } else { Ok(None) }
    }

    fn projection(&mut self, prefix: &str, d_out: usize, d_in: usize, bias: bool) -> Result<Projection> {
        let name = format!("{prefix}.weight");
        let bias = self.optional(&format!("{prefix}.bias"), [d_out], bias)?;
        if let Some(packed) = crate::quantized::read_packed(self.source, &name, [d_out, d_in])? {
            self.used.extend(packed.names);
            return self.nf4(packed.tensor, bias);
        }
        match self.quant {
            None => {
                let weight = self.tensor(&name, [d_out, d_in])?;
                Ok(Projection::new(BaseLinear::Dense(DenseLinear::new(weight, bias))))
            }
            Some(q) => {
                // One projection at a time in f32, quantized at once: the dense model never exists.
                self.check_shape(&name, &[d_out, d_in])?;
                let values = self.source.read_f32(&name)?;
                self.used.insert(name.clone());
                let tensor = Nf4Tensor::quantize(&values, &[d_out, d_in], q)
                    .map_err(|e| Error::format(self.source.origin(), format!("`{name}`: {e}")))?;
                self.nf4(tensor, bias)
            }
        }
    }

    fn nf4(&self, tensor: Nf4Tensor, bias: Option<Tensor<1>>) -> Result<Projection> {
        let compute = match self.options.dtype {
            DType::BF16 => FloatDType::BF16,
            DType::F16 => FloatDType::F16,
            _ => FloatDType::F32,
        };
        let config = Nf4LinearConfig::default().with_compute_dtype(compute);
        let linear =
            Nf4Linear::new(tensor, bias, &self.options.device, &config).map_err(|e| Error::format(self.source.origin(), e.to_string()))?;
        Ok(Projection::new(BaseLinear::Nf4(linear)))
    }

    fn check_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        let info = self
            .source
            .info(name)
            .ok_or_else(|| Error::MissingTensor { path: self.source.origin().to_path_buf(), name: name.to_string() })?;
        if info.shape != shape {
            return Err(Error::Shape {
                path: self.source.origin().to_path_buf(),
                name: name.into(),
                found: info.shape,
                expected: shape.to_vec(),
            });
        }
        Ok(())
    }

    fn norm(&mut self, name: &str, d: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm::new(self.tensor(name, [d])?, eps))
    }
}

/// Builds the model described by `config` from `source`.
///
/// # Errors
/// A missing, mis-shaped or unreadable tensor, or tensors the model would not use — each
/// error names the tensor and the checkpoint.
pub fn load(source: &dyn WeightSource, config: &LlamaConfig, options: &LoadOptions) -> Result<Llama> {
    load_quantized(source, config, options, None)
}

/// Like [`load`], with the seven projections of every block quantized to 4 bits on load
/// (embeddings, norms and `lm_head` stay in the compute dtype, as bitsandbytes does). Weights
/// that the checkpoint already stores in the bitsandbytes 4-bit layout are read as they are,
/// with or without `quant`.
///
/// # Errors
/// See [`load`]; a quantization failure names the tensor.
///
/// The weights are allocated as the device's persistent memory (each its own exact-size
/// allocation, outside the pools that serve activations), so that a 1 GiB table does not size
/// the pages every later activation is carved from.
pub fn load_quantized(
    source: &dyn WeightSource,
    config: &LlamaConfig,
    options: &LoadOptions,
    quant: Option<&QuantConfig>,
) -> Result<Llama> {
    config.validate()?;
    options.device.memory_persistent_allocations((), |()| build(source, config, options, quant))
}

fn build(source: &dyn WeightSource, config: &LlamaConfig, options: &LoadOptions, quant: Option<&QuantConfig>) -> Result<Llama> {
    let c = config;
    let mut b = Builder { source, options, quant, used: BTreeSet::new() };
    let (d, ffn) = (c.hidden_size, c.intermediate_size);
    let (q_out, kv_out) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let embed_data = b.data("model.embed_tokens.weight", [c.vocab_size, d])?;
    let embed = if options.host_embeddings && !c.tie_word_embeddings {
        TokenEmbedding::host(embed_data, &options.device)
    } else {
        TokenEmbedding::new(Tensor::from_data(embed_data, (&options.device, options.dtype)))
    };
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        let ab = c.attention_bias;
        let self_attn = Attention {
            q_proj: b.projection(&format!("{p}.self_attn.q_proj"), q_out, d, ab)?,
            k_proj: b.projection(&format!("{p}.self_attn.k_proj"), kv_out, d, ab)?,
            v_proj: b.projection(&format!("{p}.self_attn.v_proj"), kv_out, d, ab)?,
            o_proj: b.projection(&format!("{p}.self_attn.o_proj"), d, q_out, ab)?,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
        };
        let mb = c.mlp_bias;
        let mlp = Mlp {
            gate_proj: b.projection(&format!("{p}.mlp.gate_proj"), ffn, d, mb)?,
            up_proj: b.projection(&format!("{p}.mlp.up_proj"), ffn, d, mb)?,
            down_proj: b.projection(&format!("{p}.mlp.down_proj"), d, ffn, mb)?,
        };
        layers.push(Block {
            input_layernorm: b.norm(&format!("{p}.input_layernorm.weight"), d, c.rms_norm_eps)?,
            self_attn,
            post_attention_layernorm: b.norm(&format!("{p}.post_attention_layernorm.weight"), d, c.rms_norm_eps)?,
            mlp,
        });
    }
    let norm = b.norm("model.norm.weight", d, c.rms_norm_eps)?;
    let lm_head = if c.tie_word_embeddings {
        // Some tied checkpoints still store the head; it must equal the embeddings, so skip it.
        b.used.insert("lm_head.weight".into());
        None
    } else {
        // The head stays in the compute dtype, as bitsandbytes leaves it.
        let weight = b.tensor("lm_head.weight", [c.vocab_size, d])?;
        Some(Projection::new(BaseLinear::Dense(DenseLinear::new(weight, None))))
    };
    let unexpected: Vec<String> = source.names().into_iter().filter(|n| !b.used.contains(n) && !ignorable(n)).take(8).collect();
    if !unexpected.is_empty() {
        return Err(Error::UnexpectedTensors { path: source.origin().to_path_buf(), names: unexpected });
    }
    Ok(Llama::from_parts(config.clone(), embed, layers, norm, lm_head))
}
