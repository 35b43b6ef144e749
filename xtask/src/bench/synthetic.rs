//! The GPU training benchmark on a preset shape with random weights and random tokens, the
//! workload of the Python anchor (`shared/anchors/qlora_anchor.py`): batch × seq random ids,
//! labels = inputs, NF4 base, LoRA r64/α16/dropout 0.1, AdamW, clip 0.3.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use llama_model::{LlamaConfig, LoadOptions, load_quantized, weights};
use lora::{LoraConfig, TargetModules};
use sft_trainer::data::Example;
use sft_trainer::{OptimizerKind, RunSetup, ScheduleKind, Trainer, TrainingArgs};

use crate::backend::Backend;

/// One training measurement.
pub struct TrainRun<'a> {
    /// The model folder (random checkpoint).
    pub model_dir: &'a Path,
    /// Backend.
    pub backend: Backend,
    /// LoRA targets (`q_proj,v_proj` or `all-linear`).
    pub targets: &'a str,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Layer recomputation (each decoder block recomputed in the backward).
    pub checkpointing: bool,
    /// The optimizer (where its states live and their dtype).
    pub optim: OptimizerKind,
    /// Keep the token-embedding table in host memory.
    pub host_embeddings: bool,
    /// Double-quantize the base's NF4 scales.
    pub double_quant: bool,
    /// f32 products on TF32 tensor cores.
    pub tf32: bool,
    /// The LoRA side path under bf16 autocast.
    pub lora_autocast: bool,
    /// Data-parallel ranks, one device each (`batch` sequences per rank).
    pub devices: usize,
    /// Profile the timed steps (see `profile`).
    pub profile: bool,
}

