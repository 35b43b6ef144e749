//! Datasets and collation, as trl's `SFTTrainer` (1.16) and transformers' `Trainer` (5.x) do
//! them.
//!
//! - **Sources** ([`DatasetConfig::source`]): parquet, JSON (array or lines) and JSONL files, a
//!   folder or glob of them, `asset:REL`, or a hub dataset id whose split files are downloaded.
//! - **Rows**: a text field (trl's `dataset_text_field`), Alpaca `{instruction, input, output}`,
//!   or chat `messages`; the last two go through a `prompt-templates` chat template into a
//!   prompt and a completion (the prompt masked by default for Alpaca rows, as trl masks
//!   prompt-completion rows; learned for messages rows, as trl learns whole conversations).
//!   The shape is detected when not given.
//! - **Validation**: every bad row (missing or empty field, non-UTF-8 bytes, wrong type, a JSONL
//!   line that is not JSON, a conversation the template rejects) is reported with its file and
//!   row in a [`SkipReport`], and skipped, or stops loading when `strict` is set.
//! - **Tokenization** as trl ([`tokenize`]), truncation to `max_seq_length`
//!   ([`resolve_max_seq_length`]), a seeded train/eval split ([`train_eval_split`]), optional
//!   packing ([`pack`]).
//! - **Batches**: [`epoch_batches`] is a pure function of `(seed, epoch)` (exact resume), with
//!   transformers' length grouping; [`collate`] pads like trl's collator.
//!
//! # Invariant
//! Given the same tokenizer and rows, [`load_dataset`] + [`collate`] produce the `input_ids`,
//! `labels` and `attention_mask` that trl's `SFTTrainer` feeds its model (checked against
//! trl by `tests/data_trl_parity.rs`); and the batches of an epoch depend only on the examples,
//! the batch size, the seed and the epoch.
//!
//! ```no_run
//! use llama_model::Tokenizer;
//! use sft_trainer::data::{DatasetConfig, LoadOptions, collate, epoch_batches, load_dataset};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tokenizer = Tokenizer::from_file("tokenizer.json".as_ref(), Some(1), vec![2])?;
//! let config = DatasetConfig::new("asset:data/alpaca-llama2-1k.parquet");
//! let loaded = load_dataset(&config, &tokenizer, &LoadOptions::new(1024))?;
//! for indices in epoch_batches(&loaded.train, 4, true, 42, 0) {
//!     let examples: Vec<_> = indices.iter().map(|&i| &loaded.train[i]).collect();
//!     let batch = collate(&examples, tokenizer.pad_id().unwrap_or(0));
//!     assert_eq!(batch.input_ids.len(), batch.batch * batch.seq_len);
//! }
//! # Ok(()) }
//! ```

pub mod collate;
pub mod config;
pub mod error;
mod hub;
pub mod load;
pub mod order;
pub mod pack;
mod parquet;
pub mod report;
mod rows;
mod shape;
mod source;
pub mod split;
pub mod tokenize;

pub use collate::{Batch, IGNORE_INDEX, collate, collate_with};
pub use config::{DEFAULT_SOURCE, DatasetConfig, RowFormat};
pub use error::{Error, Result};
pub use load::{DEFAULT_MAX_SEQ_LENGTH, LoadOptions, Loaded, load_dataset, resolve_max_seq_length};
pub use order::{epoch_batches, epoch_order, length_grouped_indices};
pub use pack::{PackingStrategy, pack};
pub use report::{RowIssue, SkipReason, SkipReport, Truncation};
pub use split::train_eval_split;
pub use tokenize::Example;
