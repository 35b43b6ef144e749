//! The closed set of chat formats a config or the command line can choose, and the compiled
//! [`Renderer`] that turns messages into text with one of them.
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{ChatTemplate, RenderOptions};
//!
//! let template = ChatTemplate::from_name("chatml").unwrap();
//! let json = serde_json::to_string(&template).unwrap();
//! assert_eq!(json, r#"{"type":"chatml"}"#);
//!
//! // `--template auto`: the model's own Jinja template when it has one, else the raw prompt.
//! let auto = ChatTemplate::resolve("auto", Some("{{ messages[0].content }}".to_string())).unwrap();
//! assert!(matches!(auto, Some(ChatTemplate::Jinja { .. })));
//! assert_eq!(ChatTemplate::resolve("auto", None).unwrap(), None);
//!
//! let text = template.render(&[Message::user("Hi")], &RenderOptions::new().with_generation_prompt(true)).unwrap();
//! assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! ```

use std::fmt;
use std::str::FromStr;

use llm_api::{Message, Role};
use serde::{Deserialize, Serialize};

use crate::jinja::JinjaTemplate;
use crate::options::RenderOptions;
use crate::pair::{self, AlpacaRow, PromptCompletion};
use crate::{Error, Result, alpaca, chatml, llama2, llama3};

/// A chat format, as chosen in a config file (`{"type": "llama3"}`,
/// `{"type": "jinja", "source": "..."}`) or by name on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatTemplate {
    /// Llama-2-chat's `[INST]`/`<<SYS>>` layout (see [`llama2`]).
    Llama2,
    /// Llama-3's header layout (see [`llama3`]).
    Llama3,
    /// ChatML (see [`chatml`]).
    #[serde(rename = "chatml")]
    ChatMl,
    /// The Alpaca instruction layout (see [`alpaca`]).
    Alpaca,
    /// Any Hugging Face Jinja chat template (see [`crate::jinja`]).
    Jinja {
        /// The template's source text.
        source: String,
    },
}

impl ChatTemplate {
    /// The names [`ChatTemplate::from_name`] accepts.
    pub const BUILTIN_NAMES: [&'static str; 4] = ["llama2", "llama3", "chatml", "alpaca"];

    /// The built-in format called `name` (`llama2`, `llama3`, `chatml`, `alpaca`; case and
    /// surrounding whitespace are ignored).
    ///
    /// # Errors
    /// [`Error::UnknownTemplate`] listing the valid names.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "llama2" => Ok(Self::Llama2),
            "llama3" => Ok(Self::Llama3),
            "chatml" => Ok(Self::ChatMl),
            "alpaca" => Ok(Self::Alpaca),
            _ => Err(Error::UnknownTemplate { name: name.to_string(), valid: Self::BUILTIN_NAMES.join(", ") }),
        }
    }

    /// The model's own Jinja template, when it has a non-blank one.
    pub fn auto(jinja: Option<String>) -> Option<Self> {
        jinja.filter(|source| !source.trim().is_empty()).map(|source| Self::Jinja { source })
    }

    /// Resolves a `--template` choice: `auto` gives [`ChatTemplate::auto`] of the model's
    /// template (`None` meaning: use the raw prompt), any other name a built-in format.
    ///
    /// # Errors
    /// [`Error::UnknownTemplate`] for a name that is neither `auto` nor a built-in.
    pub fn resolve(choice: &str, model_template: Option<String>) -> Result<Option<Self>> {
        if choice.trim().eq_ignore_ascii_case("auto") {
            return Ok(Self::auto(model_template));
        }
        Self::from_name(choice)
            .map(Some)
            .map_err(|_| Error::UnknownTemplate { name: choice.to_string(), valid: format!("auto, {}", Self::BUILTIN_NAMES.join(", ")) })
    }

    /// The format's name: one of [`ChatTemplate::BUILTIN_NAMES`] or `jinja`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Llama2 => "llama2",
            Self::Llama3 => "llama3",
            Self::ChatMl => "chatml",
            Self::Alpaca => "alpaca",
            Self::Jinja { .. } => "jinja",
        }
    }

    /// Compiles the template (only Jinja needs it) into a reusable [`Renderer`].
    ///
    /// # Errors
    /// [`Error::Syntax`] when a Jinja template does not parse.
    pub fn prepare(&self) -> Result<Renderer> {
        Ok(Renderer {
            format: match self {
                Self::Llama2 => Format::Llama2,
                Self::Llama3 => Format::Llama3,
                Self::ChatMl => Format::ChatMl,
                Self::Alpaca => Format::Alpaca,
                Self::Jinja { source } => Format::Jinja(Box::new(JinjaTemplate::new(source.clone())?)),
            },
        })
    }

    /// Renders `messages` once (compiling a Jinja template each call; use
    /// [`ChatTemplate::prepare`] for many renders).
    ///
    /// # Errors
    /// As [`ChatTemplate::prepare`] and [`Renderer::render`].
    pub fn render(&self, messages: &[Message], options: &RenderOptions) -> Result<String> {
        self.prepare()?.render(messages, options)
    }
}

