//! `cargo xtask quantize`: writes a model as an NF4 (or FP4) checkpoint in the HF
//! bitsandbytes 4-bit layout, which transformers' `from_pretrained` loads.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use llama_model::{OpenOptions, pretrained};
use nf4_quant::{QuantConfig, SourceDType};

use crate::finetune::QuantizationSection;

/// Arguments of `quantize`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Model: a HF folder, a `.gguf` file, `asset:REL`, or a hub id.
    #[arg(long)]
    pub model: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// `nf4` or `fp4`.
    #[arg(long, default_value = "nf4")]
    pub quant_type: String,
    /// Block size (64 as bitsandbytes; powers of two 32..=4096).
    #[arg(long, default_value_t = 64)]
    pub blocksize: usize,
    /// Double-quantize the absmax (QLoRA's "double quant").
    #[arg(long)]
    pub double_quant: bool,
    /// The compute dtype recorded in `quantization_config` (`float32`, `bfloat16`, `float16`).
    #[arg(long, default_value = "bfloat16")]
    pub compute_dtype: String,
}

/// The codec settings of a `[quantization]` section (`None` when 4-bit loading is off).
///
/// # Errors
/// An unknown quant type or block size, named.
pub fn quant_config(q: &QuantizationSection) -> Result<Option<QuantConfig>> {
    if !q.load_in_4bit {
        return Ok(None);
    }
    let base = match q.bnb_4bit_quant_type.as_str() {
        "nf4" => QuantConfig::nf4(),
        "fp4" => QuantConfig::fp4(),
        other => anyhow::bail!("`quantization.bnb_4bit_quant_type` {other:?} is not nf4 or fp4"),
    };
    let config = base.with_blocksize(q.bnb_4bit_blocksize).with_double_quant(q.bnb_4bit_use_double_quant);
    config.validate().context("`quantization.bnb_4bit_blocksize`")?;
    Ok(Some(config))
}

/// Runs `quantize`.
pub fn run(args: Args) -> Result<()> {
    let section = QuantizationSection {
        load_in_4bit: true,
        bnb_4bit_quant_type: args.quant_type.clone(),
        bnb_4bit_compute_dtype: args.compute_dtype.clone(),
        bnb_4bit_use_double_quant: args.double_quant,
        bnb_4bit_blocksize: args.blocksize,
    };
    let quant = quant_config(&section)?.context("4-bit quantization")?;
    let compute = SourceDType::parse(&args.compute_dtype, "--compute-dtype")?;
    let device = crate::backend::Backend::Cpu.device()?;
    let reference = assets::resolve(&args.model)?.to_string_lossy().into_owned();
    let files = pretrained::resolve(&reference, &OpenOptions::new(&device)).with_context(|| format!("model {}", args.model))?;
    let model = llama_model::load_quantized(files.source.as_ref(), &files.config, &llama_model::LoadOptions::f32(&device), Some(&quant))?;
    llama_model::quantized::save_quantized(&model, &quant, compute, &args.out)?;
    files.tokenizer.save(&args.out.join("tokenizer.json"))?;
    if let Some(dir) = files.origin.parent().filter(|_| files.origin.is_file()).or(Some(files.origin.as_path())) {
        for f in ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
            if dir.join(f).is_file() {
                std::fs::copy(dir.join(f), args.out.join(f)).with_context(|| format!("copying {f}"))?;
            }
        }
    }
    eprintln!("wrote {} ({} 4-bit, block {}, double quant {})", args.out.display(), args.quant_type, args.blocksize, args.double_quant);
    Ok(())
}
