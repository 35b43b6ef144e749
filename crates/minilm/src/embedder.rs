//! [`MiniLm`]: tokenizer + encoder + pooling, loaded from a sentence-transformers folder, and
//! its [`llm_api::Embedder`] implementation.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

use crate::config::BertConfig;
use crate::model::BertModel;
use crate::pooling::{l2_normalize, mean_pool};
use crate::weights::load_bert;
use crate::{Error, Result};

/// sentence-transformers' default `max_seq_length` for all-MiniLM-L6-v2, used when the folder
/// has no `sentence_bert_config.json`.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// Texts per forward pass unless changed with [`MiniLm::with_batch_size`].
pub const DEFAULT_BATCH_SIZE: usize = 32;

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

/// A sentence embedder: word-piece tokens (truncated to `max_seq_length`, padded per batch),
/// a BERT encoder, mean pooling over the attention mask and L2 normalization.
#[derive(Debug)]
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    tokenizer_path: PathBuf,
    device: Device,
    hidden_size: usize,
    max_seq_length: usize,
    batch_size: usize,
    name: String,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::Config { path: path.to_path_buf(), detail: e.to_string() })
}

impl MiniLm {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from a sentence-transformers
    /// folder (optionally `sentence_bert_config.json` for `max_seq_length` and
    /// `1_Pooling/config.json`, which must ask for mean pooling).
    ///
    /// # Errors
    /// Any [`Error`], naming the file (and tensor) at fault.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = BertConfig::from_hf_file(&dir.join("config.json"))?;

        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_path.exists() {
            read_json::<SentenceBertConfig>(&st_path)?.max_seq_length.unwrap_or(DEFAULT_MAX_SEQ_LENGTH)
        } else {
            DEFAULT_MAX_SEQ_LENGTH
        };
        if max_seq_length < 2 || max_seq_length > config.max_positions {
            return Err(Error::Config {
                path: st_path,
                detail: format!("max_seq_length {max_seq_length} is outside 2..={}", config.max_positions),
            });
        }
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if pooling_path.exists() && !read_json::<PoolingConfig>(&pooling_path)?.pooling_mode_mean_tokens {
            return Err(Error::Config {
                path: pooling_path,
                detail: "only mean pooling (`pooling_mode_mean_tokens: true`) is supported".into(),
            });
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = load_tokenizer(&tokenizer_path, max_seq_length)?;
        let model = load_bert(&config, &dir.join("model.safetensors"), device)?;
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        tracing::info!(dir = %dir.display(), max_seq_length, "loaded sentence embedder");
        Ok(Self {
            model,
            tokenizer,
            tokenizer_path,
            device: device.clone(),
            hidden_size: config.hidden_size,
            max_seq_length,
            batch_size: DEFAULT_BATCH_SIZE,
            name,
        })
    }

    /// Sets how many texts go through the encoder at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Length of every embedding (the hidden size, 384 for MiniLM-L6).
    pub fn dim(&self) -> usize {
        self.hidden_size
    }

    /// Most word pieces per text, special tokens included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The word-piece count of `text` after truncation (special tokens included).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the tokenizer fails.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| self.tok_err(e))?;
        Ok(enc.get_attention_mask().iter().filter(|&&m| m == 1).count())
    }

    /// Unit-length sentence embeddings, one `[dim]` vector per text, in order.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] or [`Error::Readback`].
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            out.extend(self.encode_batch(batch)?);
        }
        Ok(out)
    }

    /// One padded batch through the encoder.
    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| self.tok_err(e))?;
        let batch = encodings.len();
        let seq = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(batch * seq);
        let mut types = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for enc in &encodings {
            if enc.get_ids().len() != seq {
                return Err(Error::Tokenizer {
                    path: self.tokenizer_path.clone(),
                    detail: "batch encodings have different lengths (padding is off)".into(),
                });
            }
            ids.extend(enc.get_ids().iter().map(|&i| i64::from(i)));
            types.extend(enc.get_type_ids().iter().map(|&i| i64::from(i)));
            mask.extend(enc.get_attention_mask().iter().map(|&m| m as f32));
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq]), &self.device);
        let types = Tensor::<2, Int>::from_data(TensorData::new(types, [batch, seq]), &self.device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [batch, seq]), &self.device);
        let hidden = self.model.forward(ids, types, mask.clone());
        let pooled = l2_normalize(mean_pool(hidden, mask));
        let flat = pooled.into_data().try_to_vec::<f32>().map_err(|e| Error::Readback(format!("{e:?}")))?;
        Ok(flat.chunks(self.hidden_size).map(<[f32]>::to_vec).collect())
    }

    fn tok_err(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer { path: self.tokenizer_path.clone(), detail: e.to_string() }
    }
}

/// Reads `tokenizer.json` and sets sentence-transformers' truncation (longest first, right,
/// `max_seq_length` including special tokens) and per-batch padding, replacing whatever the file
/// says (all-MiniLM-L6-v2's file pads and truncates to a fixed 128).
fn load_tokenizer(path: &Path, max_seq_length: usize) -> Result<Tokenizer> {
    let err = |detail: String| Error::Tokenizer { path: path.to_path_buf(), detail };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
    let pad = tokenizer.get_padding().cloned().unwrap_or_else(|| {
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        PaddingParams { pad_id, pad_token: "[PAD]".into(), ..PaddingParams::default() }
    });
    tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, pad_to_multiple_of: None, ..pad }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            ..TruncationParams::default()
        }))
        .map_err(|e| err(e.to_string()))?;
    Ok(tokenizer)
}

impl llm_api::Embedder for MiniLm {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn embed(&self, texts: &[String]) -> llm_api::Result<Vec<Vec<f32>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self.encode(&refs)?)
    }
}
