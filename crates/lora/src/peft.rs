//! peft's on-disk adapter format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Tensor keys are `base_model.model.{module}.lora_A.weight` (`[r, in]`) and
//! `….lora_B.weight` (`[out, r]`), where `{module}` is the projection's path in the base model
//! (e.g. `model.layers.0.self_attn.q_proj`). The scale of a module is `α/r` (`α/√r` with
//! rsLoRA), where `r` and `α` may be overridden per module by `rank_pattern`/`alpha_pattern`.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, LoraConfig, Result, TargetModules};

/// The file names peft uses.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The weights file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

/// `adapter_config.json`, with the fields this crate reads; all other fields are kept as-is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    /// `"LORA"`.
    pub peft_type: String,
    /// Default rank.
    pub r: usize,
    /// Default α.
    pub lora_alpha: f64,
    /// Dropout used in training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Targets (a list, or a string: `"all-linear"` or a regex).
    pub target_modules: Value,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA (not supported on load).
    #[serde(default)]
    pub use_dora: bool,
    /// Bias handling (`"none"`).
    #[serde(default = "none")]
    pub bias: String,
    /// Per-module rank overrides (regex/suffix → rank).
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module α overrides.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Everything else (task type, base model name, ...).
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

fn none() -> String {
    "none".into()
}

impl PeftConfig {
    /// The config peft would write for `lora` on a causal LM called `base_model`.
    pub fn from_lora(lora: &LoraConfig, base_model: &str) -> Self {
        let targets = match &lora.target_modules {
            TargetModules::AllLinear(s) => Value::from(s.clone()),
            TargetModules::Names(n) => Value::from(n.clone()),
        };
        let mut other = serde_json::Map::new();
        for (k, v) in [
            ("task_type", Value::from("CAUSAL_LM")),
            ("base_model_name_or_path", Value::from(base_model)),
            ("inference_mode", Value::from(true)),
            ("init_lora_weights", Value::from(true)),
            ("fan_in_fan_out", Value::from(false)),
            ("modules_to_save", Value::Null),
            ("layers_to_transform", Value::Null),
            ("layers_pattern", Value::Null),
            ("revision", Value::Null),
        ] {
            other.insert(k.into(), v);
        }
        Self {
            peft_type: "LORA".into(),
            r: lora.r,
            lora_alpha: lora.alpha,
            lora_dropout: lora.dropout,
            target_modules: targets,
            use_rslora: lora.use_rslora,
            use_dora: false,
            bias: lora.bias.clone(),
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            other,
        }
    }

    /// The scale of `module` with rank `r` (from its tensors): `α/r` or `α/√r`, honouring
    /// `alpha_pattern` (a key matches when the module path ends with it).
    pub fn scaling(&self, module: &str, r: usize) -> f64 {
        let alpha = self.alpha_pattern.iter().find(|(k, _)| module.ends_with(k.as_str())).map(|(_, a)| *a).unwrap_or(self.lora_alpha);
        if self.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 }
    }
}

/// One module's factors.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterWeights {
    /// `A`, row-major `[r, in]`.
    pub a: Vec<f32>,
    /// `[r, in]`.
    pub a_shape: [usize; 2],
    /// `B`, row-major `[out, r]`.
    pub b: Vec<f32>,
    /// `[out, r]`.
    pub b_shape: [usize; 2],
}

/// An adapter folder's contents.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// The configuration.
    pub config: PeftConfig,
    /// Module path (e.g. `model.layers.0.self_attn.q_proj`) → factors.
    pub modules: BTreeMap<String, AdapterWeights>,
}

fn to_f32(path: &Path, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => {
            return Err(Error::Format { path: path.into(), message: format!("tensor `{name}` has unsupported dtype {other:?}") });
        }
    })
}

