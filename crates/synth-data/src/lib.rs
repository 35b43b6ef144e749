//! Synthetic test data ("goldens") from documents, the way DeepEval's synthesizer makes them:
//! load `.txt` / `.md` / `.pdf` / `.docx` → chunk by tokens → critic-scored contexts grouped by
//! embedding similarity → inputs → critic filtering and rewriting → evolutions → optional
//! styling → expected outputs, written as JSONL or CSV with full provenance.
//!
//! # Invariant
//! This crate is burn-free: it reaches models only through [`llm_api::Llm`] and
//! [`llm_api::Embedder`] (`&dyn`), so any local or remote model can drive it. Given the same
//! documents, configuration (seed included) and deterministic models, it produces
//! byte-identical output.
//!
//! ```no_run
//! # fn demo(llm: &dyn llm_api::Llm, embedder: &dyn llm_api::Embedder, tokenizer: &tokenizers::Tokenizer) -> synth_data::Result<()> {
//! use synth_data::{SynthConfig, Synthesizer};
//! let config = SynthConfig { max_goldens_per_document: Some(2), ..SynthConfig::default() };
//! let synth = Synthesizer::new(llm, embedder, tokenizer, config)?;
//! let goldens = synth.generate_goldens_from_docs(&["a.pdf", "b.docx"], &mut |p| {
//!     tracing::info!(done = p.documents_done, goldens = p.goldens_made, "progress");
//! })?;
//! synth_data::write_jsonl(std::path::Path::new("goldens.jsonl"), &goldens)?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod chunking;
pub mod config;
pub mod contexts;
pub mod document;
pub mod error;
pub mod evolution;
pub mod golden;
pub mod json;
pub mod loaders;
pub mod prompts;
pub mod similarity;
pub mod synthesizer;

pub use chunking::{Chunk, TokenChunker};
pub use config::{ContextConfig, FiltrationConfig, StylingConfig, SynthConfig};
pub use contexts::BuiltContext;
pub use document::{Document, DocumentFormat, FORMATS, load_document};
pub use error::{Error, Result};
pub use evolution::{Evolution, EvolutionConfig};
pub use golden::{CSV_COLUMNS, ChunkRef, Golden, read_jsonl, write_atomically, write_csv, write_jsonl};
pub use synthesizer::{Progress, Synthesizer};
