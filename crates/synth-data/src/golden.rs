//! A golden (one synthetic test case with its provenance) and its JSONL / CSV files.
//!
//! Files are written atomically: to a temporary sibling first, then renamed over the target.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::evolution::Evolution;
use crate::{Error, Result};

/// Where a context chunk lies in its document's extracted text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk's index in the document.
    pub index: usize,
    /// Byte offset of its start in the extracted text.
    pub start: usize,
    /// Byte offset one past its end.
    pub end: usize,
}

/// One synthetic test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    /// The input (question or instruction), after filtering, evolution and styling.
    pub input: String,
    /// The reference answer, when asked for.
    pub expected_output: Option<String>,
    /// The context chunks the input was generated from (seed chunk first).
    pub context: Vec<String>,
    /// The document the context came from, as given.
    pub source_file: String,
    /// Where each context chunk lies in the document, in `context`'s order.
    pub context_chunks: Vec<ChunkRef>,
    /// Cosine similarity of each context chunk to the seed chunk (1 for the seed).
    pub context_similarities: Vec<f64>,
    /// Evolutions applied, in order.
    pub evolutions: Vec<Evolution>,
    /// The critic's quality score of the seed chunk, mean of clarity, depth, structure, relevance.
    pub context_quality: f64,
    /// The critic's last quality score of the input, before evolution.
    pub synthetic_input_quality: f64,
    /// The input as first generated, before filtering and evolution.
    pub original_input: String,
}

/// A temporary sibling of `path`, unique to this process.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temporary sibling, flush, rename).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The goldens as JSON Lines, one object per line.
///
/// # Errors
/// [`Error::Output`] if a golden cannot be serialized.
pub fn to_jsonl(goldens: &[Golden]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for g in goldens {
        serde_json::to_writer(&mut out, g).map_err(|e| Error::Output { path: "<jsonl>".into(), detail: e.to_string() })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Writes the goldens as JSON Lines, atomically.
///
/// # Errors
/// [`Error::Io`] or [`Error::Output`] naming the file.
pub fn write_jsonl(path: &Path, goldens: &[Golden]) -> Result<()> {
    let bytes = to_jsonl(goldens).map_err(|e| match e {
        Error::Output { detail, .. } => Error::Output { path: path.to_path_buf(), detail },
        other => other,
    })?;
    write_atomically(path, &bytes)
}

/// Reads goldens from JSON Lines (blank lines are skipped).
///
/// # Errors
/// [`Error::Io`], or [`Error::Output`] naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Golden>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| Error::Output { path: path.to_path_buf(), detail: format!("line {}: {e}", i + 1) })
        })
        .collect()
}

/// CSV columns, in order. List-valued fields are JSON arrays in one cell.
pub const CSV_COLUMNS: [&str; 8] =
    ["input", "expected_output", "context", "source_file", "evolutions", "context_quality", "synthetic_input_quality", "original_input"];

/// Writes the goldens as CSV with a header row, atomically.
///
/// # Errors
/// [`Error::Io`] or [`Error::Output`] naming the file.
pub fn write_csv(path: &Path, goldens: &[Golden]) -> Result<()> {
    let out_err = |detail: String| Error::Output { path: path.to_path_buf(), detail };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS).map_err(|e| out_err(e.to_string()))?;
    for g in goldens {
        let context = serde_json::to_string(&g.context).map_err(|e| out_err(e.to_string()))?;
        let evolutions = serde_json::to_string(&g.evolutions).map_err(|e| out_err(e.to_string()))?;
        writer
            .write_record([
                g.input.as_str(),
                g.expected_output.as_deref().unwrap_or(""),
                &context,
                &g.source_file,
                &evolutions,
                &g.context_quality.to_string(),
                &g.synthetic_input_quality.to_string(),
                &g.original_input,
            ])
            .map_err(|e| out_err(e.to_string()))?;
    }
    let bytes = writer.into_inner().map_err(|e| out_err(e.to_string()))?;
    write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Golden {
        Golden {
            input: "Why do tides, \"rise\"?".into(),
            expected_output: Some("The moon.\nMostly.".into()),
            context: vec!["Tides rise.".into(), "The moon pulls.".into()],
            source_file: "docs/tides.txt".into(),
            context_chunks: vec![ChunkRef { index: 0, start: 0, end: 11 }, ChunkRef { index: 3, start: 40, end: 55 }],
            context_similarities: vec![1.0, 0.5],
            evolutions: vec![Evolution::MultiContext],
            context_quality: 0.8,
            synthetic_input_quality: 0.9,
            original_input: "Why tides?".into(),
        }
    }

    #[test]
    fn jsonl_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("goldens.jsonl");
        write_jsonl(&path, &[golden(), golden()]).expect("write");
        assert_eq!(read_jsonl(&path).expect("read"), vec![golden(), golden()]);
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("goldens.jsonl")]);
        let line = std::fs::read_to_string(&path).expect("read");
        assert!(line.contains(r#""evolutions":["multi_context"]"#), "{line}");
    }

    #[test]
    fn csv_has_header_and_quotes_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("goldens.csv");
        write_csv(&path, &[golden()]).expect("write");
        let mut reader = csv::Reader::from_path(&path).expect("open");
        let header: Vec<String> = reader.headers().expect("header").iter().map(String::from).collect();
        assert_eq!(header, CSV_COLUMNS);
        let row = reader.records().next().expect("row").expect("record");
        assert_eq!(&row[0], "Why do tides, \"rise\"?");
        assert_eq!(&row[1], "The moon.\nMostly.");
        let context: Vec<String> = serde_json::from_str(&row[2]).expect("context json");
        assert_eq!(context.len(), 2);
    }

    #[test]
    fn bad_jsonl_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.jsonl");
        std::fs::write(&path, "\n{\"input\": 3}\n").expect("write");
        let err = read_jsonl(&path).expect_err("bad");
        assert!(err.to_string().contains("g.jsonl") && err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn writing_into_a_missing_folder_names_the_file() {
        let err = write_jsonl(Path::new("/nonexistent-dir/x/g.jsonl"), &[golden()]).expect_err("no dir");
        assert!(err.to_string().contains("g.jsonl"), "{err}");
    }
}
