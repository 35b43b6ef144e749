//! `cargo xtask finetune`: the recipe's eight steps over one TOML config — set up, quantize,
//! load the model, the tokenizer, the dataset, attach LoRA, train (resumable), save the adapter
//! and try the model.

mod config;
mod judge;
mod plot;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use llama_model::{GenerateOptions, OpenOptions, SamplingConfig, StepIssue, generate, pretrained};
use sft_trainer::data::{self, LoadOptions};
use sft_trainer::{RunSetup, Trainer};

pub use config::{FinetuneConfig, QuantizationSection};

/// Arguments of `finetune`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// A config file (TOML); without it, `--preset` or the embedded default.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// A shipped config: `default`, `llama3-8b` or `seed`.
    #[arg(long)]
    pub preset: Option<String>,
    /// Override a key: `--set training.max_steps=10` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue from the latest checkpoint in the output folder.
    #[arg(long)]
    pub resume: bool,
    /// Print the resolved config and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    llama_model::io::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Runs `finetune`.
pub fn run(args: Args) -> Result<()> {
    let cfg = FinetuneConfig::load(args.config.as_deref(), args.preset.as_deref(), &args.overrides)?;
    if args.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let out = cfg.run.output_dir.clone();
    if !args.resume && sft_trainer::checkpoint::latest(&out).is_some() {
        bail!("{} already holds checkpoints: pass --resume to continue, or choose another run.output_dir", out.display());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("finetune.toml"), cfg.to_toml()?.as_bytes())?;
    let t0 = Instant::now();

    // 1–3. Device, quantization, model.
    let backend = cfg.run.backend;
    let device = backend.device()?.autodiff();
    let reference = assets::resolve(&cfg.model.name)?.to_string_lossy().into_owned();
    let mut open = OpenOptions::new(&device);
    open.load.dtype = compute_dtype(&cfg, backend);
    // On a GPU the frozen embedding table (1 GiB for Llama-3-8B) stays in host memory: training
    // reads `batch · len` rows of it once per step.
    open.load.host_embeddings = backend != crate::backend::Backend::Cpu;
    open.tokenizer = cfg.tokenizer.path.clone();
    open.hub.progress = true;
    let files = pretrained::resolve(&reference, &open).with_context(|| format!("model {}", cfg.model.name))?;
    let quant = crate::quantize::quant_config(&cfg.quantization)?;
    let model = llama_model::load_quantized(files.source.as_ref(), &files.config, &open.load, quant.as_ref())
        .with_context(|| format!("loading {}", cfg.model.name))?;
    eprintln!(
        "model: {} ({} layers, d {}, {}), loaded in {:.1?}",
        cfg.model.name,
        files.config.num_layers,
        files.config.hidden_size,
        if quant.is_some() { "NF4 base" } else { "dense base" },
        t0.elapsed()
    );

    // 4–5. Tokenizer and dataset.
    let tokenizer = files.tokenizer.clone();
    let pad_id = tokenizer.pad_id().context("the tokenizer has no EOS token to pad with")?;
    let max_len = data::resolve_max_seq_length(cfg.training.max_seq_length, Some(files.config.max_position_embeddings));
    let mut load = LoadOptions::new(max_len);
    load.model_template = files.chat.template(None).ok().flatten().map(String::from);
    load.add_bos_token = cfg.tokenizer.add_bos_token.unwrap_or_else(|| tokenizer.should_prepend_bos());
    let loaded = data::load_dataset(&cfg.dataset, &tokenizer, &load).with_context(|| format!("dataset {}", cfg.dataset.source))?;
    let r = &loaded.report;
    eprintln!(
        "dataset: {} rows read, {} train / {} held-out examples, {} skipped{}, {} truncated to {max_len} tokens",
        r.rows_read,
        loaded.train.len(),
        loaded.eval.len(),
        r.total_skipped(),
        if r.skipped.is_empty() { String::new() } else { format!(" {:?}", r.skipped) },
        r.truncated
    );

    check_token_ids(&loaded.train, &loaded.eval, pad_id, files.config.vocab_size, &cfg)?;

    // 6–7. LoRA and training.
    let setup = RunSetup {
        args: cfg.training.clone(),
        lora: cfg.lora.clone(),
        base_model_name: cfg.model.name.clone(),
        output_dir: out.clone(),
        pad_id,
        train: loaded.train,
        eval: loaded.eval,
        resume: args.resume,
        stop_after: std::env::var("KINDLING_STOP_AFTER_STEPS").ok().and_then(|v| v.parse().ok()),
    };
    let mut trainer = Trainer::new(model, setup)?;
    if let Some(judge) = judge::JudgeCallback::from_section(&cfg.judge, &tokenizer, &files.chat, backend)? {
        trainer = trainer.with_callback(Box::new(judge));
    }
    let total = trainer.total_steps() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]")?);
    let summary = trainer.train(|step, _, loss| {
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}"));
    })?;
    bar.finish();
    if summary.steps < total as usize {
        eprintln!("stopped after step {} of {total}; continue with --resume", summary.steps);
        return Ok(());
    }

    // 8. Save and try the model.
    let model = trainer.into_model();
    llama_model::adapters::save_peft_adapter(&model, &cfg.lora, &cfg.model.name, &out)?;
    tokenizer.save(&out.join("tokenizer.json"))?;
    plot::plot_losses(&out.join("metrics.jsonl"), &out.join("loss.png"))?;
    let sample = try_model(&model, &tokenizer, &cfg)?;
    write_atomic(&out.join("sample.txt"), sample.as_bytes())?;
    let report = serde_json::json!({
        "steps": summary.steps,
        "eval_loss_before": summary.eval_loss_before,
        "eval_loss_after": summary.eval_loss_after,
        "train_tokens_per_s": summary.tokens_per_s,
        "peak_rss_mib": summary.peak_rss_mib,
        "resumed_from": summary.resumed_from,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    write_atomic(&out.join("summary.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{sample}")?;
    eprintln!(
        "done in {:.0?}: held-out loss {} → {}, {:.0} tokens/s, peak RSS {:.0} MiB; outputs in {}",
        t0.elapsed(),
        fmt_opt(summary.eval_loss_before),
        fmt_opt(summary.eval_loss_after),
        summary.tokens_per_s,
        summary.peak_rss_mib.unwrap_or(0.0),
        out.display()
    );
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())
}

fn compute_dtype(cfg: &FinetuneConfig, backend: crate::backend::Backend) -> burn::tensor::DType {
    use burn::tensor::DType;
    match backend {
        crate::backend::Backend::Cpu => DType::F32,
        _ if cfg.training.bf16 || cfg.quantization.bnb_4bit_compute_dtype == "bfloat16" => DType::BF16,
        _ if cfg.quantization.bnb_4bit_compute_dtype == "float16" => DType::F16,
        _ => DType::F32,
    }
}

/// Step 8: the recipe's `pipeline("text-generation", max_length=200)` on `<s>[INST] … [/INST]`.
fn try_model(model: &llama_model::Llama, tokenizer: &llama_model::Tokenizer, cfg: &FinetuneConfig) -> Result<String> {
    use burn::module::Module;
    let model = model.valid();
    let t = &cfg.try_model;
    let text = match t.template.as_str() {
        "llama2-raw" => format!("<s>[INST] {} [/INST]", t.prompt),
        "raw" => t.prompt.clone(),
        other => {
            let renderer = prompt_templates::ChatTemplate::from_name(other)?.prepare()?;
            renderer.render(&[llm_api::Message::user(&t.prompt)], &prompt_templates::RenderOptions::new().with_generation_prompt(true))?
        }
    };
    let mut ids = tokenizer.encode(&text, true)?;
    if cfg.tokenizer.add_bos_token.unwrap_or_else(|| tokenizer.should_prepend_bos()) {
        if let Some(bos) = tokenizer.bos_id.filter(|_| !tokenizer.adds_bos) {
            ids.insert(0, bos);
        }
    }
    let options = GenerateOptions {
        max_new_tokens: t.max_length.saturating_sub(ids.len()).max(1),
        sampling: SamplingConfig::default(),
        stop_tokens: tokenizer.eos_ids.clone(),
        use_cache: true,
        top_logprobs: None,
        steps: StepIssue::Auto,
    };
    let out = generate(&model, &ids, &options, |_| true)?;
    let answer = tokenizer.decode(&out.tokens, true)?;
    Ok(format!("{text}{answer}"))
}

/// Every token id the run feeds the model (and the pad id) must have an embedding row: a
/// tokenizer that does not belong to the model fails here, naming both, not deep in a kernel.
fn check_token_ids(
    train: &[sft_trainer::data::Example],
    eval: &[sft_trainer::data::Example],
    pad_id: u32,
    vocab_size: usize,
    cfg: &FinetuneConfig,
) -> Result<()> {
    let worst = train.iter().chain(eval).enumerate().flat_map(|(i, e)| e.input_ids.iter().map(move |&t| (t, i))).max_by_key(|&(t, _)| t);
    let tokenizer = cfg.tokenizer.path.as_ref().map_or_else(|| "the model's own".to_string(), |p| p.display().to_string());
    if let Some((id, row)) = worst.filter(|&(t, _)| t as usize >= vocab_size) {
        bail!(
            "tokenizer {tokenizer} gives token id {id} (example {row} of {}) but model {} has {vocab_size} embeddings: \
             use the model's own tokenizer",
            cfg.dataset.source,
            cfg.model.name
        );
    }
    if pad_id as usize >= vocab_size {
        bail!("tokenizer {tokenizer}: pad id {pad_id} is outside model {}'s {vocab_size} embeddings", cfg.model.name);
    }
    Ok(())
}
