//! Model configuration: a serde mirror of HF `config.json` and the internal [`LlamaConfig`].
//!
//! Two layers, as HF checkpoints vary: [`HfLlamaConfig`] accepts what transformers 4.x and 5.x
//! write (`rope_theta` + `rope_scaling`, or `rope_parameters`), and converts into the validated
//! [`LlamaConfig`] the model is built from. Named presets are plain functions.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// RoPE frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// No scaling: `inv_freq[i] = θ^(-2i/d)`.
    None,
    /// Llama-3.1 style: low frequencies divided by `factor`, high kept, a smooth ramp between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// Positions divided by `factor` (all frequencies divided by `factor`).
    Linear {
        /// Divisor.
        factor: f64,
    },
}

/// The validated configuration a [`crate::Llama`] is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width `d`.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Longest sequence the position tables cover.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Whether `lm_head` shares the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v/o projections carry a bias.
    pub attention_bias: bool,
    /// Whether the MLP projections carry a bias.
    pub mlp_bias: bool,
    /// Beginning-of-sequence token id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (generation stops on any).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Checks the invariants the model relies on.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(format!("`{name}` must be positive"));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return bad(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!("`head_dim` ({}) must be even for RoPE", self.head_dim));
        }
        if !(self.rms_norm_eps > 0.0) || !(self.rope_theta > 0.0) {
            return bad("`rms_norm_eps` and `rope_theta` must be positive".into());
        }
        Ok(())
    }

    /// Reads and validates an HF `config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable, [`Error::Config`] naming the missing or malformed key.
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_hf_json(&text).map_err(|e| match e {
            Error::InvalidConfig(message) => Error::Config { path: path.into(), message },
            other => other,
        })
    }

    /// Parses and validates the text of an HF `config.json`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the missing or malformed key.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let hf: HfLlamaConfig = serde_json::from_str(text).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        hf.into_config()
    }

    /// `(name, in, out)` of the seven projections of one block, in peft's names.
    pub fn projection_shapes(&self) -> [(&'static str, usize, usize); 7] {
        let (d, q, kv, f) = (self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.intermediate_size);
        [
            ("q_proj", d, q),
            ("k_proj", d, kv),
            ("v_proj", d, kv),
            ("o_proj", q, d),
            ("gate_proj", d, f),
            ("up_proj", d, f),
            ("down_proj", f, d),
        ]
    }

    /// Number of query heads per key/value head.
    pub fn gqa_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// The HF `config.json` text for this configuration (transformers 4.x/5.x both read it).
    pub fn to_hf_json(&self) -> String {
        let rope_scaling = match self.rope_scaling {
            RopeScaling::None => serde_json::Value::Null,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => serde_json::json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
            RopeScaling::Linear { factor } => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
        };
        let eos: serde_json::Value = match self.eos_token_ids.as_slice() {
            [one] => (*one).into(),
            many => many.to_vec().into(),
        };
        let value = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "hidden_act": "silu",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }
}

/// HF `config.json` as transformers writes it for Llama-architecture models.
#[derive(Debug, Clone, Deserialize)]
pub struct HfLlamaConfig {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    model_type: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
}

fn default_max_pos() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}

fn required(v: Option<usize>, key: &str) -> Result<usize> {
    v.ok_or_else(|| Error::InvalidConfig(format!("missing required key `{key}`")))
}

impl HfLlamaConfig {
    /// Converts and validates.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the missing or unsupported key.
    pub fn into_config(self) -> Result<LlamaConfig> {
        if let Some(mt) = &self.model_type {
            if !matches!(mt.as_str(), "llama" | "mistral" | "smollm") {
                return Err(Error::InvalidConfig(format!("`model_type` is \"{mt}\"; only Llama-architecture models are supported")));
            }
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(Error::InvalidConfig(format!("`hidden_act` is \"{act}\"; Llama uses \"silu\"")));
            }
        }
        let hidden_size = required(self.hidden_size, "hidden_size")?;
        let num_heads = required(self.num_attention_heads, "num_attention_heads")?;
        let head_dim = match self.head_dim {
            Some(h) => h,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        // transformers 5 nests θ and scaling in `rope_parameters`; 4.x has both at top level.
        let (rope_theta, scaling) = match &self.rope_parameters {
            Some(p) if p.is_object() => {
                let theta = p.get("rope_theta").and_then(|v| v.as_f64()).or(self.rope_theta);
                (theta, Some(p.clone()))
            }
            _ => (self.rope_theta, self.rope_scaling.clone()),
        };
        let rope_scaling = parse_rope_scaling(scaling.as_ref())?;
        let eos_token_ids = match &self.eos_token_id {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Number(n)) => vec![as_token_id(n, "eos_token_id")?],
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    serde_json::Value::Number(n) => as_token_id(n, "eos_token_id"),
                    _ => Err(Error::InvalidConfig("`eos_token_id` must hold integers".into())),
                })
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(Error::InvalidConfig("`eos_token_id` must be an integer or a list of integers".into()));
            }
        };
        let config = LlamaConfig {
            vocab_size: required(self.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: required(self.intermediate_size, "intermediate_size")?,
            num_layers: required(self.num_hidden_layers, "num_hidden_layers")?,
            num_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(num_heads),
            head_dim,
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            bos_token_id: self.bos_token_id,
            eos_token_ids,
        };
        config.validate()?;
        Ok(config)
    }
}

