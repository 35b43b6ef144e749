//! The contract between kindling's model-facing pipelines (`eval`, `synth-data`) and any
//! language model, local or remote, plus an OpenAI-compatible client and server.
//!
//! # Invariant
//! This crate is tensor-free and burn-free: a user can judge an OpenAI-compatible endpoint, or
//! synthesize data with one, without compiling a tensor library. Local burn models implement
//! [`Llm`] and [`Embedder`] in the crates that own them. The default build has no HTTP stack:
//! the `client` feature adds [`OpenAiClient`] (blocking, `ureq`), the `server` feature adds
//! [`server::serve`] (axum + tokio). Both speak the same wire types, so a client always
//! understands the server.
#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod json_answer;
pub mod message;
#[cfg(feature = "server")]
pub mod server;
pub mod traits;
#[cfg(any(feature = "client", feature = "server"))]
pub(crate) mod wire;

#[cfg(feature = "client")]
pub use client::{OpenAiClient, OpenAiConfig, RetryPolicy};
pub use error::{Error, Result};
pub use json_answer::parse_json_answer;
pub use message::{Completion, CompletionOptions, FinishReason, Message, Role, TokenLogprob, TopLogprob, Usage};
#[cfg(feature = "server")]
pub use server::{ServerConfig, ServerHandle, serve, spawn_server};
pub use traits::{Embedder, Llm};
