//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running the encoder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` is not a BERT config this crate can run.
    #[error("{}: {detail}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The safetensors file is unreadable.
    #[error("{}: not a safetensors file: {detail}", path.display())]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// A tensor the model needs is not in the weights file.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
    },
    /// A tensor has the wrong shape or an unsupported dtype.
    #[error("{}: tensor `{name}`: {detail}", path.display())]
    BadTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
        /// Expected versus found.
        detail: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("{}: tokenizer: {detail}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer's message.
        detail: String,
    },
    /// A tensor could not be read back from the device.
    #[error("reading the embeddings back: {0}")]
    Readback(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for llm_api::Error {
    fn from(err: Error) -> Self {
        llm_api::Error::Model(err.to_string())
    }
}