fn as_token_id(n: &serde_json::Number, key: &str) -> Result<u32> {
    n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| Error::InvalidConfig(format!("`{key}` must be a non-negative integer")))
}

fn parse_rope_scaling(v: Option<&serde_json::Value>) -> Result<RopeScaling> {
    let Some(obj) = v.and_then(|v| v.as_object()) else {
        return Ok(RopeScaling::None);
    };
    let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        obj.get(key).and_then(|v| v.as_f64()).ok_or_else(|| Error::InvalidConfig(format!("rope scaling of type `{kind}` needs `{key}`")))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => Err(Error::InvalidConfig(format!("rope scaling type `{other}` is not supported (supported: default, linear, llama3)"))),
    }
}

/// Named model shapes.
pub mod presets {
    use super::{LlamaConfig, RopeScaling};

    /// Meta Llama-3-8B (also the shape of Llama-3.1-8B without its rope scaling).
    pub fn llama3_8b() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 128_256,
            hidden_size: 4096,
            intermediate_size: 14_336,
            num_layers: 32,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
            max_position_embeddings: 8192,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::None,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(128_000),
            eos_token_ids: vec![128_001],
        }
    }

    /// Meta Llama-3.1-8B: the 8B shape with `llama3` rope scaling to 128k positions.
    pub fn llama31_8b() -> LlamaConfig {
        LlamaConfig {
            max_position_embeddings: 131_072,
            rope_scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            eos_token_ids: vec![128_001, 128_008, 128_009],
            ..llama3_8b()
        }
    }

    /// Meta Llama-2-7B.
    pub fn llama2_7b() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 32_000,
            hidden_size: 4096,
            intermediate_size: 11_008,
            num_layers: 32,
            num_heads: 32,
            num_kv_heads: 32,
            head_dim: 128,
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// HuggingFaceTB SmolLM2-135M(-Instruct): 30 layers, GQA 9/3, tied embeddings.
    pub fn smollm2_135m() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            max_position_embeddings: 8192,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: RopeScaling::None,
            tie_word_embeddings: true,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// A tiny random-weight shape for tests: 2 layers, d 64, GQA 4/2.
    pub fn tiny() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 256,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            max_position_embeddings: 256,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// Looks a preset up by name (`llama3-8b`, `llama3.1-8b`, `llama2-7b`, `smollm2-135m`, `tiny`).
    pub fn by_name(name: &str) -> Option<LlamaConfig> {
        Some(match name {
            "llama3-8b" => llama3_8b(),
            "llama3.1-8b" => llama31_8b(),
            "llama2-7b" => llama2_7b(),
            "smollm2-135m" => smollm2_135m(),
            "tiny" => tiny(),
            _ => return None,
        })
    }

    /// The preset names [`by_name`] knows.
    pub const NAMES: &[&str] = &["llama3-8b", "llama3.1-8b", "llama2-7b", "smollm2-135m", "tiny"];
}

#[cfg(test)]
mod tests {
    use super::*;

    const V5: &str = r#"{"vocab_size":100,"hidden_size":64,"intermediate_size":128,
        "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
        "rope_parameters":{"rope_type":"llama3","rope_theta":10000.0,"factor":8.0,
        "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64},
        "tie_word_embeddings":true,"eos_token_id":[2,3],"model_type":"llama"}"#;

    #[test]
    fn reads_transformers5_rope_parameters() {
        let c = LlamaConfig::from_hf_json(V5).expect("valid");
        assert_eq!(c.num_kv_heads, 2);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn reads_transformers4_rope_scaling_and_defaults() {
        let text = r#"{"vocab_size":100,"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"rope_theta":500000.0,
            "rope_scaling":{"type":"linear","factor":2.0},"eos_token_id":2}"#;
        let c = LlamaConfig::from_hf_json(text).expect("valid");
        assert_eq!(c.num_kv_heads, 4, "defaults to num_attention_heads");
        assert_eq!(c.head_dim, 16, "defaults to hidden/heads");
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 2.0 });
    }

    #[test]
    fn missing_key_is_named() {
        let text = r#"{"vocab_size":100,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4}"#;
        let err = LlamaConfig::from_hf_json(text).expect_err("hidden_size missing");
        assert!(err.to_string().contains("`hidden_size`"), "{err}");
    }

    #[test]
    fn bad_gqa_and_unknown_rope_are_errors() {
        let text = V5.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#);
        let err = LlamaConfig::from_hf_json(&text).expect_err("4 % 3 != 0");
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
        let text = V5.replace("\"llama3\"", "\"yarn\"");
        let err = LlamaConfig::from_hf_json(&text).expect_err("yarn unsupported");
        assert!(err.to_string().contains("yarn"), "{err}");
    }

    #[test]
    fn hf_json_round_trips_every_preset() {
        for name in presets::NAMES {
            let c = presets::by_name(name).expect("preset");
            let back = LlamaConfig::from_hf_json(&c.to_hf_json()).expect("round trip");
            assert_eq!(back, c, "{name}");
        }
    }
}
