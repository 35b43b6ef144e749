//! GGUF files (llama architecture): metadata, tensor directory, dequantization on load,
//! and translation into HF names and layouts.
//!
//! Layout of a GGUF v2/v3 file: magic `GGUF`, version `u32`, tensor count `u64`, metadata
//! count `u64`, metadata key/values, tensor infos (name, dims innermost-first, type, offset),
//! padding to `general.alignment` (default 32), then tensor data.
//!
//! llama.cpp's converter permutes the rows of `attn_q`/`attn_k` so that RoPE can rotate
//! interleaved pairs; this source un-permutes them back to HF's rotate-half order:
//! rows `[h, 2, d_h/2]` ← `[h, d_h/2, 2]`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::{Map, Value};

use super::gguf_quants::GgmlType;
use super::{StoredDtype, TensorInfo, WeightSource};
use crate::config::{LlamaConfig, RopeScaling};
use crate::{Error, Result};

#[derive(Debug, Clone)]
struct GgufTensor {
    /// GGUF name.
    gguf_name: String,
    /// HF shape (outermost first).
    shape: Vec<usize>,
    type_id: u32,
    /// Absolute byte offset in the file.
    offset: usize,
    /// Heads to un-permute for q/k, if this is one.
    unpermute_heads: Option<usize>,
}

/// A memory-mapped GGUF file seen through HF names.
pub struct GgufSource {
    path: PathBuf,
    mmap: Mmap,
    metadata: Map<String, Value>,
    tensors: BTreeMap<String, GgufTensor>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::format(self.path, format!("truncated header: needed {n} bytes at offset {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64()?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| Error::format(self.path, format!("{what} length {n} exceeds the file size")))?;
        Ok(n)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len("string")?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::format(self.path, format!("non-UTF-8 string at offset {}", self.pos - n)))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::from(self.take(1)?[0]),
            1 => Value::from(self.take(1)?[0] as i8),
            2 => {
                let b = self.take(2)?;
                Value::from(u16::from_le_bytes([b[0], b[1]]))
            }
            3 => {
                let b = self.take(2)?;
                Value::from(i16::from_le_bytes([b[0], b[1]]))
            }
            4 => Value::from(self.u32()?),
            5 => Value::from(self.u32()? as i32),
            6 => Value::from(f32::from_bits(self.u32()?) as f64),
            7 => Value::from(self.take(1)?[0] != 0),
            8 => Value::from(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(Error::format(self.path, "metadata arrays nested too deeply"));
                }
                let inner = self.u32()?;
                let n = self.len("array")?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::from(self.u64()?),
            11 => Value::from(self.u64()? as i64),
            12 => Value::from(f64::from_bits(self.u64()?)),
            other => return Err(Error::format(self.path, format!("unknown metadata value type {other}"))),
        })
    }
}

/// The HF name of a GGUF tensor name, if it is one a Llama model uses.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

impl GgufSource {
    /// Opens and indexes a GGUF file.
    ///
    /// # Errors
    /// Bad magic, unsupported version, truncated header or tensor data, a non-llama
    /// architecture, or a tensor type we cannot dequantize — each naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: read-only map of a file we only read.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut r = Reader { buf: &mmap, pos: 0, path };
        if r.take(4).map_err(|_| Error::format(path, "file too short to be GGUF"))? != b"GGUF" {
            return Err(Error::format(path, "bad magic: not a GGUF file"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::format(path, format!("GGUF version {version} is not supported (2 or 3)")));
        }
        let n_tensors = r.len("tensor count")?;
        let n_kv = r.len("metadata count")?;
        let mut metadata = Map::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let arch = metadata.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
        if arch != "llama" {
            return Err(Error::format(path, format!("architecture `{arch}` is not supported (only `llama`)")));
        }
        let heads = meta_usize(&metadata, "llama.attention.head_count");
        let kv_heads = meta_usize(&metadata, "llama.attention.head_count_kv").or(heads);
        let mut raw = Vec::with_capacity(n_tensors.min(1 << 16));
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims > 4 {
                return Err(Error::format(path, format!("tensor `{name}` has {n_dims} dims")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(r.len("dimension")?);
            }
            let type_id = r.u32()?;
            let offset = r.u64()? as usize;
            raw.push((name, dims, type_id, offset));
        }
        let alignment = meta_usize(&metadata, "general.alignment").unwrap_or(32).max(1);
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (gguf_name, dims, type_id, offset) in raw {
            let shape: Vec<usize> = dims.iter().rev().copied().collect();
            let n: usize = shape.iter().product();
            let ty = GgmlType::from_id(type_id);
            let bytes = ty.and_then(|t| t.bytes_for(n));
            let offset = data_start + offset;
            if let Some(bytes) = bytes {
                if offset.checked_add(bytes).is_none_or(|end| end > mmap.len()) {
                    return Err(Error::format(
                        path,
                        format!("tensor `{gguf_name}` data is truncated (needs {bytes} bytes at offset {offset}, file has {})", mmap.len()),
                    ));
                }
            }
            let Some(hf) = hf_name(&gguf_name) else {
                tracing::debug!(tensor = gguf_name, "GGUF tensor not used by the Llama model");
                tensors.insert(gguf_name.clone(), GgufTensor { gguf_name, shape, type_id, offset, unpermute_heads: None });
                continue;
            };
            let unpermute_heads = if hf.ends_with("q_proj.weight") {
                heads
            } else if hf.ends_with("k_proj.weight") {
                kv_heads
            } else {
                None
            };
            tensors.insert(hf, GgufTensor { gguf_name, shape, type_id, offset, unpermute_heads });
        }
        Ok(Self { path: path.to_path_buf(), mmap, metadata, tensors })
    }

    /// The model configuration the metadata describes.
    ///
    /// # Errors
    /// [`Error::Config`] naming a missing `llama.*` key.
    pub fn config(&self) -> Result<LlamaConfig> {
        let need = |key: &str| {
            meta_usize(&self.metadata, key)
                .ok_or_else(|| Error::Config { path: self.path.clone(), message: format!("missing metadata key `{key}`") })
        };
        let hidden = need("llama.embedding_length")?;
        let heads = need("llama.attention.head_count")?;
        let vocab = meta_usize(&self.metadata, "llama.vocab_size")
            .or_else(|| self.metadata.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()).map(|a| a.len()))
            .or_else(|| self.tensors.get("model.embed_tokens.weight").map(|t| t.shape[0]))
            .ok_or_else(|| Error::Config { path: self.path.clone(), message: "cannot tell the vocabulary size".into() })?;
        let head_dim = meta_usize(&self.metadata, "llama.attention.key_length")
            .or_else(|| meta_usize(&self.metadata, "llama.rope.dimension_count"))
            .unwrap_or(hidden / heads.max(1));
        let f = |key: &str| self.metadata.get(key).and_then(|v| v.as_f64());
        let rope_scaling = match self.metadata.get("llama.rope.scaling.type").and_then(|v| v.as_str()) {
            Some("linear") => RopeScaling::Linear { factor: f("llama.rope.scaling.factor").unwrap_or(1.0) },
            _ => RopeScaling::None,
        };
        let config = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: need("llama.feed_forward_length")?,
            num_layers: need("llama.block_count")?,
            num_heads: heads,
            num_kv_heads: meta_usize(&self.metadata, "llama.attention.head_count_kv").unwrap_or(heads),
            head_dim,
            max_position_embeddings: meta_usize(&self.metadata, "llama.context_length").unwrap_or(2048),
            rms_norm_eps: f("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: f("llama.rope.freq_base").unwrap_or(10_000.0),
            rope_scaling,
            tie_word_embeddings: !self.tensors.contains_key("lm_head.weight"),
            attention_bias: self.tensors.contains_key("model.layers.0.self_attn.q_proj.bias"),
            mlp_bias: self.tensors.contains_key("model.layers.0.mlp.gate_proj.bias"),
            bos_token_id: meta_usize(&self.metadata, "tokenizer.ggml.bos_token_id").map(|v| v as u32),
            eos_token_ids: meta_usize(&self.metadata, "tokenizer.ggml.eos_token_id").map(|v| vec![v as u32]).unwrap_or_default(),
        };
        config.validate().map_err(|e| Error::Config { path: self.path.clone(), message: e.to_string() })?;
        Ok(config)
    }

