//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading documents or synthesizing goldens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path is a directory, not a document.
    #[error("{}: is a directory, not a document", path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The extension is not one of the supported document formats.
    #[error("{}: unsupported document type `{extension}` (expected .txt, .md, .markdown, .pdf or .docx)", path.display())]
    UnsupportedFormat {
        /// The document.
        path: PathBuf,
        /// Its extension (empty when it has none).
        extension: String,
    },
    /// The file has no bytes.
    #[error("{}: file is empty (0 bytes)", path.display())]
    EmptyFile {
        /// The document.
        path: PathBuf,
    },
    /// The document was read but holds no text.
    #[error("{}: document contains no text", path.display())]
    NoText {
        /// The document.
        path: PathBuf,
    },
    /// The document is password protected or encrypted.
    #[error("{}: {format} is encrypted or password protected: cannot extract text", path.display())]
    Encrypted {
        /// The document.
        path: PathBuf,
        /// `PDF` or `DOCX`.
        format: &'static str,
    },
    /// The document is damaged or not what its extension says.
    #[error("{}: not a readable {format} file: {detail}", path.display())]
    Corrupt {
        /// The document.
        path: PathBuf,
        /// The format its extension claims.
        format: &'static str,
        /// What the parser reported.
        detail: String,
    },
    /// A text file is not valid UTF-8 (or UTF-16 with a byte-order mark).
    #[error("{}: not UTF-8 text: {detail}", path.display())]
    Encoding {
        /// The document.
        path: PathBuf,
        /// Where decoding failed.
        detail: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A configuration value is out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// A document yields fewer chunks than the configuration needs.
    #[error("{}: {detail}", path.display())]
    TooFewChunks {
        /// The document.
        path: PathBuf,
        /// What was needed and what was there.
        detail: String,
    },
    /// A model or embedder call failed (including answers still malformed after retries).
    #[error("{stage}: {source}")]
    Llm {
        /// The pipeline stage that made the call (e.g. "context quality of chunk 3 of a.pdf").
        stage: String,
        /// The model's error.
        source: llm_api::Error,
    },
    /// Writing JSONL or CSV failed.
    #[error("{}: {detail}", path.display())]
    Output {
        /// The output file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps a model error with the stage that produced it.
    pub fn llm(stage: impl Into<String>, source: llm_api::Error) -> Self {
        Error::Llm { stage: stage.into(), source }
    }
}