impl FromStr for ChatTemplate {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::from_name(name)
    }
}

impl fmt::Display for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A ready-to-use chat format: cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Renderer {
    format: Format,
}

impl From<JinjaTemplate> for Renderer {
    /// A renderer for an already compiled Jinja template (which keeps its label for errors).
    fn from(template: JinjaTemplate) -> Self {
        Self { format: Format::Jinja(Box::new(template)) }
    }
}

#[derive(Debug, Clone)]
enum Format {
    Llama2,
    Llama3,
    ChatMl,
    Alpaca,
    Jinja(Box<JinjaTemplate>),
}

impl Renderer {
    /// The format's name (a Jinja template's label).
    pub fn name(&self) -> &str {
        match &self.format {
            Format::Llama2 => "llama2",
            Format::Llama3 => "llama3",
            Format::ChatMl => "chatml",
            Format::Alpaca => "alpaca",
            Format::Jinja(template) => template.label(),
        }
    }

    /// Renders the conversation as prompt text.
    ///
    /// # Errors
    /// [`Error::Conversation`] for an empty conversation (as transformers), or when a built-in
    /// format cannot hold the conversation; [`Error::Raised`] or [`Error::Render`] from a
    /// Jinja template.
    pub fn render(&self, messages: &[Message], options: &RenderOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(empty_conversation(self.name()));
        }
        match &self.format {
            Format::Llama2 => llama2::render(messages, options),
            Format::Llama3 => llama3::render(messages, options),
            Format::ChatMl => chatml::render(messages, options),
            Format::Alpaca => alpaca::render(messages, options),
            Format::Jinja(template) => template.render(messages, options),
        }
    }

    /// Splits a conversation that ends with the assistant's message into the prompt (every
    /// earlier message, plus the generation prompt) and the completion (the last message as
    /// the template renders it, end-of-turn marker included). `options.add_generation_prompt`
    /// is ignored: the prompt always has one and the whole conversation never does.
    ///
    /// # Errors
    /// [`Error::Conversation`] when the conversation is empty or does not end with an
    /// assistant message; [`Error::NotAPrefix`] when the template renders the prompt
    /// differently from the start of the whole conversation; any render error.
    pub fn render_pair(&self, messages: &[Message], options: &RenderOptions) -> Result<PromptCompletion> {
        let Some(last) = messages.last() else {
            return Err(Error::Conversation {
                template: self.name().to_string(),
                index: 0,
                detail: "a training pair needs at least one message".to_string(),
            });
        };
        if last.role != Role::Assistant {
            return Err(Error::Conversation {
                template: self.name().to_string(),
                index: messages.len() - 1,
                detail: format!("a training pair must end with an assistant message, not a {} message", last.role.as_str()),
            });
        }
        if messages.len() < 2 {
            return Err(Error::Conversation {
                template: self.name().to_string(),
                index: 0,
                detail: "a training pair needs a message before the assistant's answer".to_string(),
            });
        }
        let prompt = self.render(&messages[..messages.len() - 1], &options.clone().with_generation_prompt(true))?;
        let full = self.render(messages, &options.clone().with_generation_prompt(false))?;
        pair::split(self.name(), prompt, full)
    }

    /// Renders an Alpaca row as a `(prompt, completion)` pair: in the Alpaca format with its
    /// `### Input:` section; in any other format as the chat
    /// `[system?, user: instruction (+ "\n\n" + input), assistant: output]`.
    ///
    /// # Errors
    /// As [`Renderer::render_pair`].
    pub fn render_alpaca(&self, row: &AlpacaRow, options: &RenderOptions) -> Result<PromptCompletion> {
        match &self.format {
            Format::Alpaca => Ok(alpaca::render_row(row, options)),
            _ => self.render_pair(&row.to_messages(), options),
        }
    }
}

