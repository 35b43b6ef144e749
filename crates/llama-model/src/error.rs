//! The one error type of `llama-model`.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, loading or running a Llama model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or misses a required key.
    #[error("{}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong (names the key).
        message: String,
    },
    /// A configuration value is out of range or unsupported.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A weights file is malformed (truncated, bad header, bad magic, ...).
    #[error("{}: {message}", path.display())]
    Format {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// The checkpoint holds tensors the model does not use.
    #[error("{}: unexpected tensor(s) {names:?}", path.display())]
    UnexpectedTensors {
        /// The checkpoint.
        path: PathBuf,
        /// Their names (first few).
        names: Vec<String>,
    },
    /// A tensor has the wrong shape.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    Shape {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape found in the file.
        found: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor has a data type we cannot load.
    #[error("{}: tensor `{name}` has unsupported dtype {dtype}", path.display())]
    Dtype {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// The tokenizer could not be loaded or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Downloading from the hub failed.
    #[error("hub: {0}")]
    Hub(String),
    /// A LoRA adapter could not be built, read or written.
    #[error(transparent)]
    Lora(#[from] lora::Error),
    /// Generation was asked something impossible (e.g. an empty prompt, a sequence too long).
    #[error("generation: {0}")]
    Generation(String),
}

impl Error {
    /// An I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
    /// A format error with the path it concerns.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), message: message.into() }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
