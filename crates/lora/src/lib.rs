//! LoRA adapters over any base projection, dense or NF4 (QLoRA), in peft's format.
//!
//! `y = base(x) + s · B · A · dropout(x)` with `A: [r, in]`, `B: [out, r]`,
//! `s = α / r` (or `α / √r` with rsLoRA); A starts Kaiming-uniform and B zero, as peft does, so
//! a fresh adapter leaves the base model's outputs unchanged.
//!
//! # Invariant
//! This crate knows projections, not models: it never names a Llama layer. The side path is
//! computed as `(x · Aᵀ) · Bᵀ`, never by forming the dense `B · A` product, so its backward is
//! `O(tokens · r · (in + out))` and the base weight never receives a gradient.
#![warn(missing_docs)]

pub mod adapter;
pub mod autocast;
pub mod base;
pub mod config;
pub mod error;
pub mod matmul;
pub mod peft;
pub mod projection;

pub use adapter::LoraAdapter;
pub use base::{BaseLinear, DenseLinear};
pub use config::{LLAMA_PROJECTIONS, LoraConfig, TargetModules};
pub use error::{Error, Result};
pub use peft::{AdapterWeights, PeftAdapter, PeftConfig};
pub use projection::Projection;
