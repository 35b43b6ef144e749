//! Sentence embeddings with all-MiniLM-L6-v2 on burn, computed as sentence-transformers does:
//! word pieces (truncated to `max_seq_length`, padded per batch) → a 6-layer BERT encoder →
//! mean pooling over the attention mask → L2 normalization.
//!
//! # Invariant
//! A text's embedding does not depend on the batch it is encoded in: padding only adds masked
//! keys, which get zero attention weight and are left out of the mean. Weights are read from a
//! HF folder by their file names; a missing or mis-shaped tensor is an error naming it.
//!
//! ```no_run
//! use burn::tensor::Device;
//! let dir = std::path::Path::new("all-minilm-l6-v2");
//! let model = minilm::MiniLm::load(dir, &Device::default())?;
//! let vectors = model.encode(&["A sentence.", "Another one."])?;
//! assert_eq!(vectors[0].len(), 384);
//! # Ok::<(), minilm::Error>(())
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod embedder;
pub mod error;
pub mod model;
pub mod pooling;
pub mod weights;

pub use config::{BertConfig, HfBertConfig};
pub use embedder::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_SEQ_LENGTH, MiniLm};
pub use error::{Error, Result};
pub use model::{BertEmbeddings, BertLayer, BertModel};
pub use weights::load_bert;