/// The error for rendering no messages at all.
pub(crate) fn empty_conversation(template: &str) -> Error {
    Error::Conversation {
        template: template.to_string(),
        index: 0,
        detail: "cannot apply a chat template to an empty conversation".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = ChatTemplate::from_name("vicuna").expect_err("unknown");
        assert_eq!(err.to_string(), "unknown chat template `vicuna`: expected one of llama2, llama3, chatml, alpaca");
        let err = ChatTemplate::resolve("zephyr", None).expect_err("unknown");
        assert!(err.to_string().contains("auto, llama2"), "{err}");
        assert_eq!(" LLaMA3 ".parse::<ChatTemplate>().expect("name"), ChatTemplate::Llama3);
    }

    #[test]
    fn serde_round_trips_with_a_type_tag() {
        let all = [
            ChatTemplate::Llama2,
            ChatTemplate::Llama3,
            ChatTemplate::ChatMl,
            ChatTemplate::Alpaca,
            ChatTemplate::Jinja { source: "{{ x }}".into() },
        ];
        for template in all {
            let json = serde_json::to_string(&template).expect("serialize");
            assert!(json.contains(&format!("\"type\":\"{}\"", template.name())), "{json}");
            let back: ChatTemplate = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, template);
        }
    }

    #[test]
    fn renderers_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Renderer>();
        assert_send_sync::<JinjaTemplate>();
        let renderer = Renderer::from(JinjaTemplate::with_label("{{ x }}", "model.gguf").expect("compile"));
        assert_eq!(renderer.name(), "model.gguf");
    }

    #[test]
    fn auto_ignores_blank_templates() {
        assert_eq!(ChatTemplate::auto(Some("  \n".into())), None);
        assert_eq!(ChatTemplate::auto(None), None);
    }

    #[test]
    fn pairs_need_a_final_assistant_message() {
        let renderer = ChatTemplate::Llama3.prepare().expect("prepare");
        let err = renderer.render_pair(&[Message::user("q")], &RenderOptions::new()).expect_err("no answer");
        assert!(matches!(err, Error::Conversation { index: 0, .. }), "{err}");
        let err = renderer.render_pair(&[], &RenderOptions::new()).expect_err("empty");
        assert!(matches!(err, Error::Conversation { .. }), "{err}");
        let err = renderer.render_pair(&[Message::assistant("a")], &RenderOptions::new()).expect_err("no prompt");
        assert!(err.to_string().contains("before the assistant's answer"), "{err}");
        let err = renderer.render(&[], &RenderOptions::new()).expect_err("empty");
        assert!(err.to_string().contains("empty conversation"), "{err}");
    }

    #[test]
    fn llama2_pair_splits_after_inst() {
        let renderer = ChatTemplate::Llama2.prepare().expect("prepare");
        let pair = renderer.render_pair(&[Message::user("q"), Message::assistant("a")], &RenderOptions::new()).expect("pair");
        assert_eq!(pair.prompt, "<s>[INST] q [/INST]");
        assert_eq!(pair.completion, " a </s>");
    }

    #[test]
    fn a_template_that_is_not_prefix_stable_is_reported() {
        let template = ChatTemplate::Jinja {
            source: "{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}".into(),
        };
        let err = template
            .prepare()
            .expect("prepare")
            .render_pair(&[Message::user("q"), Message::assistant("a")], &RenderOptions::new())
            .expect_err("'>>' is not in the full text");
        assert!(matches!(err, Error::NotAPrefix { .. }), "{err}");
    }
}
