//! A model's own chat template(s) and special tokens, read from a Hugging Face model folder
//! (`tokenizer_config.json`, `chat_template.jinja`, `special_tokens_map.json`) or a GGUF file
//! (see [`crate::gguf`]), and chosen by name as transformers chooses them.
//!
//! ```
//! use prompt_templates::ModelChatConfig;
//!
//! let config = ModelChatConfig::from_tokenizer_config_json(
//!     r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
//!         "chat_template": [{"name": "default", "template": "{{ bos_token }}"},
//!                           {"name": "tool_use", "template": "{{ tools }}"}]}"#,
//!     "tokenizer_config.json",
//! ).unwrap();
//! assert_eq!(config.special_tokens.bos_token.as_deref(), Some("<s>"));
//! assert_eq!(config.template(None).unwrap(), Some("{{ bos_token }}"));
//! assert_eq!(config.template(Some("tool_use")).unwrap(), Some("{{ tools }}"));
//! assert!(config.template(Some("rag")).is_err());
//! ```

use std::path::Path;

use serde_json::Value as Json;

use crate::options::{RenderOptions, SpecialTokens};
use crate::template::ChatTemplate;
use crate::{Error, Result};

/// The name a lone (unnamed) chat template goes by, and the one chosen when none is asked for.
pub const DEFAULT_TEMPLATE_NAME: &str = "default";

/// One named chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTemplate {
    /// Its name (`default`, `tool_use`, `rag`, ...).
    pub name: String,
    /// Its Jinja source.
    pub source: String,
}

/// A model's chat templates and special tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelChatConfig {
    /// Where they were read from, for error messages.
    pub origin: String,
    /// The templates; a lone template is named [`DEFAULT_TEMPLATE_NAME`].
    pub templates: Vec<NamedTemplate>,
    /// The tokenizer's named special tokens.
    pub special_tokens: SpecialTokens,
}

