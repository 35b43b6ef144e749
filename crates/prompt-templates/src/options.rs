//! What a render needs besides the messages: the generation-prompt switch, the tokenizer's
//! special tokens, and any other variables a Jinja template reads (`tools`, `date_string`, ...).
//!
//! ```
//! use prompt_templates::{RenderOptions, SpecialTokens};
//!
//! let tokens = SpecialTokens { bos_token: Some("<s>".into()), eos_token: Some("</s>".into()), ..Default::default() };
//! let options = RenderOptions::new()
//!     .with_generation_prompt(true)
//!     .with_special_tokens(&tokens)
//!     .with_variable("date_string", "26 Jul 2024");
//! assert!(options.add_generation_prompt);
//! assert_eq!(options.special_tokens.bos_token.as_deref(), Some("<s>"));
//! ```

use minijinja::Value;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The named special tokens of a Hugging Face tokenizer, as `apply_chat_template` passes them
/// to a template (`tokenizer.special_tokens_map`): only the ones that are set become variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpecialTokens {
    /// Beginning of sequence (`<s>`, `<|begin_of_text|>`).
    pub bos_token: Option<String>,
    /// End of sequence (`</s>`, `<|eot_id|>`, `<|im_end|>`).
    pub eos_token: Option<String>,
    /// Unknown token.
    pub unk_token: Option<String>,
    /// Separator token.
    pub sep_token: Option<String>,
    /// Padding token.
    pub pad_token: Option<String>,
    /// Classifier token.
    pub cls_token: Option<String>,
    /// Mask token.
    pub mask_token: Option<String>,
}

impl SpecialTokens {
    /// The variable names in Hugging Face's order (`SPECIAL_TOKENS_ATTRIBUTES`).
    pub const NAMES: [&'static str; 7] = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// The tokens that are set, as `(variable name, text)` pairs in Hugging Face's order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let values =
            [&self.bos_token, &self.eos_token, &self.unk_token, &self.sep_token, &self.pad_token, &self.cls_token, &self.mask_token];
        Self::NAMES.iter().zip(values).filter_map(|(name, value)| value.as_deref().map(|v| (*name, v))).collect()
    }

    /// Sets the token of variable `name` (one of [`SpecialTokens::NAMES`]); returns `false`
    /// and changes nothing for any other name.
    pub fn set(&mut self, name: &str, text: impl Into<String>) -> bool {
        let slot = match name {
            "bos_token" => &mut self.bos_token,
            "eos_token" => &mut self.eos_token,
            "unk_token" => &mut self.unk_token,
            "sep_token" => &mut self.sep_token,
            "pad_token" => &mut self.pad_token,
            "cls_token" => &mut self.cls_token,
            "mask_token" => &mut self.mask_token,
            _ => return false,
        };
        *slot = Some(text.into());
        true
    }
}

/// Options of one render.
///
/// Built-in formats read only `add_generation_prompt` (and Alpaca the EOS token); Jinja
/// templates see every special token that is set, plus the extra variables, exactly as
/// `tokenizer.apply_chat_template(messages, add_generation_prompt=..., **variables)` would
/// pass them.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// End the text with the header of an assistant turn, so a model continues as the
    /// assistant.
    pub add_generation_prompt: bool,
    /// The tokenizer's special tokens.
    pub special_tokens: SpecialTokens,
    /// Other template variables, in insertion order; a later one with the same name wins.
    variables: Vec<(String, Value)>,
}

impl RenderOptions {
    /// No generation prompt, no special tokens, no variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `add_generation_prompt`.
    pub fn with_generation_prompt(mut self, yes: bool) -> Self {
        self.add_generation_prompt = yes;
        self
    }

    /// Sets the special tokens.
    pub fn with_special_tokens(mut self, tokens: &SpecialTokens) -> Self {
        self.special_tokens = tokens.clone();
        self
    }

    /// Adds a template variable from any serializable value (structs keep their field order).
    pub fn with_variable(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        self.variables.push((name.into(), Value::from_serialize(value)));
        self
    }

    /// Adds every key of a JSON object as a template variable, keeping the object's key order
    /// (which `tojson` output depends on), e.g. `{"tools": [...], "date_string": "..."}`.
    ///
    /// # Errors
    /// [`Error::Json`] when the text is not JSON, [`Error::Variable`] when it is not an object.
    pub fn with_variables_json(mut self, json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|source| Error::Json { origin: "template variables".to_string(), source })?;
        if value.kind() != minijinja::value::ValueKind::Map {
            return Err(Error::Variable {
                name: "<variables>".to_string(),
                detail: format!("expected a JSON object, got {}", value.kind()),
            });
        }
        let keys: Vec<Value> =
            value.try_iter().map_err(|e| Error::Variable { name: "<variables>".to_string(), detail: e.to_string() })?.collect();
        for key in keys {
            let item = value.get_item(&key).map_err(|e| Error::Variable { name: key.to_string(), detail: e.to_string() })?;
            let name = key.as_str().map(str::to_string).unwrap_or_else(|| key.to_string());
            self.variables.push((name, item));
        }
        Ok(self)
    }

    /// The extra variables, in insertion order.
    pub(crate) fn variables(&self) -> &[(String, Value)] {
        &self.variables
    }

    /// The names of the extra variables, in insertion order.
    pub fn variable_names(&self) -> Vec<&str> {
        self.variables.iter().map(|(name, _)| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_hf_order_and_skip_unset() {
        let mut tokens = SpecialTokens::default();
        assert!(tokens.set("pad_token", "<pad>"));
        assert!(tokens.set("bos_token", "<s>"));
        assert!(!tokens.set("image_token", "<img>"));
        assert_eq!(tokens.pairs(), vec![("bos_token", "<s>"), ("pad_token", "<pad>")]);
    }

    #[test]
    fn variables_json_keeps_order() {
        let options = RenderOptions::new().with_variables_json(r#"{"z": 1, "a": {"y": 2, "b": 3}}"#).expect("json");
        assert_eq!(options.variable_names(), vec!["z", "a"]);
        let a = &options.variables()[1].1;
        let keys: Vec<String> = a.try_iter().expect("map").map(|k| k.to_string()).collect();
        assert_eq!(keys, vec!["y", "b"]);
    }

    #[test]
    fn variables_json_must_be_an_object() {
        let err = RenderOptions::new().with_variables_json("[1]").expect_err("array");
        assert!(matches!(err, Error::Variable { .. }), "{err}");
        let err = RenderOptions::new().with_variables_json("{").expect_err("bad json");
        assert!(err.to_string().contains("template variables"), "{err}");
    }
}
