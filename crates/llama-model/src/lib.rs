//! Llama-architecture language models on burn: configuration from HF `config.json` or GGUF
//! metadata, weights from safetensors (single or sharded), GGUF or the hub, a forward pass
//! with an explicit KV cache, and sampling.
//!
//! # Invariant
//! Given the same weights, the f32 logits equal HF transformers' `LlamaForCausalLM` within
//! 1e-4 relative error; HF tensor names appear only in the loaders ([`load`], [`weights`]).
//! Each projection is a [`lora::Projection`], so a dense or NF4 base and an optional LoRA
//! adapter are chosen at load time, not by a different model type. The crate never picks a
//! backend: callers pass a `burn::tensor::Device`.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod load;
pub mod model;
pub mod nn;
pub mod packing;
pub mod quantized;
pub mod weights;

pub use config::{LlamaConfig, RopeScaling, presets};
pub use error::{Error, Result};
pub use load::{LoadOptions, load, load_quantized};
pub use model::{LayerContext, Llama};
pub use nn::KvCache;
pub mod generate;
mod greedy;
mod greedy_graph;
pub mod json_grammar;
pub mod json_schema;
pub mod sampling;

pub use generate::{Constraint, Decoder, Finish, GenerateOptions, Generated, StepIssue, StepLogprobs, generate, generate_constrained};
pub use sampling::SamplingConfig;
pub mod io;
pub mod tokenizer;

pub use tokenizer::Tokenizer;
pub mod pretrained;

pub use pretrained::{OpenOptions, Pretrained};
pub mod chat;

pub use chat::ChatModel;
pub mod adapters;
pub mod save;