impl ModelChatConfig {
    /// Reads the `chat_template` (a string, or a list of `{name, template}`) and the special
    /// tokens (strings, or `{"content": ...}` objects) of a `tokenizer_config.json` text.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON, [`Error::Field`] for a field of the wrong shape.
    pub fn from_tokenizer_config_json(text: &str, origin: &str) -> Result<Self> {
        let json: Json = serde_json::from_str(text).map_err(|source| Error::Json { origin: origin.to_string(), source })?;
        let Json::Object(map) = &json else {
            return Err(field_error(origin, "<root>", "expected a JSON object"));
        };
        let mut config = Self { origin: origin.to_string(), ..Self::default() };
        match map.get("chat_template") {
            None | Some(Json::Null) => {}
            Some(Json::String(source)) => {
                config.templates.push(NamedTemplate { name: DEFAULT_TEMPLATE_NAME.to_string(), source: source.clone() })
            }
            Some(Json::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("chat_template[{i}]");
                    let name = item.get("name").and_then(Json::as_str);
                    let source = item.get("template").and_then(Json::as_str);
                    match (name, source) {
                        (Some(name), Some(source)) => {
                            config.templates.push(NamedTemplate { name: name.to_string(), source: source.to_string() })
                        }
                        _ => {
                            return Err(field_error(origin, &field, "expected {\"name\": string, \"template\": string}"));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(field_error(origin, "chat_template", &format!("expected a string or a list, got {other}")));
            }
        }
        read_special_tokens(map, origin, &mut config.special_tokens)?;
        Ok(config)
    }

    /// Reads a `tokenizer_config.json` file.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; as [`ModelChatConfig::from_tokenizer_config_json`].
    pub fn from_tokenizer_config_file(path: &Path) -> Result<Self> {
        let text = read(path)?;
        Self::from_tokenizer_config_json(&text, &path.display().to_string())
    }

    /// Reads a Hugging Face model folder: `tokenizer_config.json` (which must exist), then
    /// `special_tokens_map.json` (its tokens win, as in transformers) and `chat_template.jinja`
    /// (which replaces the default template, as in transformers) when they exist.
    ///
    /// # Errors
    /// As [`ModelChatConfig::from_tokenizer_config_file`], for each file read.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let mut config = Self::from_tokenizer_config_file(&dir.join("tokenizer_config.json"))?;
        let map_path = dir.join("special_tokens_map.json");
        if map_path.is_file() {
            let origin = map_path.display().to_string();
            let json: Json = serde_json::from_str(&read(&map_path)?).map_err(|source| Error::Json { origin: origin.clone(), source })?;
            let Json::Object(map) = &json else {
                return Err(field_error(&origin, "<root>", "expected a JSON object"));
            };
            read_special_tokens(map, &origin, &mut config.special_tokens)?;
        }
        let jinja_path = dir.join("chat_template.jinja");
        if jinja_path.is_file() {
            let source = read(&jinja_path)?;
            tracing::debug!(path = %jinja_path.display(), "chat_template.jinja replaces the default chat template");
            config.templates.retain(|t| t.name != DEFAULT_TEMPLATE_NAME);
            config.templates.insert(0, NamedTemplate { name: DEFAULT_TEMPLATE_NAME.to_string(), source });
        }
        Ok(config)
    }

    /// The template transformers would use: the one called `name` when given; otherwise the
    /// lone or `default` one; `None` when the model has no template at all.
    ///
    /// # Errors
    /// [`Error::NoSuchNamedTemplate`] when the named template (or, with several templates, a
    /// `default`) does not exist.
    pub fn template(&self, name: Option<&str>) -> Result<Option<&str>> {
        if self.templates.is_empty() && name.is_none() {
            return Ok(None);
        }
        let wanted = name.unwrap_or(DEFAULT_TEMPLATE_NAME);
        match self.templates.iter().find(|t| t.name == wanted) {
            Some(template) => Ok(Some(template.source.as_str())),
            None => Err(Error::NoSuchNamedTemplate {
                origin: self.origin.clone(),
                name: wanted.to_string(),
                available: self.templates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The `--template` choice resolved against this model: `auto` gives its default Jinja
    /// template (or `None`: use the raw prompt), a built-in name that format.
    ///
    /// # Errors
    /// As [`ChatTemplate::resolve`] and [`ModelChatConfig::template`].
    pub fn chat_template(&self, choice: &str) -> Result<Option<ChatTemplate>> {
        ChatTemplate::resolve(choice, self.template(None)?.map(str::to_string))
    }

    /// Render options with this model's special tokens.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions::new().with_special_tokens(&self.special_tokens)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn field_error(origin: &str, field: &str, detail: &str) -> Error {
    Error::Field { origin: origin.to_string(), field: field.to_string(), detail: detail.to_string() }
}

/// Copies the named special tokens that `map` sets into `tokens`.
fn read_special_tokens(map: &serde_json::Map<String, Json>, origin: &str, tokens: &mut SpecialTokens) -> Result<()> {
    for name in SpecialTokens::NAMES {
        let text = match map.get(name) {
            None | Some(Json::Null) => continue,
            Some(Json::String(text)) => text.clone(),
            Some(Json::Object(added)) => match added.get("content").and_then(Json::as_str) {
                Some(text) => text.to_string(),
                None => {
                    return Err(field_error(origin, &format!("{name}.content"), "expected a string"));
                }
            },
            Some(other) => {
                return Err(field_error(origin, name, &format!("expected a string or an AddedToken object, got {other}")));
            }
        };
        tokens.set(name, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_template_is_the_default() {
        let config = ModelChatConfig::from_tokenizer_config_json(r#"{"chat_template": "x", "pad_token": null}"#, "t.json").expect("config");
        assert_eq!(config.template(None).expect("default"), Some("x"));
        assert_eq!(config.special_tokens, SpecialTokens::default());
    }

    #[test]
    fn several_templates_without_default_is_an_error() {
        let config = ModelChatConfig::from_tokenizer_config_json(
            r#"{"chat_template": [{"name": "a", "template": "1"}, {"name": "b", "template": "2"}]}"#,
            "t.json",
        )
        .expect("config");
        let err = config.template(None).expect_err("no default");
        assert_eq!(err.to_string(), "t.json: no chat template named `default`; available: a, b");
    }

    #[test]
    fn bad_fields_are_named() {
        let err = ModelChatConfig::from_tokenizer_config_json(r#"{"chat_template": 3}"#, "t.json").expect_err("number");
        assert!(err.to_string().starts_with("t.json: field `chat_template`"), "{err}");
        let err = ModelChatConfig::from_tokenizer_config_json(r#"{"eos_token": {"id": 2}}"#, "t.json").expect_err("object");
        assert!(err.to_string().contains("`eos_token.content`"), "{err}");
        let err = ModelChatConfig::from_tokenizer_config_json(r#"{"chat_template": [{"name": "a"}]}"#, "t.json").expect_err("no template");
        assert!(err.to_string().contains("`chat_template[0]`"), "{err}");
    }

    #[test]
    fn model_dir_prefers_chat_template_jinja_and_special_tokens_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"chat_template": "old", "eos_token": "</s>"}"#).expect("write");
        std::fs::write(dir.path().join("special_tokens_map.json"), r#"{"eos_token": {"content": "<|eot|>"}}"#).expect("write");
        std::fs::write(dir.path().join("chat_template.jinja"), "new").expect("write");
        let config = ModelChatConfig::from_model_dir(dir.path()).expect("config");
        assert_eq!(config.template(None).expect("default"), Some("new"));
        assert_eq!(config.special_tokens.eos_token.as_deref(), Some("<|eot|>"));
        assert_eq!(config.chat_template("auto").expect("auto"), Some(ChatTemplate::Jinja { source: "new".into() }));
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ModelChatConfig::from_model_dir(dir.path()).expect_err("no config");
        assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    }
}
