//! Opening a model by reference: a local HF folder, a `.gguf` file, or a hub id; together
//! with its tokenizer and chat configuration.

use std::path::{Path, PathBuf};

use prompt_templates::{ModelChatConfig, NamedTemplate, SpecialTokens};

use crate::config::LlamaConfig;
use crate::load::{LoadOptions, load};
use crate::model::Llama;
use crate::tokenizer::Tokenizer;
use crate::weights::hub::{HubOptions, download_model, looks_like_hub_id};
use crate::weights::{self, WeightSource};
use crate::{Error, Result};

/// A loaded model with everything needed to talk to it.
#[derive(Debug)]
pub struct Pretrained {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template(s) and special-token texts.
    pub chat: ModelChatConfig,
    /// The local file or folder it was read from.
    pub origin: PathBuf,
}

/// How to open a model.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Device and dtype.
    pub load: LoadOptions,
    /// A `tokenizer.json` to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// Hub settings for hub ids.
    pub hub: HubOptions,
}

impl OpenOptions {
    /// Defaults on a device: f32, the model's own tokenizer, the public hub.
    pub fn new(device: &burn::tensor::Device) -> Self {
        Self { load: LoadOptions::f32(device), tokenizer: None, hub: HubOptions::default() }
    }
}

/// The model files a reference points at: `(config, weights, tokenizer.json?, chat config)`.
pub struct ModelFiles {
    /// The configuration.
    pub config: LlamaConfig,
    /// The weights.
    pub source: Box<dyn WeightSource>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// Chat templates and special tokens.
    pub chat: ModelChatConfig,
    /// Local path.
    pub origin: PathBuf,
}

/// Resolves a reference (path or hub id) to local model files without building the network.
///
/// # Errors
/// Missing files, unreadable config or tokenizer, or a failed download, naming the file.
pub fn resolve(reference: &str, options: &OpenOptions) -> Result<ModelFiles> {
    let path = if looks_like_hub_id(reference) { download_model(reference, &options.hub)? } else { PathBuf::from(reference) };
    if !path.exists() {
        return Err(Error::io(&path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
    }
    if path.extension().is_some_and(|e| e == "gguf") {
        return resolve_gguf(&path, options);
    }
    let dir = if path.is_dir() { path.clone() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    let config = LlamaConfig::from_hf_file(dir.join("config.json"))?;
    let source = weights::open(&path)?;
    let chat = if dir.join("tokenizer_config.json").exists() {
        ModelChatConfig::from_model_dir(&dir).map_err(|e| Error::Tokenizer(e.to_string()))?
    } else {
        ModelChatConfig { origin: dir.display().to_string(), ..ModelChatConfig::default() }
    };
    let tokenizer_path = options.tokenizer.clone().unwrap_or_else(|| dir.join("tokenizer.json"));
    let bos = config.bos_token_id;
    let mut tokenizer = Tokenizer::from_file(&tokenizer_path, bos, config.eos_token_ids.clone())?;
    tokenizer.add_bos_token = read_add_bos_token(&dir.join("tokenizer_config.json"));
    Ok(ModelFiles { config, source, tokenizer, chat, origin: path })
}

/// `add_bos_token` of a `tokenizer_config.json`, when the file sets it.
fn read_add_bos_token(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get("add_bos_token")?.as_bool()
}

fn resolve_gguf(path: &Path, options: &OpenOptions) -> Result<ModelFiles> {
    let source = weights::gguf::GgufSource::open(path)?;
    let config = source.config()?;
    let meta = source.metadata();
    let tokenizer = match &options.tokenizer {
        Some(t) => Tokenizer::from_file(t, config.bos_token_id, config.eos_token_ids.clone())?,
        None => Tokenizer::from_gguf_metadata(&meta)?,
    };
    let mut chat = ModelChatConfig { origin: path.display().to_string(), ..ModelChatConfig::default() };
    if let Some(t) = meta.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
        chat.templates.push(NamedTemplate { name: "default".into(), source: t.to_string() });
    }
    chat.special_tokens = special_tokens_from_gguf(&meta);
    Ok(ModelFiles { config, source: Box::new(source), tokenizer, chat, origin: path.to_path_buf() })
}

fn special_tokens_from_gguf(meta: &serde_json::Value) -> SpecialTokens {
    let tokens = meta.get("tokenizer.ggml.tokens").and_then(|v| v.as_array());
    let text = |key: &str| {
        let id = meta.get(key)?.as_u64()? as usize;
        tokens?.get(id)?.as_str().map(String::from)
    };
    SpecialTokens {
        bos_token: text("tokenizer.ggml.bos_token_id"),
        eos_token: text("tokenizer.ggml.eos_token_id"),
        unk_token: text("tokenizer.ggml.unknown_token_id"),
        pad_token: text("tokenizer.ggml.padding_token_id"),
        ..SpecialTokens::default()
    }
}

/// Opens and loads a model by reference.
///
/// # Errors
/// See [`resolve`] and [`load`].
pub fn open(reference: &str, options: &OpenOptions) -> Result<Pretrained> {
    let files = resolve(reference, options)?;
    let model = load(files.source.as_ref(), &files.config, &options.load)?;
    Ok(Pretrained { model, tokenizer: files.tokenizer, chat: files.chat, origin: files.origin })
}

impl Pretrained {
    /// Token ids that end a chat turn: the EOS ids plus the usual end-of-turn markers present in
    /// the vocabulary (`<|im_end|>`, `<|eot_id|>`, `<|end_of_text|>`, `</s>`).
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut ids = self.tokenizer.eos_ids.clone();
        for marker in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>"] {
            if let Some(id) = self.tokenizer.token_to_id(marker) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }
}
