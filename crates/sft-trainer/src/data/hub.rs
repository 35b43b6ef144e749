//! Hub datasets by id (`owner/name`): the repository's files are listed through `hf-hub`, the
//! data files of one split are chosen the way `datasets` chooses them by name, and downloaded
//! into the hub cache. Any server that speaks the hub's file protocol works
//! ([`HubOptions::endpoint`] or `HF_ENDPOINT`).
//!
//! A file belongs to split `train` when a word of its path (split at non-alphanumerics) is
//! `train` or `training` (`validation`: also `valid`, `val`, `dev`; `test`: also `testing`,
//! `eval`, `evaluation`; any other split: its own name), e.g. `data/train-00000-of-00001.parquet`
//! or `train.jsonl`. A repository whose files name no split at all is all `train`. Parquet
//! files are preferred over JSONL, JSONL over JSON.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use llama_model::weights::hub::HubOptions;

use super::source::{FileKind, file_kind};
use super::{Error, Result};

const SPLIT_WORDS: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "val", "dev"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];

fn words(path: &str) -> Vec<String> {
    let stem = path.rsplit_once('.').map(|(s, _)| s).unwrap_or(path);
    stem.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_ascii_lowercase).collect()
}

fn split_words(split: &str) -> Vec<String> {
    let split = split.to_ascii_lowercase();
    SPLIT_WORDS
        .iter()
        .find(|(name, _)| *name == split)
        .map(|(_, words)| words.iter().map(|w| w.to_string()).collect())
        .unwrap_or_else(|| vec![split])
}

/// The files of `split` among a repository's files.
///
/// # Errors
/// A message listing the data files when none belongs to the split.
pub(crate) fn split_files(files: &[String], split: &str) -> std::result::Result<Vec<String>, String> {
    let data: Vec<&String> = files.iter().filter(|f| !f.split('/').any(|part| part.starts_with('.')) && file_kind(f).is_some()).collect();
    if data.is_empty() {
        return Err(format!("no .parquet, .jsonl or .json files among {} file(s)", files.len()));
    }
    let wanted = split_words(split);
    let names_split = |f: &str, w: &[String]| words(f).iter().any(|word| w.contains(word));
    let any_split: Vec<String> = SPLIT_WORDS.iter().flat_map(|(_, w)| w.iter().map(|s| s.to_string())).collect();
    let unsplit = !data.iter().any(|f| names_split(f, &any_split));
    for kind in [FileKind::Parquet, FileKind::Jsonl, FileKind::Json] {
        let mut chosen: Vec<String> = data
            .iter()
            .filter(|f| file_kind(f) == Some(kind))
            .filter(|f| names_split(f, &wanted) || (unsplit && split.eq_ignore_ascii_case("train")))
            .map(|f| f.to_string())
            .collect();
        if !chosen.is_empty() {
            chosen.sort();
            return Ok(chosen);
        }
    }
    let listed: Vec<&str> = data.iter().take(20).map(|f| f.as_str()).collect();
    Err(format!("no data file for split `{split}`; data files: {}", listed.join(", ")))
}

/// Lists a hub dataset's files and downloads those of `split`; returns their local paths.
///
/// # Errors
/// [`Error::Hub`] naming the repository, and the file when a download fails.
pub(crate) fn download_split(repo_id: &str, split: &str, options: &HubOptions) -> Result<Vec<PathBuf>> {
    let hub_error = |detail: String| Error::Hub { repo: repo_id.to_string(), detail };
    let mut builder = ApiBuilder::from_env().with_progress(options.progress);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    if let Some(dir) = &options.cache_dir {
        builder = builder.with_cache_dir(dir.clone());
    }
    let api = builder.build().map_err(|e| hub_error(e.to_string()))?;
    let revision = options.revision.clone().unwrap_or_else(|| "main".into());
    let repo = api.repo(Repo::with_revision(repo_id.to_string(), RepoType::Dataset, revision));
    let info = repo.info().map_err(|e| hub_error(format!("listing files: {e}")))?;
    let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let chosen = split_files(&files, split).map_err(hub_error)?;
    tracing::info!(repo = repo_id, split, files = chosen.len(), "downloading hub dataset");
    chosen.iter().map(|file| repo.get(file).map_err(|e| hub_error(format!("downloading `{file}`: {e}")))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hub_layout_picks_the_split() {
        let files = names(&[
            ".gitattributes",
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
        ]);
        assert_eq!(
            split_files(&files, "train").expect("train"),
            names(&["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"])
        );
        assert_eq!(split_files(&files, "test").expect("test"), names(&["data/test-00000-of-00001.parquet"]));
        let err = split_files(&files, "validation").expect_err("no validation");
        assert!(err.contains("data/test-00000-of-00001.parquet"), "{err}");
    }

    #[test]
    fn unsplit_repos_are_train_and_parquet_wins() {
        let files = names(&["alpaca.json", "alpaca.parquet"]);
        assert_eq!(split_files(&files, "train").expect("train"), names(&["alpaca.parquet"]));
        assert!(split_files(&files, "test").is_err());
        let files = names(&["training_set.jsonl", "eval.jsonl"]);
        assert_eq!(split_files(&files, "train").expect("train"), names(&["training_set.jsonl"]));
        assert_eq!(split_files(&files, "test").expect("test"), names(&["eval.jsonl"]));
        assert!(split_files(&names(&["README.md"]), "train").is_err());
    }
}
