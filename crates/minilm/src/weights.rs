//! Loading HF BERT weights from a memory-mapped `model.safetensors`.
//!
//! HF names live only here, scoped per block: `embeddings.*`, `encoder.layer.{i}.attention.self.{query,key,value}`,
//! `encoder.layer.{i}.attention.output.{dense,LayerNorm}`, `encoder.layer.{i}.intermediate.dense`,
//! `encoder.layer.{i}.output.{dense,LayerNorm}` (with a `bert.` prefix in some checkpoints).
//! HF linear weights are `[out, in]`; burn's [`Linear`] holds `[in, out]`, so they are
//! transposed on load.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::BertConfig;
use crate::model::BertModel;
use crate::{Error, Result};

/// A view over the tensors of one safetensors file.
struct Weights<'a> {
    path: PathBuf,
    file: SafeTensors<'a>,
    prefix: &'static str,
    device: Device,
}

impl Weights<'_> {
    /// The tensor `name` as f32 values, checked against `shape`.
    fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let view = self.file.tensor(&full).map_err(|_| Error::MissingTensor { path: self.path.clone(), name: full.clone() })?;
        let bad = |detail: String| Error::BadTensor { path: self.path.clone(), name: full.clone(), detail };
        if view.shape() != shape {
            return Err(bad(format!("expected shape {shape:?}, found {:?}", view.shape())));
        }
        let bytes = view.data();
        let values = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(bad(format!("unsupported dtype {other:?} (expected F32, F16 or BF16)")));
            }
        };
        Ok(values)
    }

    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let values = self.values(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), &self.device))
    }

    /// A HF `nn.Linear` (`weight [out, in]`, `bias [out]`) as a burn [`Linear`].
    fn linear(&self, prefix: &str, d_in: usize, d_out: usize) -> Result<Linear> {
        let w = self.values(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                t[i * d_out + o] = w[o * d_in + i];
            }
        }
        let weight = Tensor::from_data(TensorData::new(t, [d_in, d_out]), &self.device);
        let bias = self.tensor(&format!("{prefix}.bias"), [d_out])?;
        Ok(Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) })
    }

    /// A HF `LayerNorm` (`weight`, `bias`) into an initialized [`LayerNorm`] (keeps its epsilon).
    fn layer_norm(&self, prefix: &str, d: usize, mut norm: LayerNorm) -> Result<LayerNorm> {
        norm.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [d])?);
        norm.beta = Some(Param::from_tensor(self.tensor(&format!("{prefix}.bias"), [d])?));
        Ok(norm)
    }

    fn embedding(&self, name: &str, rows: usize, d: usize) -> Result<Embedding> {
        Ok(Embedding { weight: Param::from_tensor(self.tensor(name, [rows, d])?) })
    }
}

