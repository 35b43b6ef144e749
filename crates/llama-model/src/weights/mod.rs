//! Where weights come from: one [`WeightSource`] trait over safetensors files (single or
//! sharded), GGUF files, and the hub (which only downloads into a local folder).
//!
//! Every source answers in HF tensor names (`model.layers.0.self_attn.q_proj.weight`) and HF
//! layouts (`[out, in]`, q/k rows in rotate-half order); translating a format's own names and
//! layouts is the source's job, so the model builder knows one naming only.

pub mod gguf;
pub mod gguf_quants;
pub mod hub;
pub mod safetensors;

use std::path::Path;

use crate::Result;

/// The element type a tensor is stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    /// IEEE f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    BF16,
    /// Unsigned bytes (packed quantized data).
    U8,
    /// Any other type (kept as its name for messages).
    Other(&'static str),
}

/// Shape and dtype of a stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Logical shape in HF layout.
    pub shape: Vec<usize>,
    /// Storage type (for GGUF block-quantized tensors, the GGUF type name).
    pub dtype: String,
}

/// A read-only store of named tensors in HF naming and layout.
pub trait WeightSource: Send + Sync {
    /// The file or folder the tensors come from (for error messages).
    fn origin(&self) -> &Path;
    /// All tensor names, sorted.
    fn names(&self) -> Vec<String>;
    /// Shape and dtype of one tensor, if present.
    fn info(&self, name: &str) -> Option<TensorInfo>;
    /// The tensor's values converted (or dequantized) to f32, row-major in HF layout.
    ///
    /// # Errors
    /// A missing tensor, an unsupported dtype, or malformed data, each naming the tensor.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>>;
    /// The tensor's raw bytes as stored (for already-packed data such as NF4 checkpoints).
    ///
    /// # Errors
    /// A missing tensor, or a source that cannot expose raw bytes.
    fn read_raw(&self, name: &str) -> Result<(StoredDtype, Vec<usize>, Vec<u8>)>;
    /// Format-level metadata (GGUF key/values, safetensors `__metadata__`), as JSON.
    fn metadata(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Opens a weights source from a path: a `.gguf` file, a `.safetensors` file, a
/// `model.safetensors.index.json`, or a folder holding either safetensors layout.
///
/// # Errors
/// [`crate::Error::Io`] / [`crate::Error::Format`] naming the file.
pub fn open(path: &Path) -> Result<Box<dyn WeightSource>> {
    if path.is_dir() {
        return Ok(Box::new(safetensors::SafetensorsSource::open_dir(path)?));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(".gguf") {
        Ok(Box::new(gguf::GgufSource::open(path)?))
    } else if name.ends_with(".index.json") {
        Ok(Box::new(safetensors::SafetensorsSource::open_index(path)?))
    } else {
        Ok(Box::new(safetensors::SafetensorsSource::open_file(path)?))
    }
}
