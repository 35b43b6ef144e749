//! The error type of [`crate::data`]: every variant names the source, file, row or field it is
//! about, so a user can find the offending line of a multi-gigabyte dataset.

use std::path::PathBuf;

use super::report::RowIssue;

/// Everything that can go wrong while finding, reading, validating or tokenizing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The dataset reference is neither an existing path, a glob that matches files, an asset,
    /// nor a hub id.
    #[error("dataset `{source_ref}`: {detail}")]
    MissingSource {
        /// The reference as the user gave it.
        source_ref: String,
        /// Why it could not be found.
        detail: String,
    },
    /// A file has an extension the loader does not read.
    #[error("{}: unsupported dataset file (expected .parquet, .json or .jsonl)", path.display())]
    UnsupportedFile {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is not a JSON array of objects (a whole-file problem, with line and column).
    #[error("{}: {detail}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A parquet file could not be read (bad footer, unsupported compression, invalid UTF-8 in
    /// a `string` column, ...).
    #[error("{}: parquet: {detail}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        detail: String,
    },
    /// The configured (or detected) row shape needs a field that the file does not have.
    #[error("{}: no field `{field}` in the dataset; available fields: {available}", path.display())]
    FieldNotFound {
        /// The file.
        path: PathBuf,
        /// The missing field.
        field: String,
        /// The fields the file has, comma separated.
        available: String,
    },
    /// Auto-detection found no known row shape.
    #[error(
        "{}: cannot tell the row shape: no `{text_field}` field, no `messages`, no `instruction` + `output`; available fields: {available}",
        path.display()
    )]
    UnknownShape {
        /// The file.
        path: PathBuf,
        /// The configured text field.
        text_field: String,
        /// The fields the file has, comma separated.
        available: String,
    },
    /// A row is invalid and `strict` is set.
    #[error("{0} (strict mode stops at the first bad row)")]
    BadRow(RowIssue),
    /// The dataset has no rows at all.
    #[error("dataset `{source_ref}` is empty ({files} file(s), no rows)")]
    EmptyDataset {
        /// The reference as the user gave it.
        source_ref: String,
        /// How many files were read.
        files: usize,
    },
    /// Every row was skipped.
    #[error("dataset `{source_ref}`: all {rows} row(s) were skipped: {summary}")]
    NoUsableRows {
        /// The reference as the user gave it.
        source_ref: String,
        /// How many rows were read.
        rows: usize,
        /// The skip counts and first examples.
        summary: String,
    },
    /// The hub could not list or download a dataset.
    #[error("hub dataset `{repo}`: {detail}")]
    Hub {
        /// The repository id.
        repo: String,
        /// What failed.
        detail: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("dataset config: {0}")]
    Config(String),
    /// Choosing or compiling the chat template failed.
    #[error("chat template: {0}")]
    Template(#[from] prompt_templates::Error),
    /// The tokenizer failed on something other than a row (e.g. its EOS id is unknown).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Result alias of [`crate::data`].
pub type Result<T> = std::result::Result<T, Error>;
