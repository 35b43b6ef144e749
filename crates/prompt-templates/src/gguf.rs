//! The chat template and special tokens of a GGUF file (versions 2 and 3), read from its
//! metadata only: `tokenizer.chat_template` (and named `tokenizer.chat_template.NAME`), and the
//! texts of `tokenizer.ggml.{bos,eos,unknown,seperator,padding,cls,mask}_token_id` looked up in
//! `tokenizer.ggml.tokens`. Tensor data is never read.
//!
//! ```no_run
//! use prompt_templates::gguf;
//!
//! let config = gguf::read_chat_config(std::path::Path::new("model.gguf"))?;
//! println!("{:?} {:?}", config.template(None)?, config.special_tokens.eos_token);
//! # Ok::<(), prompt_templates::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::model_config::{DEFAULT_TEMPLATE_NAME, ModelChatConfig, NamedTemplate};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const TEMPLATE_KEY: &str = "tokenizer.chat_template";
const TOKENS_KEY: &str = "tokenizer.ggml.tokens";
/// GGUF's token-id keys and the special-token variables they fill.
const TOKEN_ID_KEYS: [(&str, &str); 7] = [
    ("tokenizer.ggml.bos_token_id", "bos_token"),
    ("tokenizer.ggml.eos_token_id", "eos_token"),
    ("tokenizer.ggml.unknown_token_id", "unk_token"),
    ("tokenizer.ggml.seperator_token_id", "sep_token"),
    ("tokenizer.ggml.padding_token_id", "pad_token"),
    ("tokenizer.ggml.cls_token_id", "cls_token"),
    ("tokenizer.ggml.mask_token_id", "mask_token"),
];

// GGUF value types.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// Reads the chat templates and special tokens from a GGUF file's metadata.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened; [`Error::Gguf`] naming the byte offset for a
/// file that is not GGUF v2/v3 or whose metadata is truncated or inconsistent.
pub fn read_chat_config(path: &Path) -> Result<ModelChatConfig> {
    let file = File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let len = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?.len();
    let mut reader = Reader { inner: BufReader::new(file), offset: 0, len, path: path.to_path_buf() };

    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(reader.error(0, format!("not a GGUF file (magic {magic:?})")));
    }
    let version = reader.u32()?;
    if !(2..=3).contains(&version) {
        return Err(reader.error(4, format!("GGUF version {version} is not supported (only 2 and 3)")));
    }
    let _tensor_count = reader.u64()?;
    let kv_count = reader.u64()?;

    let mut config = ModelChatConfig { origin: path.display().to_string(), ..ModelChatConfig::default() };
    let mut tokens: Vec<String> = Vec::new();
    let mut token_ids: BTreeMap<&'static str, u64> = BTreeMap::new();
    for _ in 0..kv_count {
        let key = reader.string()?;
        let value_type = reader.u32()?;
        if key == TEMPLATE_KEY || key.starts_with("tokenizer.chat_template.") {
            let at = reader.offset;
            if value_type != T_STRING {
                return Err(reader.error(at, format!("`{key}` has type {value_type}, expected a string")));
            }
            let source = reader.string()?;
            let name = key.strip_prefix("tokenizer.chat_template.").unwrap_or(DEFAULT_TEMPLATE_NAME).to_string();
            config.templates.push(NamedTemplate { name, source });
        } else if key == TOKENS_KEY && value_type == T_ARRAY {
            let at = reader.offset;
            let element_type = reader.u32()?;
            let count = reader.u64()?;
            if element_type != T_STRING {
                return Err(reader.error(at, format!("`{key}` holds type {element_type}, expected strings")));
            }
            reader.check_count(count, 8, &key)?;
            tokens = (0..count).map(|_| reader.string()).collect::<Result<_>>()?;
        } else if let Some((_, variable)) = TOKEN_ID_KEYS.iter().find(|(k, _)| *k == key) {
            let at = reader.offset;
            let id = match value_type {
                T_U32 => u64::from(reader.u32()?),
                T_I32 => u64::try_from(reader.u32()? as i32).map_err(|_| reader.error(at, format!("`{key}` is negative")))?,
                T_U64 => reader.u64()?,
                other => {
                    return Err(reader.error(at, format!("`{key}` has type {other}, expected an integer")));
                }
            };
            token_ids.insert(variable, id);
        } else {
            reader.skip_value(value_type, &key)?;
        }
    }
    for (variable, id) in token_ids {
        let text = usize::try_from(id).ok().and_then(|i| tokens.get(i));
        match text {
            Some(text) => {
                config.special_tokens.set(variable, text.clone());
            }
            None => {
                return Err(
                    reader.error(reader.offset, format!("{variable} id {id} is not a token (the vocabulary has {} tokens)", tokens.len()))
                );
            }
        }
    }
    tracing::debug!(
        path = %path.display(),
        templates = config.templates.len(),
        tokens = tokens.len(),
        "read GGUF chat metadata"
    );
    Ok(config)
}

/// A byte reader that knows its offset and the file's length, for bounded allocations and
/// errors that say where.
struct Reader {
    inner: BufReader<File>,
    offset: u64,
    len: u64,
    path: PathBuf,
}

