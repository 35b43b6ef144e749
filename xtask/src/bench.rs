//! `cargo xtask bench`: end-to-end speed and memory (decode and training) on a backend, and
//! the criterion kernel benches. Results print as one JSON line per measurement (also appended
//! to `--out FILE`), so they can sit beside the Python anchor's in the same run.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use llama_model::{GenerateOptions, OpenOptions, SamplingConfig, generate, pretrained};

use crate::backend::Backend;
use crate::generate::DEFAULT_MODEL;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Batch-1 greedy decoding: prefill and decode tokens/s, peak memory.
    Decode,
    /// QLoRA training steps of a finetune config: tokens/s, step time, peak memory.
    Train,
    /// The criterion micro-benchmarks (NF4 codec).
    Kernels,
}

/// Arguments of `bench`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Which suite.
    #[arg(long, value_enum, default_value_t = Suite::Decode)]
    pub suite: Suite,
    /// Backend to run on.
    #[arg(long = "device", value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Model for `decode` (path, `asset:REL`, hub id).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Prompt for `decode` (raw text).
    #[arg(long, default_value = "The history of the printing press begins")]
    pub prompt: String,
    /// Tokens to generate in `decode` (always exactly this many: no stop tokens).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Finetune preset or config for `train`.
    #[arg(long, default_value = "default")]
    pub preset: String,
    /// Optimizer steps for `train` (the first is a warm-up and not timed).
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
    /// Extra `--set` overrides for `train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Append the JSON result lines to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn emit(args: &Args, value: serde_json::Value) -> Result<()> {
    let line = value.to_string();
    println!("{line}");
    if let Some(path) = &args.out {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    match args.suite {
        Suite::Decode => decode(&args),
        Suite::Train => train(&args),
        Suite::Kernels => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new("cargo").args(["bench", "-p", "nf4-quant"]).current_dir(root).status()?;
            if !status.success() {
                bail!("cargo bench failed ({status})");
            }
            Ok(())
        }
    }
}

fn decode(args: &Args) -> Result<()> {
    let device = args.backend.device()?;
    let t0 = Instant::now();
    let reference = assets::resolve(&args.model)?.to_string_lossy().into_owned();
    let mut open = OpenOptions::new(&device);
    open.load.dtype = args.backend.dtype();
    let model = pretrained::open(&reference, &open).with_context(|| format!("model {}", args.model))?;
    let load_s = t0.elapsed().as_secs_f64();
    // The prompt exactly as the tokenizer encodes it (as transformers' tokenizer call does).
    let ids = model.tokenizer.encode(&args.prompt, true)?;
    let options = GenerateOptions {
        max_new_tokens: args.new_tokens,
        sampling: SamplingConfig::default(),
        stop_tokens: Vec::new(),
        use_cache: true,
        top_logprobs: None,
    };
    // Warm-up (allocators, thread pools), not timed.
    generate(&model.model, &ids, &GenerateOptions { max_new_tokens: 4, ..options.clone() }, |_| true)?;
    let start = Instant::now();
    let mut first = None;
    let out = generate(&model.model, &ids, &options, |_| {
        first.get_or_insert_with(Instant::now);
        true
    })?;
    let end = Instant::now();
    let first = first.context("no token generated")?;
    let decoded = out.tokens.len().saturating_sub(1);
    emit(args, serde_json::json!({
        "suite": "decode", "backend": format!("{:?}", args.backend).to_lowercase(), "model": args.model,
        "prompt_tokens": ids.len(), "new_tokens": out.tokens.len(), "load_s": load_s,
        "prefill_s": (first - start).as_secs_f64(),
        "decode_tokens_per_s": decoded as f64 / (end - first).as_secs_f64().max(1e-9),
        "end_to_end_tokens_per_s": out.tokens.len() as f64 / (end - start).as_secs_f64().max(1e-9),
        "peak_rss_mib": sft_trainer::memory::peak_rss_mib(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }))
}

fn train(args: &Args) -> Result<()> {
    let dir = tempfile_dir()?;
    let mut overrides = vec![
        format!("run.output_dir={}", dir.display()),
        format!("run.backend={}", format!("{:?}", args.backend).to_lowercase()),
        format!("training.max_steps={}", args.steps),
        format!("training.logging_steps={}", 1),
        format!("training.save_steps={}", args.steps),
        format!("training.eval_steps={}", args.steps * 10),
        "dataset.eval_count=1".to_string(),
        "try_model.max_length=1".to_string(),
    ];
    overrides.extend(args.overrides.iter().cloned());
    crate::finetune::run(crate::finetune::Args { config: None, preset: Some(args.preset.clone()), overrides: overrides.clone(), resume: false, print_config: false })?;
    let text = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    let records: Vec<sft_trainer::LogRecord> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let timed: Vec<f64> = records.iter().filter(|r| r.step > 1).filter_map(|r| r.tokens_per_s).collect();
    if timed.is_empty() {
        bail!("no timed steps (use --steps 2 or more)");
    }
    let mean = timed.iter().sum::<f64>() / timed.len() as f64;
    let peak = records.iter().filter_map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    emit(args, serde_json::json!({
        "suite": "train", "backend": format!("{:?}", args.backend).to_lowercase(), "preset": args.preset,
        "overrides": args.overrides, "timed_steps": timed.len(), "tokens_per_s": mean, "peak_rss_mib": peak,
    }))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kindling-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
