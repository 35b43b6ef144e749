//! `cargo xtask serve`: an OpenAI-compatible HTTP server (`/v1/chat/completions` with
//! streaming and logprobs, `/v1/models`) for a local model plus optional adapter.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;

use crate::backend::Backend;
use crate::generate::{DEFAULT_MODEL, open_chat};

/// Arguments of `serve`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Model: a HF folder, a `.gguf` file, `asset:REL`, or a hub id.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// A PEFT adapter folder to apply.
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// Prompt format (`auto`, `raw`, `llama2`, `llama3`, `chatml`, `alpaca`).
    #[arg(long, default_value = "auto")]
    pub template: String,
    /// The model id clients use (`model` field); defaults to `--model`.
    #[arg(long)]
    pub model_id: Option<String>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port to bind (0 = any free port; the bound address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A `tokenizer.json` to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
}

/// Runs `serve` until Ctrl-C / SIGTERM.
pub fn run(args: Args) -> Result<()> {
    let chat = open_chat(&args.model, args.adapter.as_deref(), &args.template, args.tokenizer.clone(), args.backend)?;
    let id = args.model_id.clone().unwrap_or_else(|| args.model.clone());
    let config = llm_api::server::ServerConfig::new(Arc::new(chat), id);
    llm_api::server::serve_config(config, SocketAddr::new(args.host, args.port), |addr| {
        // The first line on stdout is the base URL, so that scripts and tests can read it.
        println!("http://{addr}/v1");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
