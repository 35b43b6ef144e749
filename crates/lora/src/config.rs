//! LoRA hyper-parameters and target selection, with peft's names and defaults.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The seven linear projections of a Llama decoder block, in peft's names.
pub const LLAMA_PROJECTIONS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Which projections get an adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Every linear projection except the output head (peft's `"all-linear"`).
    AllLinear(String),
    /// An explicit list of projection names.
    Names(Vec<String>),
}

impl Default for TargetModules {
    /// peft's default for Llama models: `q_proj` and `v_proj`.
    fn default() -> Self {
        TargetModules::Names(vec!["q_proj".into(), "v_proj".into()])
    }
}

impl TargetModules {
    /// Parses a comma-separated list, or `all-linear`.
    ///
    /// # Errors
    /// [`Error::UnknownTarget`] listing the valid names.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text == "all-linear" {
            return Ok(TargetModules::AllLinear(text.into()));
        }
        let names: Vec<String> = text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let targets = TargetModules::Names(names);
        targets.resolve()?;
        Ok(targets)
    }

    /// The projection names selected, in canonical order.
    ///
    /// # Errors
    /// [`Error::UnknownTarget`] for a name that is not a projection, listing the valid ones.
    pub fn resolve(&self) -> Result<Vec<&'static str>> {
        match self {
            TargetModules::AllLinear(s) if s == "all-linear" => Ok(LLAMA_PROJECTIONS.to_vec()),
            TargetModules::AllLinear(s) => Err(unknown(s)),
            TargetModules::Names(names) => {
                if names.is_empty() {
                    return Err(Error::InvalidConfig("`target_modules` is empty".into()));
                }
                for n in names {
                    if !LLAMA_PROJECTIONS.contains(&n.as_str()) {
                        return Err(unknown(n));
                    }
                }
                Ok(LLAMA_PROJECTIONS.iter().copied().filter(|p| names.iter().any(|n| n == p)).collect())
            }
        }
    }

    /// Whether the projection `name` (e.g. `q_proj`) is targeted.
    pub fn contains(&self, name: &str) -> bool {
        self.resolve().map(|v| v.contains(&name)).unwrap_or(false)
    }
}

fn unknown(name: &str) -> Error {
    Error::UnknownTarget { name: name.to_string(), valid: format!("{}, all-linear", LLAMA_PROJECTIONS.join(", ")) }
}

/// LoRA hyper-parameters (peft's `LoraConfig` fields that matter for the math).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank `r`.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input, training only.
    pub dropout: f64,
    /// Which projections get an adapter.
    pub target_modules: TargetModules,
    /// Scale `α/√r` instead of `α/r`.
    pub use_rslora: bool,
    /// peft's `bias`; only `"none"` is supported.
    pub bias: String,
}

impl Default for LoraConfig {
    /// The seed recipe: r 64, α 16, dropout 0.1, q/v targets, no bias.
    fn default() -> Self {
        Self { r: 64, alpha: 16.0, dropout: 0.1, target_modules: TargetModules::default(), use_rslora: false, bias: "none".into() }
    }
}

impl LoraConfig {
    /// The factor `s` applied to `B·A·x`: `α/r`, or `α/√r` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora { self.alpha / (self.r as f64).sqrt() } else { self.alpha / self.r as f64 }
    }

    /// Checks ranges and target names.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] or [`Error::UnknownTarget`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::InvalidConfig("`r` must be positive".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidConfig(format!("`dropout` {} is not in [0, 1)", self.dropout)));
        }
        if self.bias != "none" {
            return Err(Error::InvalidConfig(format!("`bias` \"{}\" is not supported (only \"none\")", self.bias)));
        }
        self.target_modules.resolve().map(|_| ())
    }

    /// Trainable parameters this config adds to a model whose targeted projections have the
    /// given `(name, in, out)` shapes (once per layer): `Σ r·(in + out)`.
    pub fn trainable_params(&self, projections: &[(&str, usize, usize)], layers: usize) -> usize {
        let targets = self.target_modules.resolve().unwrap_or_default();
        projections.iter().filter(|(name, _, _)| targets.contains(name)).map(|(_, i, o)| self.r * (i + o)).sum::<usize>() * layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_targets_are_peft_llama_defaults() {
        assert_eq!(TargetModules::default().resolve().expect("valid"), vec!["q_proj", "v_proj"]);
    }

    #[test]
    fn all_linear_and_lists_parse() {
        assert_eq!(TargetModules::parse("all-linear").expect("ok").resolve().expect("ok").len(), 7);
        let t = TargetModules::parse("v_proj, q_proj").expect("ok");
        assert_eq!(t.resolve().expect("ok"), vec!["q_proj", "v_proj"]);
    }

    #[test]
    fn unknown_target_lists_valid_names() {
        let err = TargetModules::parse("q_proj,qkv").expect_err("qkv is not a Llama projection");
        let text = err.to_string();
        assert!(text.contains("`qkv`") && text.contains("gate_proj") && text.contains("all-linear"));
    }

    #[test]
    fn scaling_plain_and_rslora() {
        let mut c = LoraConfig::default();
        assert_eq!(c.scaling(), 16.0 / 64.0);
        c.use_rslora = true;
        assert_eq!(c.scaling(), 16.0 / 8.0);
    }

    #[test]
    fn trainable_counts_match_peft_on_llama3_8b_shape() {
        // Llama-3-8B: d 4096, kv width 1024, ffn 14336, 32 layers.
        let shapes = [
            ("q_proj", 4096, 4096),
            ("k_proj", 4096, 1024),
            ("v_proj", 4096, 1024),
            ("o_proj", 4096, 4096),
            ("gate_proj", 4096, 14336),
            ("up_proj", 4096, 14336),
            ("down_proj", 14336, 4096),
        ];
        let seed = LoraConfig::default();
        assert_eq!(seed.trainable_params(&shapes, 32), 27_262_976);
        let all = LoraConfig { target_modules: TargetModules::parse("all-linear").expect("ok"), ..seed };
        assert_eq!(all.trainable_params(&shapes, 32), 167_772_160);
    }

    #[test]
    fn bad_values_are_named() {
        let c = LoraConfig { dropout: 1.5, ..LoraConfig::default() };
        assert!(c.validate().expect_err("dropout").to_string().contains("dropout"));
        let c = LoraConfig { bias: "all".into(), ..LoraConfig::default() };
        assert!(c.validate().expect_err("bias").to_string().contains("bias"));
    }
}