impl Reader {
    fn error(&self, offset: u64, detail: String) -> Error {
        Error::Gguf { path: self.path.clone(), offset, detail }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let at = self.offset;
        self.inner.read_exact(buf).map_err(|e| self.error(at, format!("truncated metadata: {e}")))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        let mut buf = [0u8; 4];
        self.read_exact(&mut buf)?;
        Ok(u32::from_le_bytes(buf))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut buf = [0u8; 8];
        self.read_exact(&mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }

    /// Fails unless `count` items of at least `min_size` bytes each fit in the rest of the file.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        let remaining = self.len.saturating_sub(self.offset);
        if count.saturating_mul(min_size) > remaining {
            return Err(self.error(self.offset, format!("`{what}`: {count} items cannot fit in the {remaining} bytes left")));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        let at = self.offset;
        let len = self.u64()?;
        self.check_count(len, 1, "string")?;
        let mut bytes = vec![0u8; len as usize];
        self.read_exact(&mut bytes)?;
        String::from_utf8(bytes).map_err(|e| self.error(at, format!("string is not UTF-8: {e}")))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let at = self.offset;
        self.check_count(n, 1, "value")?;
        let step = i64::try_from(n).map_err(|_| self.error(at, format!("cannot skip {n} bytes")))?;
        self.inner.seek_relative(step).map_err(|e| self.error(at, format!("cannot skip {n} bytes: {e}")))?;
        self.offset += n;
        Ok(())
    }

    fn skip_value(&mut self, value_type: u32, key: &str) -> Result<()> {
        match value_type {
            T_U8 | T_I8 | T_BOOL => self.skip(1),
            T_U16 | T_I16 => self.skip(2),
            T_U32 | T_I32 | T_F32 => self.skip(4),
            T_U64 | T_I64 | T_F64 => self.skip(8),
            T_STRING => {
                let len = self.u64()?;
                self.skip(len)
            }
            T_ARRAY => {
                let element_type = self.u32()?;
                let count = self.u64()?;
                match fixed_size(element_type) {
                    Some(size) => {
                        self.check_count(count, size, key)?;
                        self.skip(count * size)
                    }
                    None => {
                        self.check_count(count, 8, key)?;
                        (0..count).try_for_each(|_| self.skip_value(element_type, key))
                    }
                }
            }
            other => Err(self.error(self.offset - 4, format!("`{key}` has unknown value type {other}"))),
        }
    }
}

/// The byte size of a fixed-size GGUF type; `None` for strings and arrays.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        T_U8 | T_I8 | T_BOOL => Some(1),
        T_U16 | T_I16 => Some(2),
        T_U32 | T_I32 | T_F32 => Some(4),
        T_U64 | T_I64 | T_F64 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A GGUF v3 header with a few metadata entries and no tensors.
    fn tiny_gguf() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&5u64.to_le_bytes());
        gguf_string(&mut out, "general.alignment");
        out.extend_from_slice(&T_U32.to_le_bytes());
        out.extend_from_slice(&32u32.to_le_bytes());
        gguf_string(&mut out, TOKENS_KEY);
        out.extend_from_slice(&T_ARRAY.to_le_bytes());
        out.extend_from_slice(&T_STRING.to_le_bytes());
        out.extend_from_slice(&3u64.to_le_bytes());
        for token in ["<unk>", "<s>", "</s>"] {
            gguf_string(&mut out, token);
        }
        gguf_string(&mut out, "tokenizer.ggml.scores");
        out.extend_from_slice(&T_ARRAY.to_le_bytes());
        out.extend_from_slice(&T_F32.to_le_bytes());
        out.extend_from_slice(&3u64.to_le_bytes());
        out.extend_from_slice(&[0u8; 12]);
        gguf_string(&mut out, "tokenizer.ggml.eos_token_id");
        out.extend_from_slice(&T_U32.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        gguf_string(&mut out, TEMPLATE_KEY);
        out.extend_from_slice(&T_STRING.to_le_bytes());
        gguf_string(&mut out, "{{ eos_token }}");
        out
    }

    #[test]
    fn reads_template_and_token_texts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        std::fs::write(&path, tiny_gguf()).expect("write");
        let config = read_chat_config(&path).expect("gguf");
        assert_eq!(config.template(None).expect("default"), Some("{{ eos_token }}"));
        assert_eq!(config.special_tokens.eos_token.as_deref(), Some("</s>"));
        assert_eq!(config.special_tokens.bos_token, None);
    }

    #[test]
    fn truncated_and_foreign_files_are_reported_with_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cut.gguf");
        let bytes = tiny_gguf();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("write");
        let err = read_chat_config(&path).expect_err("truncated");
        assert!(matches!(err, Error::Gguf { .. }), "{err}");
        assert!(err.to_string().contains("cut.gguf"), "{err}");

        std::fs::write(&path, b"PK\x03\x04 not a gguf").expect("write");
        let err = read_chat_config(&path).expect_err("zip");
        assert!(err.to_string().contains("not a GGUF file"), "{err}");
    }
}
