//! A loaded document and the one entry point that reads any supported format.
//!
//! The format is chosen by extension from one table ([`FORMATS`]); every failure names the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::loaders;
use crate::{Error, Result};

/// The document formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    /// Plain text (UTF-8, or UTF-16 with a byte-order mark).
    Text,
    /// Markdown, flattened to plain text that keeps the headings' text.
    Markdown,
    /// PDF (text layer; scanned pages without text yield nothing).
    Pdf,
    /// Office Open XML word-processing document.
    Docx,
}

/// Extension (lowercase, no dot) → format.
pub const FORMATS: &[(&str, DocumentFormat)] = &[
    ("txt", DocumentFormat::Text),
    ("text", DocumentFormat::Text),
    ("md", DocumentFormat::Markdown),
    ("markdown", DocumentFormat::Markdown),
    ("mdx", DocumentFormat::Markdown),
    ("pdf", DocumentFormat::Pdf),
    ("docx", DocumentFormat::Docx),
];

impl DocumentFormat {
    /// The format a path's extension names.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] naming the file and the extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        FORMATS
            .iter()
            .find(|(ext, _)| *ext == extension)
            .map(|(_, format)| *format)
            .ok_or_else(|| Error::UnsupportedFormat { path: path.to_path_buf(), extension })
    }

    /// A short upper-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            DocumentFormat::Text => "text",
            DocumentFormat::Markdown => "Markdown",
            DocumentFormat::Pdf => "PDF",
            DocumentFormat::Docx => "DOCX",
        }
    }
}

/// A document's extracted text and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The file it was read from, as given.
    pub path: PathBuf,
    /// Its format.
    pub format: DocumentFormat,
    /// The extracted plain text (never empty or whitespace only).
    pub text: String,
}

/// Reads a document of any supported format.
///
/// # Errors
/// [`Error::IsDirectory`], [`Error::UnsupportedFormat`], [`Error::Io`], [`Error::EmptyFile`]
/// (0 bytes), [`Error::Encoding`], [`Error::Corrupt`], [`Error::Encrypted`] or
/// [`Error::NoText`] (readable, but no text in it), each naming the file.
pub fn load_document(path: &Path) -> Result<Document> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if meta.is_dir() {
        return Err(Error::IsDirectory { path: path.to_path_buf() });
    }
    let format = DocumentFormat::from_path(path)?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if bytes.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf() });
    }
    let text = match format {
        DocumentFormat::Text => loaders::text::decode(&bytes, path)?,
        DocumentFormat::Markdown => loaders::markdown::to_plain_text(&loaders::text::decode(&bytes, path)?),
        DocumentFormat::Pdf => loaders::pdf::extract(&bytes, path)?,
        DocumentFormat::Docx => loaders::docx::extract(&bytes, path)?,
    };
    if text.trim().is_empty() {
        return Err(Error::NoText { path: path.to_path_buf() });
    }
    tracing::debug!(path = %path.display(), format = format.name(), chars = text.len(), "loaded document");
    Ok(Document { path: path.to_path_buf(), format, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_case_insensitively() {
        assert_eq!(DocumentFormat::from_path(Path::new("a/B.PDF")).expect("pdf"), DocumentFormat::Pdf);
        assert_eq!(DocumentFormat::from_path(Path::new("x.markdown")).expect("md"), DocumentFormat::Markdown);
        let err = DocumentFormat::from_path(Path::new("notes.rtf")).expect_err("rtf");
        assert!(err.to_string().contains("notes.rtf") && err.to_string().contains("`rtf`"), "{err}");
        let err = DocumentFormat::from_path(Path::new("README")).expect_err("no extension");
        assert!(err.to_string().contains("README"), "{err}");
    }

    #[test]
    fn directories_and_missing_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("folder.txt");
        std::fs::create_dir(&sub).expect("mkdir");
        let err = load_document(&sub).expect_err("dir");
        assert!(matches!(err, Error::IsDirectory { .. }) && err.to_string().contains("folder.txt"), "{err}");
        let err = load_document(&dir.path().join("absent.txt")).expect_err("missing");
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("absent.txt"), "{err}");
    }

    #[test]
    fn whitespace_only_text_has_no_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blank.md");
        std::fs::write(&path, "  \n\n\t ").expect("write");
        let err = load_document(&path).expect_err("blank");
        assert!(matches!(err, Error::NoText { .. }) && err.to_string().contains("blank.md"), "{err}");
    }
}