    /// The raw metadata map.
    pub fn metadata_map(&self) -> &Map<String, Value> {
        &self.metadata
    }

    fn entry(&self, name: &str) -> Result<&GgufTensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor { path: self.path.clone(), name: name.into() })
    }
}

fn meta_usize(m: &Map<String, Value>, key: &str) -> Option<usize> {
    m.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}

/// Undoes llama.cpp's q/k row permutation: `[h, d_h/2, 2, in]` → `[h, 2, d_h/2, in]`.
fn unpermute(values: Vec<f32>, rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let per_head = rows / heads;
    let half = per_head / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * per_head + i * 2 + j;
                let dst = h * per_head + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl WeightSource for GgufSource {
    fn origin(&self) -> &Path {
        &self.path
    }

    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        let t = self.tensors.get(name)?;
        Some(TensorInfo { shape: t.shape.clone(), dtype: GgmlType::name_of(t.type_id) })
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.entry(name)?;
        let ty = GgmlType::from_id(t.type_id).ok_or_else(|| Error::Dtype {
            path: self.path.clone(),
            name: format!("{name} (GGUF `{}`)", t.gguf_name),
            dtype: GgmlType::name_of(t.type_id),
        })?;
        let n: usize = t.shape.iter().product();
        let bytes = ty
            .bytes_for(n)
            .ok_or_else(|| Error::format(&self.path, format!("tensor `{}`: {n} values are not whole {ty:?} blocks", t.gguf_name)))?;
        let mut out = Vec::with_capacity(n);
        ty.dequantize(&self.mmap[t.offset..t.offset + bytes], &mut out);
        Ok(match (t.unpermute_heads, t.shape.as_slice()) {
            (Some(h), [rows, cols]) if h > 0 && rows % (2 * h) == 0 => unpermute(out, *rows, *cols, h),
            _ => out,
        })
    }

    fn read_raw(&self, name: &str) -> Result<(StoredDtype, Vec<usize>, Vec<u8>)> {
        let t = self.entry(name)?;
        Err(Error::Dtype {
            path: self.path.clone(),
            name: name.into(),
            dtype: format!("{} (GGUF tensors are read dequantized)", GgmlType::name_of(t.type_id)),
        })
    }

    fn metadata(&self) -> Value {
        Value::Object(self.metadata.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hf() {
        assert_eq!(hf_name("blk.3.attn_q.weight").as_deref(), Some("model.layers.3.self_attn.q_proj.weight"));
        assert_eq!(hf_name("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.post_attention_layernorm.weight"));
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(h, 2, d/2, in).swapaxes(1, 2) — build that from known rows.
        let (heads, per_head, cols) = (2, 4, 1);
        let hf: Vec<f32> = (0..heads * per_head).map(|i| i as f32).collect();
        let mut permuted = vec![0f32; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..per_head / 2 {
                    permuted[h * per_head + i * 2 + j] = hf[h * per_head + j * (per_head / 2) + i];
                }
            }
        }
        assert_eq!(unpermute(permuted, heads * per_head, cols, heads), hf);
    }
}