impl PeftAdapter {
    /// Reads an adapter folder written by peft (or by [`PeftAdapter::save`]).
    ///
    /// # Errors
    /// Missing files, malformed JSON/safetensors, DoRA adapters, unpaired or mis-shaped
    /// factors — each naming the file and key.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| Error::Io { path: cfg_path.clone(), source })?;
        let config: PeftConfig =
            serde_json::from_str(&text).map_err(|e| Error::Format { path: cfg_path.clone(), message: e.to_string() })?;
        if config.peft_type != "LORA" {
            return Err(Error::Format { path: cfg_path, message: format!("`peft_type` is {:?}, expected \"LORA\"", config.peft_type) });
        }
        if config.use_dora {
            return Err(Error::Format { path: cfg_path, message: "`use_dora: true` adapters are not supported".into() });
        }
        let w_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w_path).map_err(|source| Error::Io { path: w_path.clone(), source })?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Format { path: w_path.clone(), message: format!("not a valid safetensors file: {e}") })?;
        let mut halves: BTreeMap<String, (Option<(Vec<f32>, [usize; 2])>, Option<(Vec<f32>, [usize; 2])>)> = BTreeMap::new();
        for (name, view) in st.iter() {
            let bad = |m: String| Error::Format { path: w_path.clone(), message: m };
            let rest = name.strip_prefix(PREFIX).ok_or_else(|| bad(format!("unexpected key `{name}` (expected `{PREFIX}…`)")))?;
            let (module, which) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
                (m, 0)
            } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
                (m, 1)
            } else {
                return Err(bad(format!("unexpected key `{name}` (only lora_A/lora_B weights are supported)")));
            };
            let shape: [usize; 2] = view.shape().try_into().map_err(|_| bad(format!("`{name}` is not 2-D: {:?}", view.shape())))?;
            let values = to_f32(&w_path, name, view.dtype(), view.data())?;
            let entry = halves.entry(module.to_string()).or_default();
            if which == 0 { entry.0 = Some((values, shape)) } else { entry.1 = Some((values, shape)) }
        }
        let mut modules = BTreeMap::new();
        for (module, pair) in halves {
            let bad = |m: String| Error::Format { path: w_path.clone(), message: m };
            match pair {
                (Some((a, a_shape)), Some((b, b_shape))) => {
                    if a_shape[0] != b_shape[1] {
                        return Err(bad(format!("`{module}`: lora_A is {a_shape:?} but lora_B is {b_shape:?} (ranks differ)")));
                    }
                    modules.insert(module, AdapterWeights { a, a_shape, b, b_shape });
                }
                (None, _) => return Err(bad(format!("`{module}` has lora_B but no lora_A"))),
                (_, None) => return Err(bad(format!("`{module}` has lora_A but no lora_B"))),
            }
        }
        if modules.is_empty() {
            return Err(Error::Format { path: w_path, message: "no LoRA tensors".into() });
        }
        Ok(Self { config, modules })
    }

    /// The two files' contents: `(adapter_config.json, adapter_model.safetensors)`, tensors f32.
    ///
    /// # Errors
    /// [`Error::Format`] if serialization fails.
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let fail = |m: String| Error::Format { path: WEIGHTS_FILE.into(), message: m };
        let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (module, w) in &self.modules {
            tensors.push((format!("{PREFIX}{module}.lora_A.weight"), bytemuck::cast_slice(&w.a).to_vec(), w.a_shape.to_vec()));
            tensors.push((format!("{PREFIX}{module}.lora_B.weight"), bytemuck::cast_slice(&w.b).to_vec(), w.b_shape.to_vec()));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, data, shape)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| fail(e.to_string()))
            })
            .collect::<Result<_>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let weights = safetensors::serialize(views, Some(meta)).map_err(|e| fail(e.to_string()))?;
        let config = serde_json::to_string_pretty(&self.config).map_err(|e| fail(e.to_string()))?;
        Ok((config.into_bytes(), weights))
    }

    /// Writes the folder (both files atomically), tensors as f32.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.into(), source })?;
        let (config, weights) = self.to_bytes()?;
        write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
        write_atomic(&dir.join(CONFIG_FILE), &config)
    }
}

/// Writes a file atomically (temp file in the same folder, fsync, rename).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("f"), std::process::id()));
    let run = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    run().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { path: path.into(), source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_scaling() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut modules = BTreeMap::new();
        modules.insert(
            "model.layers.0.self_attn.q_proj".to_string(),
            AdapterWeights { a: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], a_shape: [2, 3], b: vec![0.5; 8], b_shape: [4, 2] },
        );
        let lora = LoraConfig { r: 2, alpha: 4.0, ..LoraConfig::default() };
        let adapter = PeftAdapter { config: PeftConfig::from_lora(&lora, "tiny"), modules };
        adapter.save(dir.path()).expect("save");
        let back = PeftAdapter::load(dir.path()).expect("load");
        assert_eq!(back.modules, adapter.modules);
        assert_eq!(back.config, adapter.config);
        assert_eq!(back.config.scaling("model.layers.0.self_attn.q_proj", 2), 2.0);
    }

    #[test]
    fn unpaired_factor_and_dora_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut modules = BTreeMap::new();
        modules.insert("m.q_proj".to_string(), AdapterWeights { a: vec![0.0; 2], a_shape: [1, 2], b: vec![0.0; 2], b_shape: [2, 1] });
        let mut adapter = PeftAdapter { config: PeftConfig::from_lora(&LoraConfig::default(), "x"), modules };
        adapter.config.use_dora = true;
        adapter.save(dir.path()).expect("save");
        let err = PeftAdapter::load(dir.path()).expect_err("dora");
        assert!(err.to_string().contains("use_dora"), "{err}");
        // Missing weights file.
        std::fs::remove_file(dir.path().join(WEIGHTS_FILE)).expect("rm");
        adapter.config.use_dora = false;
        let json = serde_json::to_string(&adapter.config).expect("json");
        std::fs::write(dir.path().join(CONFIG_FILE), json).expect("write");
        let err = PeftAdapter::load(dir.path()).expect_err("no weights");
        assert!(err.to_string().contains(WEIGHTS_FILE), "{err}");
    }
}
