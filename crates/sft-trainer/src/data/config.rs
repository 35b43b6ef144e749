//! The `[dataset]` section of a run config: where the rows come from, their shape, the chat
//! template, the eval split and packing. Defaults are the seed's (`mlabonne/guanaco-llama2-1k`,
//! the `text` field, no eval split, no packing).
//!
//! ```
//! use sft_trainer::data::{DatasetConfig, PackingStrategy, RowFormat};
//!
//! let config: DatasetConfig = serde_json::from_str(r#"{"source": "asset:data/alpaca_en_demo.json",
//!     "format": "alpaca", "template": "chatml", "eval_fraction": 0.1}"#).unwrap();
//! assert_eq!(config.format, RowFormat::Alpaca);
//! assert_eq!(config.text_field, "text");
//! assert_eq!(config.packing_strategy, PackingStrategy::Bfd);
//! assert!(serde_json::from_str::<DatasetConfig>(r#"{"sorce": "x"}"#).is_err());
//! ```

use serde::{Deserialize, Serialize};

use super::pack::PackingStrategy;
use super::{Error, Result};

/// The seed's dataset.
pub const DEFAULT_SOURCE: &str = "mlabonne/guanaco-llama2-1k";

/// The shape of a dataset's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowFormat {
    /// Detect from the fields: `messages`, then the text field, then `instruction` + `output`
    /// (trl's precedence: a row with `messages` is conversational).
    #[default]
    Auto,
    /// One text field (`text_field`), trained on whole (trl's language-modeling rows).
    Text,
    /// Alpaca `{instruction, input, output}` (`input` and `system` optional), rendered through
    /// the chat template into a prompt and a completion.
    Alpaca,
    /// Chat `messages: [{role, content}]` ending with the assistant's answer, rendered through
    /// the chat template into a prompt (every earlier message) and a completion (the last).
    Messages,
}

impl RowFormat {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::Alpaca => "alpaca",
            Self::Messages => "messages",
        }
    }
}

/// Where the training rows come from and how they become examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// A parquet/JSON/JSONL file, a folder of them, a glob (`data/*.jsonl`), an `asset:REL`
    /// reference, or a hub dataset id (`owner/name`).
    pub source: String,
    /// The split to download for a hub dataset.
    pub split: String,
    /// The row shape.
    pub format: RowFormat,
    /// The text field of [`RowFormat::Text`] rows (trl's `dataset_text_field`).
    pub text_field: String,
    /// The chat template for Alpaca and messages rows: `auto` (the model's own when it has one,
    /// else `llama2`), `model` (the model's own, required), `jinja` (the source in
    /// `chat_template`), or a built-in name (`llama2`, `llama3`, `chatml`, `alpaca`).
    pub template: String,
    /// Jinja source of the template when `template = "jinja"`.
    pub chat_template: Option<String>,
    /// Learn only the completion of prompt/completion rows. `None` is trl's default: on for
    /// Alpaca rows (trl's prompt-completion rows), off for `messages` rows (trl trains on the
    /// whole conversation); text rows have no prompt to mask.
    pub completion_only_loss: Option<bool>,
    /// A separate eval dataset (same syntax as `source`); replaces the split below.
    pub eval_source: Option<String>,
    /// The split of a hub `eval_source`.
    pub eval_split: String,
    /// The fraction of rows held out for evaluation (rounded up, as `datasets` does).
    pub eval_fraction: f64,
    /// The number of rows held out for evaluation; overrides `eval_fraction`.
    pub eval_count: Option<usize>,
    /// The seed of the train/eval split.
    pub seed: u64,
    /// Stop at the first bad row instead of skipping it.
    pub strict: bool,
    /// Read at most this many rows (over all files, in order).
    pub max_rows: Option<usize>,
    /// Pack examples into `max_seq_length` blocks (trl's `packing`).
    pub packing: bool,
    /// How to pack (trl's `packing_strategy`).
    pub packing_strategy: PackingStrategy,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            source: DEFAULT_SOURCE.to_string(),
            split: "train".to_string(),
            format: RowFormat::Auto,
            text_field: "text".to_string(),
            template: "auto".to_string(),
            chat_template: None,
            completion_only_loss: None,
            eval_source: None,
            eval_split: "test".to_string(),
            eval_fraction: 0.0,
            eval_count: None,
            seed: 42,
            strict: false,
            max_rows: None,
            packing: false,
            packing_strategy: PackingStrategy::Bfd,
        }
    }
}

impl DatasetConfig {
    /// A config for `source` with every other value at its default.
    pub fn new(source: impl Into<String>) -> Self {
        Self { source: source.into(), ..Self::default() }
    }

    /// Checks values that serde cannot.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.source.trim().is_empty() {
            return Err(Error::Config("`source` is empty".into()));
        }
        if self.text_field.is_empty() {
            return Err(Error::Config("`text_field` is empty".into()));
        }
        if !(0.0..1.0).contains(&self.eval_fraction) {
            return Err(Error::Config(format!("`eval_fraction` must be in [0, 1), got {}", self.eval_fraction)));
        }
        if self.eval_source.is_some() && (self.eval_fraction > 0.0 || self.eval_count.is_some()) {
            return Err(Error::Config("give either `eval_source` or `eval_fraction`/`eval_count`, not both".into()));
        }
        if self.template.trim().eq_ignore_ascii_case("jinja") && self.chat_template.is_none() {
            return Err(Error::Config("`template = \"jinja\"` needs `chat_template` (the Jinja source)".into()));
        }
        if self.max_rows == Some(0) {
            return Err(Error::Config("`max_rows` must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let config = DatasetConfig::default();
        assert_eq!(config.source, "mlabonne/guanaco-llama2-1k");
        assert_eq!(config.text_field, "text");
        assert!(!config.packing);
        assert_eq!(config.eval_fraction, 0.0);
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = DatasetConfig { eval_fraction: 1.5, ..DatasetConfig::default() };
        assert!(bad.validate().expect_err("range").to_string().contains("eval_fraction"));
        let bad = DatasetConfig { eval_source: Some("x".into()), eval_count: Some(3), ..DatasetConfig::default() };
        assert!(bad.validate().expect_err("both").to_string().contains("eval_source"));
        let bad = DatasetConfig { template: "jinja".into(), ..DatasetConfig::default() };
        assert!(bad.validate().expect_err("no source").to_string().contains("chat_template"));
    }

    #[test]
    fn round_trips_through_json() {
        let config = DatasetConfig { packing: true, packing_strategy: PackingStrategy::Wrapped, ..DatasetConfig::new("a.jsonl") };
        let json = serde_json::to_string(&config).expect("serialize");
        assert!(json.contains("\"packing_strategy\":\"wrapped\""), "{json}");
        let back: DatasetConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, config);
    }
}
