//! LoRA adapters on a [`Llama`]: attach fresh ones for training, apply peft adapters from
//! disk, save in peft's format, merge into dense weights.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, Tensor, TensorData};
use lora::{AdapterWeights, LoraAdapter, LoraConfig, PeftAdapter, PeftConfig};

use crate::model::Llama;
use crate::{Error, Result};

/// The projection name (`q_proj`, ...) at the end of a module path.
fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Attaches fresh adapters (peft init: A Kaiming-uniform, B zero) to the projections that
/// `config` targets; returns how many trainable parameters they add.
///
/// # Errors
/// An invalid config (unknown target, bad dropout...).
pub fn attach_lora(model: &mut Llama, config: &LoraConfig) -> Result<usize> {
    config.validate()?;
    let targets = config.target_modules.resolve()?;
    let device = model.embed_tokens.device();
    let mut count = 0;
    for (path, p) in model.projections_mut() {
        if targets.contains(&leaf(&path)) {
            let [d_out, d_in] = p.dims();
            let adapter = LoraAdapter::init(d_in, d_out, config.r, config.scaling(), config.dropout, &device);
            count += adapter.num_trainable();
            p.lora = Some(adapter);
        }
    }
    Ok(count)
}

/// Applies a peft adapter folder to the model (inference: no dropout).
///
/// # Errors
/// A malformed folder, or a module the model does not have / whose shapes disagree, named.
pub fn apply_peft_adapter(model: &mut Llama, dir: &Path) -> Result<()> {
    let adapter = PeftAdapter::load(dir)?;
    apply_adapter(model, &adapter, dir)
}

/// Applies loaded peft factors to the model, in the model's dtype (inference).
///
/// # Errors
/// A module the model does not have, or factors whose shapes disagree with it, named.
pub fn apply_adapter(model: &mut Llama, adapter: &PeftAdapter, origin: &Path) -> Result<()> {
    let dtype = model.embed_tokens.dtype();
    apply_adapter_as(model, adapter, origin, dtype)
}

/// [`apply_adapter`] with the factors in `dtype` (a resumed training run keeps its f32 factors
/// f32 in a bf16 model, as [`attach_lora`] made them).
///
/// # Errors
/// As [`apply_adapter`].
pub fn apply_adapter_as(model: &mut Llama, adapter: &PeftAdapter, origin: &Path, dtype: DType) -> Result<()> {
    let device = model.embed_tokens.device();
    let mut projections: BTreeMap<String, &mut lora::Projection> = model.projections_mut().into_iter().collect();
    for (module, w) in &adapter.modules {
        let p = projections
            .get_mut(module)
            .ok_or_else(|| Error::format(origin, format!("adapter module `{module}` is not a projection of this model")))?;
        let [d_out, d_in] = p.dims();
        if w.a_shape[1] != d_in || w.b_shape[0] != d_out {
            return Err(Error::format(
                origin,
                format!(
                    "adapter module `{module}`: lora_A {:?} / lora_B {:?} do not fit a [{d_out}, {d_in}] projection",
                    w.a_shape, w.b_shape
                ),
            ));
        }
        let a = Tensor::<2>::from_data(TensorData::new(w.a.clone(), w.a_shape), &device).cast(dtype);
        let b = Tensor::<2>::from_data(TensorData::new(w.b.clone(), w.b_shape), &device).cast(dtype);
        let scaling = adapter.config.scaling(module, w.a_shape[0]);
        p.lora = Some(LoraAdapter::from_tensors(a, b, scaling, 0.0));
    }
    Ok(())
}

/// The model's adapters as peft factors.
///
/// # Errors
/// Reading tensor data back from the device.
pub fn extract_adapter(model: &Llama, config: &LoraConfig, base_model: &str) -> Result<PeftAdapter> {
    let mut modules = BTreeMap::new();
    for (path, p) in model.projections() {
        if let Some(l) = &p.lora {
            let read = |t: Tensor<2>| -> Result<(Vec<f32>, [usize; 2])> {
                let shape = t.dims();
                let v = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Generation(format!("{e:?}")))?;
                Ok((v, shape))
            };
            let (a, a_shape) = read(l.a.val())?;
            let (b, b_shape) = read(l.b.val())?;
            modules.insert(path, AdapterWeights { a, a_shape, b, b_shape });
        }
    }
    Ok(PeftAdapter { config: PeftConfig::from_lora(config, base_model), modules })
}

/// Saves the model's adapters as a peft folder.
///
/// # Errors
/// See [`extract_adapter`] and [`PeftAdapter::save`].
pub fn save_peft_adapter(model: &Llama, config: &LoraConfig, base_model: &str, dir: &Path) -> Result<()> {
    extract_adapter(model, config, base_model)?.save(dir).map_err(Error::from)
}

/// Folds every adapter into its (dense or dequantized) base weight.
pub fn merge_adapters(mut model: Llama) -> Llama {
    for (_, p) in model.projections_mut() {
        let base = p.base.clone();
        let taken = std::mem::replace(p, lora::Projection::new(base));
        *p = taken.merge();
    }
    model
}
