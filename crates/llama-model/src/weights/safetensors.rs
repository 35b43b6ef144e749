//! HF safetensors checkpoints: one file, or shards listed by `model.safetensors.index.json`;
//! memory-mapped, converted per tensor on demand.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::{StoredDtype, TensorInfo, WeightSource};
use crate::{Error, Result};

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section.
    data_start: usize,
    tensors: BTreeMap<String, safetensors::tensor::TensorInfo>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only and only read through this map; as with any
        // memory map, a concurrent writer truncating the file is outside our control.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (header, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
        let tensors = metadata.tensors().into_iter().map(|(name, info)| (name, info.clone())).collect();
        Ok(Self { path: path.to_path_buf(), mmap, data_start: 8 + header, tensors })
    }

    fn bytes(&self, info: &safetensors::tensor::TensorInfo) -> &[u8] {
        let (a, b) = info.data_offsets;
        &self.mmap[self.data_start + a..self.data_start + b]
    }
}

/// One or several memory-mapped safetensors files.
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// One `.safetensors` file.
    ///
    /// # Errors
    /// Unreadable or malformed (e.g. truncated) file.
    pub fn open_file(path: &Path) -> Result<Self> {
        let shard = Shard::open(path)?;
        let index = shard.tensors.keys().map(|k| (k.clone(), 0)).collect();
        Ok(Self { origin: path.to_path_buf(), shards: vec![shard], index })
    }

    /// A sharded checkpoint from its `*.safetensors.index.json` (`weight_map`: name → file).
    ///
    /// # Errors
    /// Unreadable index, a listed shard missing or malformed, or a tensor the index places in a
    /// shard that does not hold it.
    pub fn open_index(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
        let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::format(path, "missing `weight_map` object"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<String> = Vec::new();
        let mut index = BTreeMap::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| Error::format(path, format!("`weight_map.{name}` is not a file name")))?;
            let at = match files.iter().position(|f| f == file) {
                Some(i) => i,
                None => {
                    files.push(file.to_string());
                    files.len() - 1
                }
            };
            index.insert(name.clone(), at);
        }
        let shards = files.iter().map(|f| Shard::open(&dir.join(f))).collect::<Result<Vec<_>>>()?;
        for (name, &at) in &index {
            if !shards[at].tensors.contains_key(name) {
                return Err(Error::format(
                    &shards[at].path,
                    format!("the index places tensor `{name}` here, but the shard does not hold it"),
                ));
            }
        }
        Ok(Self { origin: path.to_path_buf(), shards, index })
    }

    /// A folder with `model.safetensors.index.json` or `model.safetensors` (or exactly one
    /// `*.safetensors`).
    ///
    /// # Errors
    /// No checkpoint in the folder, or a malformed one.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            return Self::open_index(&index);
        }
        let single = dir.join("model.safetensors");
        if single.exists() {
            return Self::open_file(&single);
        }
        let found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        match found.as_slice() {
            [one] => Self::open_file(one),
            [] => Err(Error::format(dir, "no model.safetensors, index or *.safetensors file here")),
            _ => Err(Error::format(dir, "several *.safetensors files but no model.safetensors.index.json")),
        }
    }

    fn lookup(&self, name: &str) -> Result<(&Shard, &safetensors::tensor::TensorInfo)> {
        let missing = || Error::MissingTensor { path: self.origin.clone(), name: name.to_string() };
        let &at = self.index.get(name).ok_or_else(missing)?;
        let shard = &self.shards[at];
        let info = shard.tensors.get(name).ok_or_else(missing)?;
        Ok((shard, info))
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        let (_, info) = self.lookup(name).ok()?;
        Some(TensorInfo { shape: info.shape.clone(), dtype: dtype_name(info.dtype) })
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (shard, info) = self.lookup(name)?;
        let bytes = shard.bytes(info);
        let out = match info.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => {
                bytes.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32).collect()
            }
            other => {
                return Err(Error::Dtype { path: shard.path.clone(), name: name.into(), dtype: dtype_name(other) });
            }
        };
        Ok(out)
    }

    fn read_raw(&self, name: &str) -> Result<(StoredDtype, Vec<usize>, Vec<u8>)> {
        let (shard, info) = self.lookup(name)?;
        let dtype = match info.dtype {
            Dtype::F32 => StoredDtype::F32,
            Dtype::F16 => StoredDtype::F16,
            Dtype::BF16 => StoredDtype::BF16,
            Dtype::U8 => StoredDtype::U8,
            _ => StoredDtype::Other("other"),
        };
        Ok((dtype, info.shape.clone(), shard.bytes(info).to_vec()))
    }

    fn metadata(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
