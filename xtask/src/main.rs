//! `cargo xtask`: kindling's command line — the user's recipes (finetune, generate, quantize,
//! merge, synth, eval, serve, bench) and the contributors' tools (ci).
#![warn(missing_docs)]

mod backend;
mod bench;
mod ci;
mod eval;
mod finetune;
mod generate;
mod llm_spec;
mod merge;
mod quantize;
mod serve;
mod synth;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// kindling: QLoRA fine-tuning, generation and evaluation of Llama models, in one binary.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fine-tune a model with (Q)LoRA: the recipe's eight steps from one TOML config.
    Finetune(finetune::Args),
    /// Generate text with a model (and optional LoRA adapter).
    Generate(generate::Args),
    /// Write a model as an NF4/FP4 checkpoint in the HF bitsandbytes layout.
    Quantize(quantize::Args),
    /// Merge a PEFT adapter into its base model (dense HF folder).
    Merge(merge::Args),
    /// Serve a model through an OpenAI-compatible HTTP API.
    Serve(serve::Args),
    /// Synthesize test questions (goldens) from documents.
    Synth(synth::Args),
    /// Answer goldens with a model and judge the answers with LLM-as-judge metrics.
    Eval(eval::Args),
    /// Measure decode and training speed and memory, or run the kernel benches.
    Bench(bench::Args),
    /// Run what CI runs: fetch assets, then build and test everything.
    Ci(ci::Args),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KINDLING_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Finetune(args) => finetune::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Ci(args) => ci::run(args),
    }
}
