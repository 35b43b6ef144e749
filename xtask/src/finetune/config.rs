//! The `finetune` recipe's one TOML file: the eight steps (set up, quantization, model,
//! tokenizer, dataset, LoRA, training arguments, try the model), every key overridable with
//! `--set section.key=value`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sft_trainer::TrainingArgs;
use sft_trainer::data::DatasetConfig;

use crate::backend::Backend;

/// The embedded default (SmolLM2-135M + Alpaca-1k, CPU).
pub const DEFAULT: &str = include_str!("../../../configs/default.toml");
/// Llama-3-8B on one CUDA GPU.
pub const LLAMA3_8B: &str = include_str!("../../../configs/llama3-8b.toml");
/// The recipe exactly (Llama-2-7B-chat, guanaco-llama2-1k).
pub const SEED: &str = include_str!("../../../configs/seed.toml");

/// The presets `--preset` accepts.
pub const PRESETS: &[(&str, &str)] = &[("default", DEFAULT), ("llama3-8b", LLAMA3_8B), ("seed", SEED)];

/// 1. Set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// The run folder (adapter, checkpoints, metrics, plots, sample).
    pub output_dir: PathBuf,
    /// Compute backend.
    pub backend: Backend,
}

/// 2. Quantization, with bitsandbytes' `BitsAndBytesConfig` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizationSection {
    /// Load the linear projections as 4-bit.
    pub load_in_4bit: bool,
    /// `nf4` or `fp4`.
    pub bnb_4bit_quant_type: String,
    /// `float32`, `bfloat16` or `float16` (compute dtype of the dequantized weights).
    pub bnb_4bit_compute_dtype: String,
    /// Double-quantize the absmax.
    pub bnb_4bit_use_double_quant: bool,
    /// Quantization block size.
    pub bnb_4bit_blocksize: usize,
}

impl Default for QuantizationSection {
    fn default() -> Self {
        Self {
            load_in_4bit: true,
            bnb_4bit_quant_type: "nf4".into(),
            bnb_4bit_compute_dtype: "float16".into(),
            bnb_4bit_use_double_quant: false,
            bnb_4bit_blocksize: 64,
        }
    }
}

/// 3. The model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A HF folder, a `.gguf`, `asset:REL`, or a hub id.
    pub name: String,
}

/// 4. The tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerSection {
    /// A `tokenizer.json` to use instead of the model's own.
    pub path: Option<PathBuf>,
    /// Only `eos` (trl's and the recipe's choice).
    pub pad_token: String,
    /// Only `right`.
    pub padding_side: String,
    /// Prepend BOS to text rows as HF's Llama tokenizers do (`None`: as the model's tokenizer
    /// settings say — `add_bos_token` of its `tokenizer_config.json` or GGUF — defaulting to
    /// yes when the model has a BOS its tokenizer does not add).
    pub add_bos_token: Option<bool>,
}

impl Default for TokenizerSection {
    fn default() -> Self {
        Self { path: None, pad_token: "eos".into(), padding_side: "right".into(), add_bos_token: None }
    }
}

/// 8. Try the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrySection {
    /// The question.
    pub prompt: String,
    /// `llama2-raw` (`<s>[INST] {prompt} [/INST]`, as the recipe does), `raw` (the prompt as
    /// is), or a built-in chat template (`llama2`, `llama3`, `chatml`, `alpaca`).
    pub template: String,
    /// Prompt plus answer tokens at most (the pipeline's `max_length`).
    pub max_length: usize,
}

impl Default for TrySection {
    fn default() -> Self {
        Self { prompt: "What is a large language model?".into(), template: "llama2-raw".into(), max_length: 200 }
    }
}

/// The whole recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// 1. Set up.
    pub run: RunSection,
    /// 2. Quantization.
    #[serde(default)]
    pub quantization: QuantizationSection,
    /// 3. Model.
    pub model: ModelSection,
    /// 4. Tokenizer.
    #[serde(default)]
    pub tokenizer: TokenizerSection,
    /// 5. Dataset.
    #[serde(default)]
    pub dataset: DatasetConfig,
    /// 6. LoRA.
    #[serde(default)]
    pub lora: lora::LoraConfig,
    /// 7. Training arguments.
    #[serde(default)]
    pub training: TrainingArgs,
    /// 8. Try the model.
    #[serde(default)]
    pub try_model: TrySection,
    /// Optional: an LLM judge scores the model on goldens at every evaluation step.
    #[serde(default)]
    pub judge: super::judge::JudgeSection,
}

