//! The one error type of this crate: every variant names the template, file, field or message
//! index it is about.
//!
//! ```
//! use prompt_templates::{ChatTemplate, Error};
//!
//! let err = ChatTemplate::from_name("vicuna").unwrap_err();
//! assert!(matches!(err, Error::UnknownTemplate { .. }));
//! assert_eq!(err.to_string(), "unknown chat template `vicuna`: expected one of llama2, llama3, chatml, alpaca");
//! ```

use std::path::PathBuf;

/// Everything that can go wrong while choosing, loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A template name given on the command line or in a config is not a built-in format.
    #[error("unknown chat template `{name}`: expected one of {valid}")]
    UnknownTemplate {
        /// The name that was given.
        name: String,
        /// The names that are accepted, comma separated.
        valid: String,
    },
    /// A Jinja template does not compile.
    #[error("chat template {template}: syntax error: {detail}")]
    Syntax {
        /// Which template (e.g. "jinja", or the file it came from).
        template: String,
        /// What the parser said, with the line where it could tell.
        detail: String,
    },
    /// A Jinja template called `raise_exception(message)`: the conversation is not one the
    /// template accepts (e.g. a system message, or roles that do not alternate).
    #[error("chat template {template} rejected the conversation: {message}")]
    Raised {
        /// Which template.
        template: String,
        /// The message the template raised, verbatim.
        message: String,
    },
    /// A Jinja template failed while rendering (an undefined attribute, a type error, ...).
    #[error("chat template {template}: render error: {detail}")]
    Render {
        /// Which template.
        template: String,
        /// What went wrong, with the line where it could tell.
        detail: String,
    },
    /// A conversation does not have the shape an operation needs, e.g. a training pair whose
    /// last message is not the assistant's.
    #[error("{template}: messages[{index}]: {detail}")]
    Conversation {
        /// Which template or operation.
        template: String,
        /// The index of the offending message.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A template does not render a conversation's prompt as a prefix of the whole
    /// conversation, so the prompt and the completion cannot be split.
    #[error(
        "{template}: the prompt rendered with a generation prompt is not a prefix of the whole conversation; where they differ, the prompt reads {prompt_tail:?} and the conversation {full_tail:?}"
    )]
    NotAPrefix {
        /// Which template.
        template: String,
        /// The prompt from a little before the point where the texts differ.
        prompt_tail: String,
        /// The conversation from the same point.
        full_tail: String,
    },
    /// A template variable could not be converted (e.g. extra variables that are not a JSON
    /// object).
    #[error("template variable `{name}`: {detail}")]
    Variable {
        /// The variable's name (or `<variables>` for the whole set).
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (or JSON text) is malformed.
    #[error("{origin}: invalid JSON: {source}")]
    Json {
        /// Where the JSON came from (a path, or a description).
        origin: String,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A field of a tokenizer or model config has an unexpected shape.
    #[error("{origin}: field `{field}`: {detail}")]
    Field {
        /// The file the field is in.
        origin: String,
        /// The field's name (dotted for nested fields).
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// A model has several named chat templates and the one asked for (or a `default`) is
    /// not among them.
    #[error("{origin}: no chat template named `{name}`; available: {available}")]
    NoSuchNamedTemplate {
        /// The file the templates came from.
        origin: String,
        /// The name that was asked for (`default` when none was).
        name: String,
        /// The names that exist, comma separated.
        available: String,
    },
    /// A GGUF file's header or metadata could not be parsed.
    #[error("{}: GGUF metadata at byte {offset}: {detail}", path.display())]
    Gguf {
        /// The file.
        path: PathBuf,
        /// The byte offset where parsing failed.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
