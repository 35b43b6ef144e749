//! The one error type of `sft-trainer`.

use std::path::PathBuf;

/// Errors of data loading, training and checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A configuration value is invalid (names the key).
    #[error("invalid config: {0}")]
    Config(String),
    /// A checkpoint is missing, incomplete or does not fit the run.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The loss became NaN or infinite.
    #[error("loss is {loss} at step {step}; stopped (the last good checkpoint is kept)")]
    NonFinite {
        /// The step.
        step: usize,
        /// The value.
        loss: f64,
    },
    /// A tensor could not be read back.
    #[error("tensor: {0}")]
    Tensor(String),
    /// The data pipeline failed.
    #[error(transparent)]
    Data(#[from] crate::data::Error),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] llama_model::Error),
    /// An adapter could not be written.
    #[error(transparent)]
    Lora(#[from] lora::Error),
}

impl Error {
    /// An I/O error naming the path.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::Io { path: path.into(), message: e.to_string() }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
