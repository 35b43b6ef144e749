//! The one error type of the model-facing contract.

/// Errors that a model, local or remote, can report through [`crate::Llm`] or [`crate::Embedder`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint answered with an HTTP error status (after retries, where retried).
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        /// The URL that was called.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The (possibly truncated) response body.
        body: String,
    },
    /// The request did not complete in time (after retries, where retried).
    #[error("{url}: timed out after {seconds:.1}s")]
    Timeout {
        /// The URL that was called.
        url: String,
        /// The timeout that was exceeded.
        seconds: f64,
    },
    /// The transport failed (connection refused, DNS, TLS, ...).
    #[error("{url}: {message}")]
    Transport {
        /// The URL that was called.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// An answer could not be parsed as what was expected (JSON mode, a field, a number).
    #[error("malformed answer ({what}): {detail}; answer was: {answer}")]
    Malformed {
        /// What was being parsed (e.g. "verdicts JSON", "score").
        what: String,
        /// Why parsing failed.
        detail: String,
        /// The text that failed to parse (possibly truncated).
        answer: String,
    },
    /// The request itself is invalid (e.g. no messages, an option out of range).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A configuration problem (e.g. a missing API key variable).
    #[error("configuration: {0}")]
    Config(String),
    /// The local model failed.
    #[error("model: {0}")]
    Model(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
