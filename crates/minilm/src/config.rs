//! The BERT configuration: the HF `config.json` mirror and the internal config built from it.

use std::path::Path;

use burn::config::Config;
use serde::Deserialize;

use crate::Error;

/// The fields of a HF BERT `config.json` that the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct HfBertConfig {
    /// `model_type`; must be `bert` when present.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the feed-forward layer; only exact (erf) `gelu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only `absolute` position embeddings are supported.
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_string()
}
fn default_pos() -> String {
    "absolute".to_string()
}

/// The encoder's own configuration.
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width `d` of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_layers: usize,
    /// Attention heads `h`; `d` must be a multiple of `h`.
    pub num_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position table covers.
    pub max_positions: usize,
    /// Number of token types.
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers, `d = 384`, 12 heads, FFN 1536, 512 positions.
    pub fn minilm_l6() -> Self {
        Self::new(30522, 384, 6, 12, 1536, 512)
    }

    /// Reads and checks a HF `config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] when unreadable, [`Error::Config`] when it is not JSON, not a BERT config,
    /// or uses a feature this encoder does not implement.
    pub fn from_hf_file(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let hf: HfBertConfig =
            serde_json::from_str(&text).map_err(|e| Error::Config { path: path.to_path_buf(), detail: e.to_string() })?;
        Self::from_hf(&hf).map_err(|detail| Error::Config { path: path.to_path_buf(), detail })
    }

    /// Converts the HF mirror, refusing what this encoder does not implement.
    pub fn from_hf(hf: &HfBertConfig) -> std::result::Result<Self, String> {
        if let Some(kind) = &hf.model_type
            && kind != "bert"
        {
            return Err(format!("model_type `{kind}` is not `bert`"));
        }
        if hf.hidden_act != "gelu" {
            return Err(format!("hidden_act `{}` is not supported (only `gelu`)", hf.hidden_act));
        }
        if hf.position_embedding_type != "absolute" {
            return Err(format!("position_embedding_type `{}` is not supported (only `absolute`)", hf.position_embedding_type));
        }
        if hf.num_attention_heads == 0 || !hf.hidden_size.is_multiple_of(hf.num_attention_heads) {
            return Err(format!("hidden_size {} is not a multiple of num_attention_heads {}", hf.hidden_size, hf.num_attention_heads));
        }
        Ok(Self::new(
            hf.vocab_size,
            hf.hidden_size,
            hf.num_hidden_layers,
            hf.num_attention_heads,
            hf.intermediate_size,
            hf.max_position_embeddings,
        )
        .with_type_vocab_size(hf.type_vocab_size)
        .with_layer_norm_eps(hf.layer_norm_eps))
    }

    /// Width of one attention head, `d / h`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hf(json: &str) -> HfBertConfig {
        serde_json::from_str(json).expect("valid test json")
    }

    const MINI: &str = r#"{"model_type":"bert","vocab_size":30522,"hidden_size":384,
        "num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536,
        "max_position_embeddings":512,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#;

    #[test]
    fn minilm_config_matches_preset() {
        let cfg = BertConfig::from_hf(&hf(MINI)).expect("supported");
        let preset = BertConfig::minilm_l6();
        assert_eq!(cfg.hidden_size, preset.hidden_size);
        assert_eq!(cfg.num_layers, preset.num_layers);
        assert_eq!(cfg.head_dim(), 32);
        assert_eq!(cfg.type_vocab_size, 2);
    }

    #[test]
    fn unsupported_features_are_refused() {
        let tanh = MINI.replace("\"gelu\"", "\"gelu_new\"");
        let err = BertConfig::from_hf(&hf(&tanh)).expect_err("gelu_new unsupported");
        assert!(err.contains("gelu_new"), "{err}");
        let heads = MINI.replace("\"num_attention_heads\":12", "\"num_attention_heads\":7");
        let err = BertConfig::from_hf(&hf(&heads)).expect_err("bad heads");
        assert!(err.contains("multiple"), "{err}");
    }

    #[test]
    fn bad_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").expect("write");
        let err = BertConfig::from_hf_file(&path).expect_err("not json");
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
