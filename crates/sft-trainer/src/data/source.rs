//! From a dataset reference to the files to read: `asset:REL`, a file, a folder (every data
//! file under it, sorted), a glob, or a hub dataset id.

use std::path::{Path, PathBuf};

use llama_model::weights::hub::{HubOptions, looks_like_hub_id};

use super::{Error, Result, hub};

/// A data file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `.parquet`
    Parquet,
    /// `.json` (an array of objects, or one object per line)
    Json,
    /// `.jsonl` / `.ndjson`
    Jsonl,
}

/// The format of a file name, if it is a data file.
pub(crate) fn file_kind(name: &str) -> Option<FileKind> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "parquet" => Some(FileKind::Parquet),
        "json" => Some(FileKind::Json),
        "jsonl" | "ndjson" => Some(FileKind::Jsonl),
        _ => None,
    }
}

fn path_kind(path: &Path) -> Option<FileKind> {
    path.file_name().and_then(|n| n.to_str()).and_then(file_kind)
}

fn missing(reference: &str, detail: impl Into<String>) -> Error {
    Error::MissingSource { source_ref: reference.to_string(), detail: detail.into() }
}

/// The files a reference names, in reading order.
///
/// # Errors
/// [`Error::MissingSource`] when nothing matches, [`Error::UnsupportedFile`] for a file of
/// another format, [`Error::Hub`] when a hub download fails.
pub(crate) fn resolve(reference: &str, split: &str, hub_options: &HubOptions) -> Result<Vec<PathBuf>> {
    let path = assets::resolve(reference).map_err(|e| missing(reference, e.to_string()))?;
    if path.is_file() {
        return match path_kind(&path) {
            Some(_) => Ok(vec![path]),
            None => Err(Error::UnsupportedFile { path }),
        };
    }
    if path.is_dir() {
        let mut files = Vec::new();
        walk(&path, &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(missing(reference, format!("the folder {} has no .parquet, .json or .jsonl files", path.display())));
        }
        return Ok(files);
    }
    if reference.contains(['*', '?', '[']) {
        let entries = glob::glob(reference).map_err(|e| missing(reference, format!("bad glob pattern: {e}")))?;
        let mut files: Vec<PathBuf> =
            entries.filter_map(std::result::Result::ok).filter(|p| p.is_file() && path_kind(p).is_some()).collect();
        files.sort();
        if files.is_empty() {
            return Err(missing(reference, "the glob matches no .parquet, .json or .jsonl files"));
        }
        return Ok(files);
    }
    if looks_like_hub_id(reference) && file_kind(reference).is_none() {
        return hub::download_split(reference, split, hub_options);
    }
    Err(missing(reference, format!("no such file or folder ({})", absolute(&path).display())))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if path_kind(&path).is_some() {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_extension() {
        assert_eq!(file_kind("a/train-0.parquet"), Some(FileKind::Parquet));
        assert_eq!(file_kind("x.JSONL"), Some(FileKind::Jsonl));
        assert_eq!(file_kind("x.json"), Some(FileKind::Json));
        assert_eq!(file_kind("README.md"), None);
        assert_eq!(file_kind("noext"), None);
    }

    #[test]
    fn folders_and_globs() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir");
        for f in ["b.jsonl", "data/a.json", "README.md", ".hidden.json"] {
            std::fs::write(dir.path().join(f), "{}").expect("write");
        }
        let files = resolve(&dir.path().display().to_string(), "train", &HubOptions::default()).expect("folder");
        assert_eq!(files, vec![dir.path().join("b.jsonl"), dir.path().join("data/a.json")]);
        let pattern = format!("{}/*.jsonl", dir.path().display());
        assert_eq!(resolve(&pattern, "train", &HubOptions::default()).expect("glob"), vec![dir.path().join("b.jsonl")]);
        let err = resolve(&format!("{}/*.parquet", dir.path().display()), "train", &HubOptions::default()).expect_err("none");
        assert!(err.to_string().contains("matches no"), "{err}");
        let err = resolve(&dir.path().join("README.md").display().to_string(), "train", &HubOptions::default()).expect_err("md");
        assert!(matches!(err, Error::UnsupportedFile { .. }), "{err}");
    }

    #[test]
    fn a_missing_relative_file_is_not_a_hub_id() {
        let err = resolve("nodir/train.jsonl", "train", &HubOptions::default()).expect_err("missing");
        assert!(err.to_string().contains("no such file or folder"), "{err}");
        assert!(err.to_string().contains("nodir/train.jsonl"), "{err}");
    }
}