/// Runs it (one thread per device, gradients summed across ranks) and returns rank 0's result.
///
/// # Errors
/// Loading or training failures of any rank.
pub fn train(run: &TrainRun<'_>) -> Result<serde_json::Value> {
    if run.devices <= 1 {
        return train_rank(run, 0, None);
    }
    let ranks = sft_trainer::parallel::ThreadRank::group(run.devices);
    let results: Vec<Result<serde_json::Value>> = std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .enumerate()
            .map(|(r, rank)| s.spawn(move || train_rank(run, r, Some(Box::new(rank) as Box<dyn sft_trainer::parallel::Collective>))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a rank panicked")))).collect()
    });
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (r, res) in results.into_iter().enumerate() {
        match res {
            Ok(v) => values.push(v),
            Err(e) => errors.push(format!("rank {r}: {e:#}")),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("data-parallel training failed:\n{}", errors.join("\n"));
    }
    values.into_iter().next().context("no rank ran")
}

fn train_rank(
    run: &TrainRun<'_>,
    rank: usize,
    collective: Option<Box<dyn sft_trainer::parallel::Collective>>,
) -> Result<serde_json::Value> {
    let device = run.backend.device_at(rank)?.autodiff();
    let config = LlamaConfig::from_hf_file(run.model_dir.join("config.json"))?;
    let t0 = Instant::now();
    let source = weights::open(run.model_dir)?;
    let options = LoadOptions::new(&device, run.backend.dtype()).with_host_embeddings(run.host_embeddings);
    let model =
        load_quantized(source.as_ref(), &config, &options, Some(&nf4_quant::QuantConfig::nf4().with_double_quant(run.double_quant)))
            .context("loading with NF4")?;
    device.sync().ok();
    let load_s = t0.elapsed().as_secs_f64();
    eprintln!("rank {rank}: loaded in {load_s:.1}s");
    let loaded = device.memory_pool_usage();
    let total = run.warmup + run.steps;
    let mut seed = 0x5EEDu64;
    let examples: Vec<Example> = (0..total * run.batch * run.devices.max(1))
        .map(|_| Example::all_learned(random_ids(&mut seed, run.seq, config.vocab_size)))
        .collect();
    let out = std::env::temp_dir().join(format!("kindling-bench-train-{}-{rank}", std::process::id()));
    let setup = RunSetup {
        args: TrainingArgs {
            max_steps: Some(total),
            per_device_train_batch_size: run.batch,
            optim: run.optim,
            lr_scheduler_type: ScheduleKind::Constant,
            group_by_length: false,
            logging_steps: 1,
            save_steps: total + 1,
            eval_steps: Some(total + 1),
            bf16: true,
            tf32: Some(run.tf32),
            lora_autocast: run.lora_autocast,
            gradient_checkpointing: run.checkpointing,
            ..TrainingArgs::default()
        },
        lora: LoraConfig { target_modules: TargetModules::parse(run.targets)?, ..LoraConfig::default() },
        base_model_name: run.model_dir.display().to_string(),
        output_dir: out.clone(),
        pad_id: config.eos_token_ids.first().copied().unwrap_or(0),
        train: examples,
        eval: Vec::new(),
        resume: false,
        stop_after: None,
    };
    let mut trainer = Trainer::new(model, setup)?.without_checkpoints();
    if let Some(c) = collective {
        trainer = trainer.with_collective(c);
    }
    let trainable = trainer.trainable_params();
    let mut times = Vec::new();
    let mut losses = Vec::new();
    // The host's blocking waits per step (loss, gradient norm, the step's end): the device's
    // lag behind the host (one process-wide counter: ranks on threads share it).
    let mut waits = Vec::new();
    // The busiest host threads' CPU seconds per timed step (rank 0).
    let (mut cpu_before, mut threads) = (None, None);
    // KINDLING_STEP_PHASES=1: each phase's host and wall seconds per timed step.
    let mut phases: std::collections::BTreeMap<&'static str, (Vec<f64>, Vec<f64>)> = std::collections::BTreeMap::new();
    let mut peak = 0u64;
    let mut last = Instant::now();
    super::profile::check(run.profile)?;
    let mut session = (run.warmup == 0 && rank == 0).then(|| super::profile::start(run.profile)).transpose()?;
    let mut profile = None;
    // The pool's use sampled every 2 ms through the untimed warm-up steps (the peak inside a
    // step, which the step-end readings miss).
    let mut sampler = (run.warmup > 0).then(|| MemorySampler::start(&device));
    let mut sampled = None;
    let mut step_end_in_use = 0u64;
    trainer.train(|step, _, loss| {
        if step == run.warmup {
            sampled = sampler.take().map(MemorySampler::stop);
        }
        let synced = Instant::now();
        device.sync().ok();
        sft_trainer::host_wait::add(synced.elapsed());
        let waited = sft_trainer::host_wait::take().as_secs_f64();
        if step == total {
            profile = session.take().and_then(|s| super::profile::finish(s, run.steps));
        }
        if step == run.warmup && rank == 0 {
            session = super::profile::start(run.profile).ok();
            cpu_before = Some(super::thread_cpu::snapshot());
        }
        if step == total
            && rank == 0
            && let Some(before) = cpu_before.take()
        {
            threads = Some(super::thread_cpu::busiest(&before, &super::thread_cpu::snapshot(), run.steps as f64, 4));
        }
        let now = Instant::now();
        eprintln!("rank {rank}: step {step} in {:.2?} (loss {loss:.4})", now - last);
        if step > run.warmup {
            times.push((now - last).as_secs_f64());
            waits.push(waited);
            for p in sft_trainer::step_phases::take() {
                let entry = phases.entry(p.name).or_insert_with(|| (Vec::new(), Vec::new()));
                entry.0.push(p.host_s);
                entry.1.push(p.wall_s);
            }
            losses.push(loss);
        }
        if let Some(u) = device.memory_pool_usage() {
            peak = peak.max(u.bytes_reserved);
            step_end_in_use = step_end_in_use.max(u.bytes_in_use);
        }
        last = now;
    })?;
    let _ = std::fs::remove_dir_all(&out);
    let mut sorted = times.clone();
    let median = median_of(&mut sorted);
    let wait_median = (run.devices <= 1 && !waits.is_empty()).then(|| median_of(&mut waits));
    let phases: serde_json::Map<String, serde_json::Value> = phases
        .into_iter()
        .map(|(name, (mut host, mut wall))| {
            (name.to_string(), serde_json::json!({"host_ms": median_of(&mut host) * 1e3, "wall_ms": median_of(&mut wall) * 1e3}))
        })
        .collect();
    Ok(serde_json::json!({
        "suite": "train", "backend": format!("{:?}", run.backend).to_lowercase(), "targets": run.targets,
        "batch": run.batch, "seq": run.seq, "gradient_checkpointing": run.checkpointing, "devices": run.devices.max(1), "trainable_params": trainable, "load_s": load_s,
        "step_s_median": median, "step_s_min": sorted.first(), "step_s_max": sorted.last(), "host_wait_s_median": wait_median, "host_threads_cpu_s": threads, "step_phases": (!phases.is_empty()).then_some(phases),
        "tokens_per_s": (run.batch * run.seq * run.devices.max(1)) as f64 / median,
        "pool_reserved_peak_gib": gib(peak),
        "base_model_gib": loaded.as_ref().map(|u| gib(u.bytes_in_use)),
        "load_reserved_gib": loaded.as_ref().map(|u| gib(u.bytes_reserved)),
        "step_end_in_use_gib": gib(step_end_in_use),
        "warmup_in_use_peak_gib": sampled.map(|(in_use, _)| gib(in_use)),
        "warmup_reserved_peak_gib": sampled.map(|(_, reserved)| gib(reserved)),
        "optim": format!("{:?}", run.optim), "loss_chunk_rows": gpu_kernels::linear_cross_entropy::chunk_rows(run.batch * run.seq, config.vocab_size), "host_embeddings": run.host_embeddings, "double_quant": run.double_quant, "tf32": run.tf32, "lora_autocast": run.lora_autocast,
        "loss_last": losses.last(), "profile_per_step": profile,
    }))
}

/// The median of `values`, which are left sorted (NaN when empty).
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Polls the device's pool usage every 2 ms on a thread of its own; [`MemorySampler::stop`]
/// returns the largest `(in use, reserved)` seen.
struct MemorySampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl MemorySampler {
    fn start(device: &burn::tensor::Device) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, device) = (stop.clone(), device.clone());
        let thread = std::thread::spawn(move || {
            let mut peak = (0u64, 0u64);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(u) = device.memory_pool_usage() {
                    peak = (peak.0.max(u.bytes_in_use), peak.1.max(u.bytes_reserved));
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            peak
        });
        Self { stop, thread }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// `n` token ids below `vocab` from a xorshift64 stream (`state` advances; never 0).
pub(super) fn random_ids(state: &mut u64, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| (super::xorshift(state) % vocab as u64) as u32).collect()
}
