//! The one error type of `lora`.

use std::path::PathBuf;

/// Errors of adapter configuration, application and IO.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A target module name is not a known projection.
    #[error("unknown LoRA target `{name}`; valid targets: {valid}")]
    UnknownTarget {
        /// The name given.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },
    /// A configuration value is out of range.
    #[error("invalid LoRA config: {0}")]
    InvalidConfig(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An adapter file is malformed (bad JSON, bad safetensors, wrong shapes, missing keys).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key or tensor).
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