/// Sets `path` (dotted, e.g. `training.max_steps`) in a TOML tree to `raw`, parsed as a TOML
/// value when it is one (numbers, booleans, arrays) and as a string otherwise.
fn set_path(root: &mut toml::Table, path: &str, raw: &str) -> Result<()> {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().context("empty key")?;
    let mut table = root;
    for p in parents {
        let entry = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().with_context(|| format!("`{p}` in `{path}` is not a section"))?;
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    table.insert(last.to_string(), value);
    Ok(())
}

impl FinetuneConfig {
    /// Parses a config text with `--set` overrides applied; `origin` names it in errors.
    ///
    /// # Errors
    /// Bad TOML, an unknown key (named), a value of the wrong type, an override without `=`.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = text.parse().with_context(|| format!("{origin}: not valid TOML"))?;
        for o in overrides {
            let Some((k, v)) = o.split_once('=') else { bail!("--set {o}: expected key=value") };
            set_path(&mut table, k.trim(), v.trim()).with_context(|| format!("--set {o}"))?;
        }
        // Through text, so that a type error shows the offending `key = value` line.
        let merged = toml::to_string(&table).with_context(|| format!("{origin}: re-serializing the overrides"))?;
        let config: Self = toml::from_str(&merged).map_err(|e: toml::de::Error| anyhow::anyhow!("{origin}: {e}"))?;
        config.validate().with_context(|| format!("{origin}: invalid settings"))?;
        Ok(config)
    }

    /// Reads a config file (or a preset name) with overrides.
    ///
    /// # Errors
    /// See [`FinetuneConfig::parse`]; an unreadable file names it.
    pub fn load(file: Option<&Path>, preset: Option<&str>, overrides: &[String]) -> Result<Self> {
        match (file, preset) {
            (Some(_), Some(_)) => bail!("give --config or --preset, not both"),
            (Some(f), None) => {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                Self::parse(&text, &f.display().to_string(), overrides)
            }
            (None, p) => {
                let name = p.unwrap_or("default");
                let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).with_context(|| {
                    format!("unknown preset `{name}`; presets: {}", PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
                })?;
                Self::parse(text, &format!("preset `{name}`"), overrides)
            }
        }
    }

    /// Checks the values serde cannot.
    ///
    /// # Errors
    /// Names the offending key.
    pub fn validate(&self) -> Result<()> {
        self.training.validate()?;
        self.lora.validate()?;
        self.dataset.validate()?;
        let q = &self.quantization;
        if !matches!(q.bnb_4bit_quant_type.as_str(), "nf4" | "fp4") {
            bail!("`quantization.bnb_4bit_quant_type` must be \"nf4\" or \"fp4\"");
        }
        if !matches!(q.bnb_4bit_compute_dtype.as_str(), "float32" | "bfloat16" | "float16") {
            bail!("`quantization.bnb_4bit_compute_dtype` must be float32, bfloat16 or float16");
        }
        if self.tokenizer.pad_token != "eos" || self.tokenizer.padding_side != "right" {
            bail!("`tokenizer`: only pad_token = \"eos\" and padding_side = \"right\" are supported");
        }
        Ok(())
    }

    /// The TOML text of the resolved config (saved beside the outputs).
    ///
    /// # Errors
    /// Serialization failures.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_parses_and_round_trips() {
        for (name, text) in PRESETS {
            let c = FinetuneConfig::parse(text, name, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let again = FinetuneConfig::parse(&c.to_toml().expect("toml"), name, &[]).expect("round trip");
            assert_eq!(c, again, "{name}");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let files =
            std::fs::read_dir(&dir).expect("configs/").flatten().filter(|e| e.path().extension().is_some_and(|x| x == "toml")).count();
        assert_eq!(files, PRESETS.len(), "every file in configs/ is a preset");
    }

    #[test]
    fn overrides_apply_with_types() {
        let c = FinetuneConfig::parse(
            DEFAULT,
            "default",
            &["training.max_steps=3".into(), "lora.target_modules=[\"q_proj\"]".into(), "run.output_dir=/tmp/x".into()],
        )
        .expect("valid");
        assert_eq!(c.training.max_steps, Some(3));
        assert_eq!(c.run.output_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.lora.target_modules.resolve().expect("ok"), vec!["q_proj"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = FinetuneConfig::parse(DEFAULT, "default", &["training.learning_rat=1".into()]).expect_err("typo");
        assert!(format!("{err:#}").contains("learning_rat"), "{err:#}");
        let err = FinetuneConfig::parse(DEFAULT, "default", &["lora.target_modules=[\"qkv\"]".into()]).expect_err("bad target");
        assert!(format!("{err:#}").contains("qkv"), "{err:#}");
        let err = FinetuneConfig::parse(DEFAULT, "default", &["training.max_steps=many".into()]).expect_err("type");
        assert!(format!("{err:#}").contains("max_steps"), "{err:#}");
        let err = FinetuneConfig::parse(DEFAULT, "default", &["nokey".into()]).expect_err("no =");
        assert!(format!("{err:#}").contains("key=value"), "{err:#}");
    }
}
