//! Downloading a model folder from the Hugging Face hub (or any server that speaks its file
//! protocol, chosen with `HF_ENDPOINT` or [`HubOptions::endpoint`]) into the local cache.
//!
//! Only what a Llama checkpoint needs is fetched: `config.json`, tokenizer and generation
//! files when present, and the safetensors weights (single file or index + shards).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Repo, RepoType};

use crate::{Error, Result};

/// Where and how to download.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Server base URL; defaults to `HF_ENDPOINT` or `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Cache folder; defaults to `HF_HOME`/hub or `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Branch, tag or commit; defaults to `main`.
    pub revision: Option<String>,
    /// Show download progress bars.
    pub progress: bool,
}

const OPTIONAL_FILES: [&str; 4] = ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"];

/// Whether `reference` looks like a hub id (`owner/name`) rather than a local path.
pub fn looks_like_hub_id(reference: &str) -> bool {
    let parts: Vec<&str> = reference.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        && !Path::new(reference).exists()
}

fn api_repo(repo_id: &str, repo_type: RepoType, options: &HubOptions) -> Result<ApiRepo> {
    let mut builder = ApiBuilder::from_env().with_progress(options.progress);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    if let Some(dir) = &options.cache_dir {
        builder = builder.with_cache_dir(dir.clone());
    }
    let api = builder.build().map_err(|e| Error::Hub(format!("{repo_id}: {e}")))?;
    let revision = options.revision.clone().unwrap_or_else(|| "main".into());
    Ok(api.repo(Repo::with_revision(repo_id.to_string(), repo_type, revision)))
}

/// Downloads a Llama model folder and returns its local snapshot folder.
///
/// # Errors
/// [`Error::Hub`] naming the repository and file that failed.
pub fn download_model(repo_id: &str, options: &HubOptions) -> Result<PathBuf> {
    let repo = api_repo(repo_id, RepoType::Model, options)?;
    let info = repo.info().map_err(|e| Error::Hub(format!("{repo_id}: listing files: {e}")))?;
    let files: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let get = |file: &str| repo.get(file).map_err(|e| Error::Hub(format!("{repo_id}: downloading `{file}`: {e}")));
    if !files.iter().any(|f| f == "config.json") {
        return Err(Error::Hub(format!("{repo_id}: the repository has no config.json")));
    }
    let config = get("config.json")?;
    for file in OPTIONAL_FILES {
        if files.iter().any(|f| f == file) {
            get(file)?;
        }
    }
    if files.iter().any(|f| f == "model.safetensors.index.json") {
        let index = get("model.safetensors.index.json")?;
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&index, format!("invalid JSON: {e}")))?;
        let mut shards: Vec<String> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(&index, "missing `weight_map`"))?
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        for shard in shards {
            get(&shard)?;
        }
    } else if files.iter().any(|f| f == "model.safetensors") {
        get("model.safetensors")?;
    } else {
        return Err(Error::Hub(format!("{repo_id}: no model.safetensors or model.safetensors.index.json")));
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Downloads one file of a repository (e.g. a dataset's parquet) and returns its local path.
///
/// # Errors
/// [`Error::Hub`] naming the repository and file.
pub fn download_file(repo_id: &str, repo_type: RepoType, file: &str, options: &HubOptions) -> Result<PathBuf> {
    api_repo(repo_id, repo_type, options)?.get(file).map_err(|e| Error::Hub(format!("{repo_id}: downloading `{file}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        assert!(looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(!looks_like_hub_id("./model"));
        assert!(!looks_like_hub_id("/abs/path/model"));
        assert!(!looks_like_hub_id("model.gguf"));
    }
}
