//! PDF → plain text with `pdf-extract` (on `lopdf`): the text layer of every page.
//!
//! An encrypted PDF is opened with the empty user password (what viewers do silently); one
//! that needs a real password is reported as encrypted. The extractor is guarded against
//! panics on malformed content, which become [`Error::Corrupt`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use pdf_extract::{Document, PlainTextOutput, output_doc};

use crate::{Error, Result};

/// Extracts the text of a PDF.
///
/// # Errors
/// [`Error::Corrupt`] (not a PDF, damaged, or the extractor failed) or [`Error::Encrypted`],
/// naming the file.
pub fn extract(bytes: &[u8], path: &Path) -> Result<String> {
    let corrupt = |detail: String| Error::Corrupt { path: path.to_path_buf(), format: "PDF", detail };
    if !bytes.starts_with(b"%PDF-") && !bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        return Err(corrupt("no %PDF- header".into()));
    }
    let guarded = catch_unwind(AssertUnwindSafe(|| -> Result<String> {
        let mut doc = Document::load_mem(bytes).map_err(|e| corrupt(e.to_string()))?;
        if doc.is_encrypted() && doc.decrypt("").is_err() {
            return Err(Error::Encrypted { path: path.to_path_buf(), format: "PDF" });
        }
        let mut text = String::new();
        output_doc(&doc, &mut PlainTextOutput::new(&mut text)).map_err(|e| corrupt(e.to_string()))?;
        Ok(text)
    }));
    let text = guarded.map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the extractor panicked".into());
        corrupt(what)
    })??;
    Ok(tidy(&text))
}

/// Joins the extractor's output into paragraphs: trailing spaces dropped, at most one blank line.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            if !blank && !out.is_empty() {
                out.push('\n');
            }
            blank = true;
            continue;
        }
        blank = false;
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_pdf_bytes_are_corrupt() {
        let err = extract(b"hello, not a pdf", Path::new("fake.pdf")).expect_err("not pdf");
        assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains("fake.pdf"), "{err}");
    }

    #[test]
    fn truncated_pdf_is_corrupt() {
        let err = extract(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog", Path::new("cut.pdf")).expect_err("cut");
        assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains("cut.pdf"), "{err}");
    }
}
