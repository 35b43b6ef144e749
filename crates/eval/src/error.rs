//! The one error type of the evaluation crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading test cases, judging them, or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A dataset record is invalid.
    #[error("{}: {at}: {message}", path.display())]
    Dataset {
        /// The dataset file.
        path: PathBuf,
        /// Where in it: `line N` (JSONL) or `item N` (JSON array), 1-based.
        at: String,
        /// The offending field, when one is to blame.
        field: Option<String>,
        /// What is wrong (names the field).
        message: String,
    },
    /// A test case lacks a field that a metric needs.
    #[error("{metric}: test case `{case}` has no `{param}`, which this metric needs")]
    MissingParam {
        /// The metric's name.
        metric: String,
        /// The test case's label.
        case: String,
        /// The missing field (`expected_output`, `context`, ...).
        param: String,
    },
    /// The judge failed or answered something unusable.
    #[error("{metric}: {step}: {source}")]
    Judge {
        /// The metric's name.
        metric: String,
        /// What the judge was asked for (`opinions`, `verdicts`, `score`, ...).
        step: String,
        /// The model-side error (a malformed answer carries the answer text).
        source: llm_api::Error,
    },
    /// The model under evaluation failed to answer a golden.
    #[error("model under evaluation failed on `{case}`: {source}")]
    Model {
        /// The golden's label.
        case: String,
        /// The model-side error.
        source: llm_api::Error,
    },
    /// A metric or option is misconfigured.
    #[error("configuration: {0}")]
    Config(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
