//! Chat messages to prompt text: the Llama-2, Llama-3, ChatML and Alpaca formats, and any
//! Hugging Face Jinja `chat_template` (from `tokenizer_config.json`, `chat_template.jinja` or a
//! GGUF file); plus `(prompt, completion)` pairs for completion-only training.
//!
//! # Invariant
//! This crate is tensor-free (it never depends on burn), and for a Jinja template its output is
//! byte-identical to `transformers`' `tokenizer.apply_chat_template(messages, tokenize=False,
//! add_generation_prompt=...)` given the same special tokens and variables. The built-in
//! `llama2`, `llama3` and `chatml` formats are byte-identical to the official templates they
//! are named after. Both claims are checked against fixtures rendered by transformers.
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{ChatTemplate, RenderOptions};
//!
//! let messages = [Message::system("You are terse."), Message::user("What is 2+2?")];
//! let text = ChatTemplate::Llama3.render(&messages, &RenderOptions::new().with_generation_prompt(true)).unwrap();
//! assert!(text.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"));
//! assert!(text.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
//! ```
#![warn(missing_docs)]

pub mod alpaca;
pub mod chatml;
pub mod error;
pub mod gguf;
pub mod jinja;
pub mod llama2;
pub mod llama3;
pub mod model_config;
pub mod options;
pub mod pair;
pub mod python;
pub mod template;
pub mod tojson;

pub use error::{Error, Result};
pub use jinja::JinjaTemplate;
pub use llm_api::{Message, Role};
pub use model_config::{ModelChatConfig, NamedTemplate};
pub use options::{RenderOptions, SpecialTokens};
pub use pair::{AlpacaRow, PromptCompletion};
pub use template::{ChatTemplate, Renderer};