/// Loads a BERT encoder of shape `config` from a safetensors file.
///
/// # Errors
/// [`Error::Io`] (unreadable), [`Error::Safetensors`] (not safetensors),
/// [`Error::MissingTensor`] / [`Error::BadTensor`] naming the tensor.
pub fn load_bert(config: &BertConfig, path: &Path, device: &Device) -> Result<BertModel> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    // SAFETY: the map is read-only and lives only for this function; a file changed by another
    // process while it is mapped may give wrong values, which shape checks partly catch.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let file = SafeTensors::deserialize(&mmap).map_err(|e| Error::Safetensors { path: path.to_path_buf(), detail: e.to_string() })?;
    let prefix = if file.tensor("bert.embeddings.word_embeddings.weight").is_ok() { "bert." } else { "" };
    let w = Weights { path: path.to_path_buf(), file, prefix, device: device.clone() };

    let d = config.hidden_size;
    let ff = config.intermediate_size;
    let mut model = config.init(device);
    let e = &mut model.embeddings;
    e.word = w.embedding("embeddings.word_embeddings.weight", config.vocab_size, d)?;
    e.position = w.embedding("embeddings.position_embeddings.weight", config.max_positions, d)?;
    e.token_type = w.embedding("embeddings.token_type_embeddings.weight", config.type_vocab_size, d)?;
    e.norm = w.layer_norm("embeddings.LayerNorm", d, e.norm.clone())?;
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let p = format!("encoder.layer.{i}");
        layer.query = w.linear(&format!("{p}.attention.self.query"), d, d)?;
        layer.key = w.linear(&format!("{p}.attention.self.key"), d, d)?;
        layer.value = w.linear(&format!("{p}.attention.self.value"), d, d)?;
        layer.attention_output = w.linear(&format!("{p}.attention.output.dense"), d, d)?;
        layer.attention_norm = w.layer_norm(&format!("{p}.attention.output.LayerNorm"), d, layer.attention_norm.clone())?;
        layer.intermediate = w.linear(&format!("{p}.intermediate.dense"), d, ff)?;
        layer.output = w.linear(&format!("{p}.output.dense"), ff, d)?;
        layer.output_norm = w.layer_norm(&format!("{p}.output.LayerNorm"), d, layer.output_norm.clone())?;
    }
    tracing::debug!(path = %path.display(), layers = config.num_layers, "loaded BERT weights");
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Writes a safetensors file holding every tensor of a tiny config, optionally dropping or
    /// reshaping one of them.
    fn write_tiny(dir: &Path, cfg: &BertConfig, drop: Option<&str>, reshape: Option<&str>) -> PathBuf {
        let d = cfg.hidden_size;
        let ff = cfg.intermediate_size;
        let mut specs: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![cfg.vocab_size, d]),
            ("embeddings.position_embeddings.weight".into(), vec![cfg.max_positions, d]),
            ("embeddings.token_type_embeddings.weight".into(), vec![cfg.type_vocab_size, d]),
            ("embeddings.LayerNorm.weight".into(), vec![d]),
            ("embeddings.LayerNorm.bias".into(), vec![d]),
        ];
        for i in 0..cfg.num_layers {
            let p = format!("encoder.layer.{i}");
            for (n, o, inp) in [
                ("attention.self.query", d, d),
                ("attention.self.key", d, d),
                ("attention.self.value", d, d),
                ("attention.output.dense", d, d),
                ("intermediate.dense", ff, d),
                ("output.dense", d, ff),
            ] {
                specs.push((format!("{p}.{n}.weight"), vec![o, inp]));
                specs.push((format!("{p}.{n}.bias"), vec![o]));
            }
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                specs.push((format!("{p}.{n}.weight"), vec![d]));
                specs.push((format!("{p}.{n}.bias"), vec![d]));
            }
        }
        let mut data: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
        for (name, mut shape) in specs {
            if drop == Some(name.as_str()) {
                continue;
            }
            if reshape == Some(name.as_str()) {
                shape[0] += 1;
            }
            let n: usize = shape.iter().product();
            let bytes = (0..n).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
            data.insert(name, (shape, bytes));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(k, (s, b))| (k.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).expect("view")))
            .collect();
        let path = dir.join("model.safetensors");
        safetensors::serialize_to_file(views, None, &path).expect("serialize");
        path
    }

    fn tiny() -> BertConfig {
        BertConfig::new(10, 4, 1, 2, 8, 6)
    }

    #[test]
    fn loads_and_transposes_linear_weights() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_tiny(dir.path(), &tiny(), None, None);
        let model = load_bert(&tiny(), &path, &Device::flex()).expect("loads");
        // HF query.weight [out=4, in=4] holds o*4+i (×0.01) at [o, i]; burn holds [in, out].
        let w = model.layers[0].query.weight.val().into_data().try_to_vec::<f32>().expect("f32");
        let (i, o) = (1usize, 2usize);
        assert!((w[i * 4 + o] - (o * 4 + i) as f32 * 0.01).abs() < 1e-6);
    }

    #[test]
    fn missing_tensor_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = "encoder.layer.0.attention.self.key.bias";
        let path = write_tiny(dir.path(), &tiny(), Some(gone), None);
        let err = load_bert(&tiny(), &path, &Device::flex()).expect_err("missing");
        let text = err.to_string();
        assert!(text.contains(gone) && text.contains("model.safetensors"), "{text}");
    }

    #[test]
    fn misshaped_tensor_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = "encoder.layer.0.intermediate.dense.weight";
        let path = write_tiny(dir.path(), &tiny(), None, Some(bad));
        let err = load_bert(&tiny(), &path, &Device::flex()).expect_err("misshaped");
        let text = err.to_string();
        assert!(text.contains(bad) && text.contains("[8, 4]") && text.contains("[9, 4]"), "{text}");
    }

    #[test]
    fn not_safetensors_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"garbage").expect("write");
        let err = load_bert(&tiny(), &path, &Device::flex()).expect_err("garbage");
        assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    }
}
