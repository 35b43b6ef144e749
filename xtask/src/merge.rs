//! `cargo xtask merge`: folds a PEFT adapter into its base model and writes a dense HF folder
//! (packed 4-bit bases are dequantized first, as peft's `merge_and_unload` does).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use llama_model::{OpenOptions, adapters, pretrained, save};

/// Arguments of `merge`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Base model: a HF folder, a `.gguf` file, `asset:REL`, or a hub id.
    #[arg(long)]
    pub model: String,
    /// The PEFT adapter folder.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `merge`.
pub fn run(args: Args) -> Result<()> {
    let device = crate::backend::Backend::Cpu.device()?;
    let reference = assets::resolve(&args.model)?.to_string_lossy().into_owned();
    let mut model = pretrained::open(&reference, &OpenOptions::new(&device)).with_context(|| format!("model {}", args.model))?;
    adapters::apply_peft_adapter(&mut model.model, &args.adapter).with_context(|| format!("adapter {}", args.adapter.display()))?;
    let merged = adapters::merge_adapters(model.model);
    save::save_hf_folder(&merged, &args.out)?;
    model.tokenizer.save(&args.out.join("tokenizer.json"))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
