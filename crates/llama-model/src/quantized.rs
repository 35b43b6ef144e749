//! Checkpoints in the bitsandbytes 4-bit layout that transformers writes: a projection
//! `P.weight` stored as packed `u8` with `P.weight.absmax`, `.quant_map`, `.nested_absmax`,
//! `.nested_quant_map` and `.quant_state.bitsandbytes__nf4`, plus `quantization_config` in
//! `config.json`. Reading them, and writing them (`xtask quantize`).

use std::collections::BTreeMap;
use std::path::Path;

use nf4_quant::hf::HF_SUFFIXES;
use nf4_quant::{BnbQuantizationConfig, HfDType, HfTensor, HfTensorView, Nf4Tensor, QuantConfig, SourceDType};
use safetensors::Dtype;

use crate::model::Llama;
use crate::weights::{StoredDtype, WeightSource};
use crate::{Error, Result};

/// A packed weight read from a checkpoint, with the tensor names it consumed.
pub struct Packed {
    /// The weight.
    pub tensor: Nf4Tensor,
    /// Every tensor name it was read from.
    pub names: Vec<String>,
}

/// Reads `name` as a bitsandbytes 4-bit weight when the checkpoint stores it that way
/// (`None` when it is a plain dense tensor).
///
/// # Errors
/// A malformed 4-bit state, or a packed shape that is not `shape`, naming the tensor.
pub fn read_packed(source: &dyn WeightSource, name: &str, shape: [usize; 2]) -> Result<Option<Packed>> {
    let is_packed = ["nf4", "fp4"].iter().any(|q| source.info(&format!("{name}.quant_state.bitsandbytes__{q}")).is_some());
    if !is_packed {
        return Ok(None);
    }
    let mut names = vec![name.to_string()];
    let mut raw: BTreeMap<String, (HfDType, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for n in std::iter::once(name.to_string()).chain(HF_SUFFIXES.iter().map(|s| format!("{name}.{s}"))) {
        if source.info(&n).is_none() {
            continue;
        }
        let (dtype, shape, bytes) = source.read_raw(&n)?;
        let dtype = match dtype {
            StoredDtype::U8 => HfDType::U8,
            StoredDtype::F32 => HfDType::F32,
            other => return Err(Error::Dtype { path: source.origin().into(), name: n, dtype: format!("{other:?}") }),
        };
        if n != name {
            names.push(n.clone());
        }
        raw.insert(n, (dtype, shape, bytes));
    }
    let tensor = Nf4Tensor::from_hf_tensors(name, |n| raw.get(n).map(|(d, s, b)| HfTensorView { dtype: *d, shape: s.clone(), data: b }))
        .map_err(|e| Error::format(source.origin(), e.to_string()))?;
    if tensor.shape() != shape {
        return Err(Error::Shape {
            path: source.origin().into(),
            name: name.into(),
            found: tensor.shape().to_vec(),
            expected: shape.to_vec(),
        });
    }
    Ok(Some(Packed { tensor, names }))
}

/// Writes `model` as an HF folder in the bitsandbytes 4-bit layout: every block projection
/// quantized with `quant` (already-packed ones kept as they are), other tensors as f32, and
/// `config.json` with its `quantization_config` (`bnb_4bit_compute_dtype` = `compute_dtype`).
///
/// # Errors
/// A projection with an adapter, quantization or I/O failures (naming the file).
pub fn save_quantized(model: &Llama, quant: &QuantConfig, compute_dtype: SourceDType, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut out: Vec<HfTensor> = Vec::new();
    // Tensors that stay dense are stored as f32; loaders cast them to their compute dtype.
    let dense = |name: String, shape: Vec<usize>, values: Vec<f32>| -> HfTensor {
        HfTensor { name, dtype: HfDType::F32, shape, data: bytemuck::cast_slice(&values).to_vec() }
    };
    let projections: BTreeMap<String, &lora::Projection> = model.projections().into_iter().collect();
    for (name, shape, values) in crate::save::named_tensors_with(model, |path| !projections.contains_key(path))? {
        out.push(dense(name, shape, values));
    }
    for (path, p) in &projections {
        if p.lora.is_some() {
            return Err(Error::Generation(format!("`{path}` has an adapter; merge it first")));
        }
        let tensor = match &p.base {
            lora::BaseLinear::Nf4(l) => l.quantized_weight().map_err(|e| Error::format(dir, e.to_string()))?,
            lora::BaseLinear::Dense(d) => {
                let w = d.weight.val();
                let dims = w.dims();
                let values = w.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Generation(format!("{e:?}")))?;
                Nf4Tensor::quantize(&values, &dims, quant).map_err(|e| Error::format(dir, format!("`{path}`: {e}")))?
            }
        };
        out.extend(tensor.to_hf_tensors(&format!("{path}.weight")));
        if let Some(b) = p.base.bias() {
            let values = b.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Generation(format!("{e:?}")))?;
            out.push(dense(format!("{path}.bias"), vec![values.len()], values));
        }
    }
    let views = out
        .iter()
        .map(|t| {
            let dtype = match t.dtype {
                HfDType::U8 => Dtype::U8,
                HfDType::F32 => Dtype::F32,
            };
            safetensors::tensor::TensorView::new(dtype, t.shape.clone(), &t.data).map(|v| (t.name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::format(dir.join("model.safetensors"), e.to_string()))?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::format(dir.join("model.safetensors"), e.to_string()))?;
    crate::io::write_atomic(&dir.join("model.safetensors"), &bytes)?;
    let mut config: serde_json::Value = serde_json::from_str(&model.config.to_hf_json()).map_err(|e| Error::format(dir, e.to_string()))?;
    let qc = BnbQuantizationConfig::new(quant, compute_dtype).map_err(|e| Error::format(dir, e.to_string()))?;
    config["quantization_config"] = qc.to_json();
    config["torch_dtype"] = serde_json::Value::from("float32");
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::format(dir, e.to_string()))?;
    crate::io::write_atomic(&dir.join("config.json"), text.as_bytes())
}
