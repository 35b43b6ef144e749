//! Text ↔ token ids through HF `tokenizers`: from a `tokenizer.json`, or built from a GGUF
//! file's `tokenizer.ggml.*` metadata. Padding uses the EOS token, as trl does.

use std::path::Path;

use serde_json::{Value, json};

use crate::{Error, Result};

/// A tokenizer with the model's special tokens.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence id, if the model has one.
    pub bos_id: Option<u32>,
    /// End-of-sequence ids (the first is the canonical EOS, used for padding).
    pub eos_ids: Vec<u32>,
    /// Whether [`Tokenizer::encode`] with specials adds BOS by itself (its post-processor).
    pub adds_bos: bool,
    /// The model's own say on prepending BOS to raw text (`tokenizer_config.json`'s or the
    /// GGUF's `add_bos_token`), when it has one.
    pub add_bos_token: Option<bool>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

/// Llama-3's pre-tokenization pattern (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Tokenizer {
    /// Loads a `tokenizer.json`; BOS/EOS are given by the caller (from the model config).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] naming the file.
    pub fn from_file(path: &Path, bos_id: Option<u32>, eos_ids: Vec<u32>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self::wrap(inner, bos_id, eos_ids))
    }

    fn wrap(inner: tokenizers::Tokenizer, bos_id: Option<u32>, eos_ids: Vec<u32>) -> Self {
        let adds_bos = match bos_id {
            Some(bos) => inner.encode("a", true).map(|e| e.get_ids().first() == Some(&bos)).unwrap_or(false),
            None => false,
        };
        Self { inner, bos_id, eos_ids, adds_bos, add_bos_token: None }
    }

    /// Whether raw text should get BOS prepended: the tokenizer does not add it itself, the
    /// model has one, and the model's tokenizer settings do not say otherwise (HF's Llama
    /// tokenizers add it; byte-level BPE models like SmolLM2 declare `add_bos_token: false`).
    pub fn should_prepend_bos(&self) -> bool {
        !self.adds_bos && self.bos_id.is_some() && self.add_bos_token.unwrap_or(true)
    }

    /// Ids of `text` as a raw prompt: the tokenizer's own specials, plus BOS when
    /// [`Tokenizer::should_prepend_bos`].
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if encoding fails.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text, true)?;
        if self.should_prepend_bos() {
            if let Some(bos) = self.bos_id {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.model = gpt2`, byte-level
    /// BPE, with the `pre` variants `smollm`, `llama-bpe`, `gpt2`/`default`).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] for missing keys or unsupported tokenizer models.
    pub fn from_gguf_metadata(meta: &Value) -> Result<Self> {
        let json = gguf_tokenizer_json(meta)?;
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes())
            .map_err(|e| Error::Tokenizer(format!("building from GGUF metadata: {e}")))?;
        let id = |k: &str| meta.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let mut t = Self::wrap(inner, id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id").into_iter().collect());
        t.add_bos_token = meta.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool);
        Ok(t)
    }

    /// Token ids of `text`; `add_special` lets the tokenizer add its own specials (e.g. BOS).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if encoding fails.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.inner.encode(text, add_special).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Text of `ids`, optionally without special tokens.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if decoding fails.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The padding id: the first EOS id (trl's `pad = eos`).
    pub fn pad_id(&self) -> Option<u32> {
        self.eos_ids.first().copied()
    }

    /// Each token's text as raw bytes (`None` for special tokens), for constrained decoding.
    /// Byte-level BPE tokens are mapped back through GPT-2's byte alphabet; SentencePiece
    /// pieces turn `▁` into a space and `<0xHH>` into the byte.
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let size = self.inner.get_vocab_size(true);
        let specials: std::collections::HashSet<u32> =
            self.inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        let byte_level = self.inner.token_to_id("Ġ").is_some() || self.inner.token_to_id("Ġthe").is_some();
        let inverse = byte_level.then(byte_level_inverse);
        (0..size as u32)
            .map(|id| {
                if specials.contains(&id) {
                    return None;
                }
                let piece = self.inner.id_to_token(id)?;
                Some(match &inverse {
                    Some(map) => piece.chars().map(|c| map.get(&c).copied()).collect::<Option<Vec<u8>>>()?,
                    None => sentencepiece_bytes(&piece),
                })
            })
            .collect()
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Writes a `tokenizer.json` (atomically).
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Tokenizer`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.inner.to_string(true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        crate::io::write_atomic(path, text.as_bytes())
    }
}

/// GPT-2's byte → printable-character alphabet, inverted.
fn byte_level_inverse() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable.iter().zip(&chars).filter_map(|(&b, &c)| Some((char::from_u32(c)?, b as u8))).collect()
}

fn sentencepiece_bytes(piece: &str) -> Vec<u8> {
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
        if let Ok(b) = u8::from_str_radix(hex, 16) {
            return vec![b];
        }
    }
    piece.replace('▁', " ").into_bytes()
}

/// The `tokenizer.json` (as JSON) for a GGUF file's tokenizer metadata.
fn gguf_tokenizer_json(meta: &Value) -> Result<Value> {
    let get = |k: &str| meta.get(k).ok_or_else(|| Error::Tokenizer(format!("GGUF metadata has no `{k}`")));
    let model = get("tokenizer.ggml.model")?.as_str().unwrap_or_default();
    if model != "gpt2" {
        return Err(Error::Tokenizer(format!(
            "GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); pass a tokenizer.json"
        )));
    }
    let tokens =
        get("tokenizer.ggml.tokens")?.as_array().ok_or_else(|| Error::Tokenizer("`tokenizer.ggml.tokens` is not an array".into()))?;
    let types = meta.get("tokenizer.ggml.token_type").and_then(Value::as_array);
    let merges =
        get("tokenizer.ggml.merges")?.as_array().ok_or_else(|| Error::Tokenizer("`tokenizer.ggml.merges` is not an array".into()))?;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let token = token.as_str().ok_or_else(|| Error::Tokenizer(format!("token {id} is not a string")))?;
        vocab.insert(token.to_string(), json!(id));
        // ggml token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
        let ty = types.and_then(|t| t.get(id)).and_then(Value::as_i64).unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": ty == 4, "special": ty == 3}));
        }
    }
    let pre = meta.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let byte_level =
        |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let (pre_tokenizer, ignore_merges) = match pre {
        "smollm" => (
            json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "llama-bpe" | "llama3" => (
            json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": false},
            byte_level(false)]}),
            true,
        ),
        "gpt2" | "default" | "gpt-2" => (byte_level(true), false),
        other => {
            return Err(Error::Tokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported (smollm, llama-bpe, gpt2, default); pass a tokenizer.json"
            )));
        }
    };
    let add_bos = meta.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    let byte_post = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    let bos = meta.get("tokenizer.ggml.bos_token_id").and_then(Value::as_u64);
    let post_processor = match (add_bos, bos) {
        (true, Some(bos)) => {
            let text = tokens.get(bos as usize).and_then(Value::as_str).unwrap_or_default();
            json!({"type": "Sequence", "processors": [byte_post, {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": text, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {text: {"id": text, "ids": [bos], "tokens": [text]}}}]})
        }
        _ => byte_post,
    };
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges},
    }))
}
