//! The append-only JSONL journal of finished jobs: what survives a crash mid-evaluation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{Error, JobRecord, Result};

/// Opens (creating when missing) `path` for appending.
pub(crate) fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))
}

/// Appends one record as one line, in a single write, and flushes it to the OS.
pub(crate) fn append(file: &mut File, record: &JobRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.flush()
}

/// Reads every record of a journal. A torn last line (a crash mid-write) is skipped with a
/// warning; a bad line elsewhere is an error naming it.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Dataset`] for an invalid line that
/// is not the last one.
pub fn read_journal(path: &Path) -> Result<Vec<JobRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let mut records = Vec::with_capacity(lines.len());
    for (k, (i, line)) in lines.iter().enumerate() {
        match serde_json::from_str::<JobRecord>(line) {
            Ok(r) => records.push(r),
            Err(e) if k + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(path = %path.display(), line = i + 1, %e, "skipping a torn last journal line");
            }
            Err(e) => {
                return Err(Error::Dataset {
                    path: path.to_path_buf(),
                    at: format!("line {}", i + 1),
                    field: None,
                    message: format!("invalid journal record: {e}"),
                });
            }
        }
    }
    Ok(records)
}

pub(crate) use read_journal as read;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> JobRecord {
        JobRecord {
            case_index: i,
            input: format!("q{i}"),
            actual_output: "a".into(),
            metric: "Bias".into(),
            result: None,
            error: Some("x".into()),
        }
    }

    #[test]
    fn appends_survive_and_a_torn_tail_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j").join("journal.jsonl");
        let mut file = open(&path).expect("open");
        append(&mut file, &record(0)).expect("append");
        append(&mut file, &record(1)).expect("append");
        drop(file);
        assert_eq!(read_journal(&path).expect("read"), vec![record(0), record(1)]);
        // A crash in the middle of the third line.
        let mut file = open(&path).expect("reopen");
        file.write_all(b"{\"case_index\": 2, \"inp").expect("torn write");
        drop(file);
        assert_eq!(read_journal(&path).expect("read torn").len(), 2);
    }

    #[test]
    fn a_bad_middle_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let good = serde_json::to_string(&record(0)).expect("json");
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).expect("write");
        let err = read_journal(&path).expect_err("bad line").to_string();
        assert!(err.contains("line 2") && err.contains("journal.jsonl"), "{err}");
    }
}
