//! `cargo xtask generate`: chat with a model from the command line, streaming the answer.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use llama_model::weights::hub::HubOptions;
use llama_model::{ChatModel, OpenOptions};
use llm_api::{CompletionOptions, Message};

use crate::backend::Backend;

/// The model `generate` uses when none is given: SmolLM2-135M-Instruct (GGUF) from the asset
/// folder (`scripts/fetch-assets.sh`).
pub const DEFAULT_MODEL: &str = "asset:smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Arguments of `generate`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Model: a HF folder, a `.gguf` file, `asset:REL`, or a hub id (`owner/name`).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// A PEFT adapter folder to apply.
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// Prompt format: `auto` (the model's own template, else raw), `raw`, `llama2`, `llama3`,
    /// `chatml` or `alpaca`.
    #[arg(long, default_value = "auto")]
    pub template: String,
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// An optional system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Most new tokens.
    #[arg(long, default_value_t = 200)]
    pub max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A `tokenizer.json` to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Load the block projections as NF4 (as a QLoRA run trains them).
    #[arg(long)]
    pub load_in_4bit: bool,
}

/// Opens a chat model from CLI-style arguments.
pub fn open_chat(
    model: &str,
    adapter: Option<&std::path::Path>,
    template: &str,
    tokenizer: Option<std::path::PathBuf>,
    backend: Backend,
) -> Result<ChatModel> {
    open_chat_with(model, adapter, template, tokenizer, backend, None)
}

/// [`open_chat`] with an optional 4-bit quantization of the block projections.
pub fn open_chat_with(
    model: &str,
    adapter: Option<&std::path::Path>,
    template: &str,
    tokenizer: Option<std::path::PathBuf>,
    backend: Backend,
    quant: Option<nf4_quant::QuantConfig>,
) -> Result<ChatModel> {
    let device = backend.device()?;
    let path = assets::resolve(model)?;
    let reference = path.to_string_lossy().to_string();
    let mut options = OpenOptions::new(&device);
    options.load.dtype = backend.dtype();
    options.tokenizer = tokenizer;
    options.hub = HubOptions { progress: true, ..HubOptions::default() };
    let files = llama_model::pretrained::resolve(&reference, &options).with_context(|| format!("loading model {model}"))?;
    let network = llama_model::load_quantized(files.source.as_ref(), &files.config, &options.load, quant.as_ref())
        .with_context(|| format!("loading model {model}"))?;
    let mut pretrained = llama_model::Pretrained { model: network, tokenizer: files.tokenizer, chat: files.chat, origin: files.origin };
    if let Some(dir) = adapter {
        llama_model::adapters::apply_peft_adapter(&mut pretrained.model, dir)
            .with_context(|| format!("applying adapter {}", dir.display()))?;
    }
    Ok(ChatModel::new(pretrained, template, model)?)
}

/// Runs `generate`.
pub fn run(args: Args) -> Result<()> {
    let quant = args.load_in_4bit.then(nf4_quant::QuantConfig::nf4);
    let chat = open_chat_with(&args.model, args.adapter.as_deref(), &args.template, args.tokenizer.clone(), args.backend, quant)?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(&args.prompt));
    let options = CompletionOptions {
        max_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: Some(args.seed),
        ..CompletionOptions::default()
    };
    let mut stdout = std::io::stdout().lock();
    chat.chat(&messages, &options, &mut |piece| {
        let _ = stdout.write_all(piece.as_bytes());
        let _ = stdout.flush();
        true
    })?;
    writeln!(stdout)?;
    Ok(())
}
