//! Writing a model as an HF folder (`config.json` + `model.safetensors`), e.g. after merging
//! adapters. Tensor names mirror [`crate::load`].

use std::path::Path;

use burn::tensor::Tensor;
use safetensors::Dtype;

use crate::model::Llama;
use crate::{Error, Result};

fn host<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>)> {
    let shape = t.dims().to_vec();
    let v = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Generation(format!("{e:?}")))?;
    Ok((shape, v))
}

/// All tensors of the model, dense, with their HF names (packed bases dequantized; adapters
/// must be merged first).
///
/// # Errors
/// A projection that still has an adapter, or tensor read-back failures.
pub fn named_tensors(model: &Llama) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    named_tensors_with(model, |_| true)
}

/// [`named_tensors`] restricted to projections whose module path passes `keep` (non-projection
/// tensors are always included).
///
/// # Errors
/// See [`named_tensors`].
pub fn named_tensors_with(model: &Llama, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    let mut out = Vec::new();
    let table = model.embed_tokens.to_data();
    let shape = table.shape().to_vec();
    let v = table.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Generation(format!("{e:?}")))?;
    out.push(("model.embed_tokens.weight".to_string(), shape, v));
    for (i, b) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let (s, v) = host(b.input_layernorm.weight.val())?;
        out.push((format!("{p}.input_layernorm.weight"), s, v));
        let (s, v) = host(b.post_attention_layernorm.weight.val())?;
        out.push((format!("{p}.post_attention_layernorm.weight"), s, v));
    }
    for (path, proj) in model.projections() {
        if !keep(&path) {
            continue;
        }
        if proj.lora.is_some() {
            return Err(Error::Generation(format!("`{path}` still has an adapter; merge before saving")));
        }
        // Packed bases are written dequantized (a merged model is dense, as peft's merge is).
        let (s, v) = host(proj.base.dense_weight())?;
        out.push((format!("{path}.weight"), s, v));
        if let Some(bias) = proj.base.bias() {
            let (s, v) = host(bias)?;
            out.push((format!("{path}.bias"), s, v));
        }
    }
    let (s, v) = host(model.norm.weight.val())?;
    out.push(("model.norm.weight".to_string(), s, v));
    if let Some(head) = &model.lm_head {
        let (s, v) = host(head.base.dense_weight())?;
        out.push(("lm_head.weight".to_string(), s, v));
    }
    Ok(out)
}

/// Writes `config.json` and `model.safetensors` (f32) into `dir`, atomically per file.
///
/// # Errors
/// See [`named_tensors`]; I/O errors name the file.
pub fn save_hf_folder(model: &Llama, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tensors = named_tensors(model)?;
    let views = tensors
        .iter()
        .map(|(n, s, v)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(v))
                .map(|view| (n.clone(), view))
                .map_err(|e| Error::format(dir.join("model.safetensors"), e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::format(dir.join("model.safetensors"), e.to_string()))?;
    crate::io::write_atomic(&dir.join("model.safetensors"), &bytes)?;
    crate::io::write_atomic(&dir.join("config.json"), model.config.to_hf_json().as_bytes())
}
