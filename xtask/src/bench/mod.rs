//! `cargo xtask bench`: end-to-end speed and memory (decode and training) on a backend, and
//! the criterion kernel benches. Results print as one JSON line per measurement (also appended
//! to `--out FILE`), so they can sit beside the Python anchor's in the same run.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use llama_model::{Decoder, GenerateOptions, OpenOptions, SamplingConfig, StepIssue, generate, pretrained};

use crate::backend::Backend;
use crate::generate::DEFAULT_MODEL;

mod gemv;
mod ops;
mod profile;
mod random_model;
mod synthetic;
mod thread_cpu;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Batch-1 greedy decoding: prefill and decode tokens/s, peak memory.
    Decode,
    /// QLoRA training steps of a finetune config: tokens/s, step time, peak memory.
    Train,
    /// The criterion micro-benchmarks (NF4 codec).
    Kernels,
    /// Logits of the HF parity fixtures on this backend against transformers' f32 logits.
    Parity,
    /// One layer operation (`--op`) on this backend against the CPU: for finding a failing kernel.
    Ops,
    /// The fused batch-1 NF4 products of one block at `--shape`'s widths under each GEMV tuning
    /// (`--tunings`): µs per launch and weight bytes per second.
    Gemv,
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
    /// Run on a preset shape with random weights (e.g. `llama3-8b`), written once as sharded
    /// HF safetensors into `--model-dir`: the Python anchor's workloads.
    #[arg(long)]
    pub shape: Option<String>,
    /// Folder of the random checkpoint.
    #[arg(long, default_value = "/tmp/kindling-random-model")]
    pub model_dir: PathBuf,
    /// LoRA targets of the synthetic `train` run.
    #[arg(long, default_value = "q_proj,v_proj")]
    pub targets: String,
    /// Sequences per step of the synthetic `train` run.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence of the synthetic `train` run.
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// Untimed steps of the synthetic `train` run.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// The optimizer of the synthetic `train` run: `adamw_32bit` (f32 states on the device),
    /// `paged_adamw_32bit` (f32 states in host memory) or `adamw_bf16` (bf16 states on the
    /// device, stochastically rounded).
    #[arg(long, default_value = "adamw_32bit")]
    pub optim: String,
    /// Keep the token-embedding table in host memory in the synthetic `train` run (only the
    /// step's rows are uploaded).
    #[arg(long)]
    pub host_embeddings: bool,
    /// Double-quantize the NF4 scales of the synthetic `train` run's base (QLoRA's
    /// `bnb_4bit_use_double_quant`: 0.3 GiB less for Llama-3-8B).
    #[arg(long)]
    pub double_quant: bool,
    /// f32 products (the LoRA side path) on TF32 tensor cores in the synthetic `train` run
    /// (`tf32 = true`; the anchor's equivalent is `TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1`).
    #[arg(long)]
    pub tf32: bool,
    /// The LoRA side path under bf16 autocast in the synthetic `train` run (`lora_autocast`:
    /// bf16 products through bf16 copies of the f32 factors, as HF's Trainer with `bf16=True`;
    /// the anchor's plain loop computes it in f32).
    #[arg(long)]
    pub lora_autocast: bool,
    /// Layer recomputation (gradient checkpointing by decoder block) in the synthetic `train`
    /// run, as the Python anchor does.
    #[arg(long)]
    pub checkpointing: bool,
    /// Profile the timed steps of `train`/`decode` on `--shape` (CUDA): kernel launches and
    /// device time per kernel, GEMMs and the host time around them (slows the run itself).
    #[arg(long)]
    pub profile: bool,
    /// Data-parallel ranks for the synthetic `train` run (one GPU each).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// The HF parity fixtures folder for `parity`.
    #[arg(long, default_value = "crates/llama-model/tests/fixtures/hf_parity")]
    pub fixtures: PathBuf,
    /// After `decode` on `--shape`: three more rounds, each decoding with the default steps and
    /// then with each step's kernels launched one by one (`StepIssue::Launched`); reports both
    /// decode rates (first token to last, the prompt excluded) of every round, and fails unless
    /// every run chose the same tokens (an A/B of the recorded graph in one process, and its check).
    #[arg(long)]
    pub compare_steps: bool,
    /// Random prompt length for `decode` on `--shape` (instead of `--prompt`).
    #[arg(long, default_value_t = 32)]
    pub prompt_tokens: usize,
    /// The operation of the `ops` suite: bmm, attention, attention-backward, burn-attention,
    /// burn-matmul, softmax, cross-entropy.
    #[arg(long, default_value = "attention")]
    pub op: String,
    /// The GEMV tunings of the `gemv` suite, `rows/in_flight[/prefetch]` each, space- or
    /// comma-separated (the first is the reference the others' outputs are compared with).
    #[arg(long, default_value = gemv::DEFAULT_TUNINGS)]
    pub tunings: String,
}

/// One step of the benches' xorshift generator (`x ^= x << 13; x ^= x >> 7; x ^= x << 17`): the
/// new state, which is also the draw.
pub(super) fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn emit(args: &Args, value: serde_json::Value) -> Result<()> {
    let line = value.to_string();
    println!("{line}");
    if let Some(path) = &args.out {
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    if let Some(shape) = &args.shape {
        let config = llama_model::presets::by_name(shape)
            .with_context(|| format!("unknown shape `{shape}`; shapes: {}", llama_model::presets::NAMES.join(", ")))?;
        if args.suite == Suite::Gemv {
            return gemv::run(&args, &config);
        }
        let t = Instant::now();
        if random_model::ensure(&config, &args.model_dir, 0)? {
            eprintln!("wrote a random {shape} checkpoint to {} in {:.1?}", args.model_dir.display(), t.elapsed());
        }
        return match args.suite {
            Suite::Train => {
                let run = synthetic::TrainRun {
                    model_dir: &args.model_dir,
                    backend: args.backend,
                    targets: &args.targets,
                    batch: args.batch,
                    seq: args.seq,
                    warmup: args.warmup,
                    steps: args.steps,
                    optim: sft_trainer::OptimizerKind::parse(&args.optim)?,
                    host_embeddings: args.host_embeddings,
                    double_quant: args.double_quant,
                    tf32: args.tf32,
                    lora_autocast: args.lora_autocast,
                    checkpointing: args.checkpointing,
                    profile: args.profile,
                    devices: args.devices,
                };
                emit(&args, synthetic::train(&run)?)
            }
            Suite::Decode => decode_random(&args, &config),
            Suite::Kernels | Suite::Parity | Suite::Ops | Suite::Gemv => bail!("--shape applies to the train, decode and gemv suites"),
        };
    }
    match args.suite {
        Suite::Parity => parity(&args),
        Suite::Ops => ops::run(&args, &args.op),
        Suite::Gemv => bail!("the gemv suite needs --shape (e.g. llama3-8b)"),
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
        steps: StepIssue::Auto,
    };
    // Warm-up (allocators, thread pools), not timed.
    generate(&model.model, &ids, &GenerateOptions { max_new_tokens: 4, ..options.clone() }, |_| true)?;
    let t = timed_decode(&mut Decoder::new(&model.model), &ids, &options)?;
    let (start, first, end, out) = (t.start, t.first, t.end, t.out);
    let decoded = out.tokens.len().saturating_sub(1);
    emit(
        args,
        serde_json::json!({
            "suite": "decode", "backend": format!("{:?}", args.backend).to_lowercase(), "model": args.model,
            "prompt_tokens": ids.len(), "new_tokens": out.tokens.len(), "load_s": load_s,
            "prefill_s": (first - start).as_secs_f64(),
            "decode_tokens_per_s": decoded as f64 / (end - first).as_secs_f64().max(1e-9),
            "end_to_end_tokens_per_s": out.tokens.len() as f64 / (end - start).as_secs_f64().max(1e-9),
            "peak_rss_mib": sft_trainer::memory::peak_rss_mib(),
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }),
    )
}

/// The tiny HF parity fixtures on this backend (in its compute dtype, dense and NF4): relative
/// error of the logits against transformers' f32 logits, and greedy tokens.
fn parity(args: &Args) -> Result<()> {
    use burn::tensor::{Int, Tensor, TensorData};
    use llama_model::weights::WeightSource;
    let root = &args.fixtures;
    let mut failures = Vec::new();
    for case in ["gqa", "llama3_rope", "tied"] {
        let dir = root.join(case);
        let config = llama_model::LlamaConfig::from_hf_file(dir.join("config.json"))?;
        let expected = llama_model::weights::safetensors::SafetensorsSource::open_file(&dir.join("expected.safetensors"))?;
        let (_, shape, bytes) = expected.read_raw("input_ids")?;
        let ids: Vec<i64> = bytes.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect();
        let theirs = expected.read_f32("logits")?;
        let rel = |a: &[f32], b: &[f32]| {
            let diff: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
            let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            (diff / norm).sqrt()
        };
        // The fixture on `backend` (NF4 base with `quant`) and its device.
        let load = |backend: Backend, quant: Option<&nf4_quant::QuantConfig>| -> Result<(llama_model::Llama, burn::tensor::Device)> {
            let device = backend.device()?;
            let source = llama_model::weights::open(&dir)?;
            let options = llama_model::LoadOptions::new(&device, backend.dtype());
            Ok((llama_model::load_quantized(source.as_ref(), &config, &options, quant)?, device))
        };
        let logits = |backend: Backend, quant: Option<&nf4_quant::QuantConfig>| -> Result<Vec<f32>> {
            let (model, device) = load(backend, quant)?;
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [shape[0], shape[1]]), &device);
            model.forward(tokens, None).into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        let cached_last_logits = |backend: Backend, quant: Option<&nf4_quant::QuantConfig>| -> Result<Vec<f32>> {
            let (model, device) = load(backend, quant)?;
            let (rows, len) = (shape[0], shape[1]);
            anyhow::ensure!(len >= 2, "{case}: the fixture's sequences need two positions for a cached step");
            let row: Vec<i64> = ids[(rows - 1) * len..rows * len].to_vec();
            let mut cache = llama_model::KvCache::new(config.num_layers);
            let prefix = Tensor::<2, Int>::from_data(TensorData::new(row[..len - 1].to_vec(), [1, len - 1]), &device);
            model.forward(prefix, Some(&mut cache));
            let token = Tensor::<2, Int>::from_data(TensorData::new(row[len - 1..].to_vec(), [1, 1]), &device);
            model.forward(token, Some(&mut cache)).into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        // Greedy tokens of a decoder kept across calls against fresh generations with launched
        // steps, for the fixture's last row and a shorter prompt, interleaved. (These fixtures'
        // heads of 16 values take launched steps even on CUDA; the 8B decode bench's
        // `--compare-steps` checks a kept recorded step, on two prompts.)
        let kept_decoder_mismatch = |backend: Backend, quant: Option<&nf4_quant::QuantConfig>| -> Result<Option<String>> {
            let (model, _) = load(backend, quant)?;
            let (rows, len) = (shape[0], shape[1]);
            let long: Vec<u32> = ids[(rows - 1) * len..rows * len].iter().map(|&t| t as u32).collect();
            let short = long[..len.div_ceil(2)].to_vec();
            let opts = GenerateOptions { max_new_tokens: 24, ..GenerateOptions::default() };
            let mut decoder = Decoder::new(&model);
            for (i, prompt) in [&long, &short, &long].into_iter().enumerate() {
                if let Some(m) = kept_vs_launched(&mut decoder, prompt, &opts)? {
                    return Ok(Some(format!("call {i}: {m}")));
                }
            }
            Ok(None)
        };
        for quant in [None, Some(nf4_quant::QuantConfig::nf4())] {
            let t = Instant::now();
            eprintln!("parity: {case} {} on {:?}…", if quant.is_some() { "nf4" } else { "dense" }, args.backend);
            let ours = logits(args.backend, quant.as_ref())?;
            eprintln!("parity: {case} done in {:.1?}", t.elapsed());
            let cpu = logits(Backend::Cpu, quant.as_ref())?;
            let base = if quant.is_some() { "nf4" } else { "dense" };
            let vs_cpu = rel(&ours, &cpu);
            if !(vs_cpu <= PARITY_TOLERANCE) {
                failures.push(format!("{case} {base}: relative error vs the CPU {vs_cpu:.2e}"));
            }
            // The last position again, decoded through the cache after the others (on CUDA with
            // a packed base: the fused decoding kernels), against the whole sequence's last row.
            let decoded = cached_last_logits(args.backend, quant.as_ref())?;
            let vocab = config.vocab_size;
            let whole_last = &ours[ours.len() - vocab..];
            let vs_whole = rel(&decoded, whole_last);
            if !(vs_whole <= PARITY_TOLERANCE) {
                failures.push(format!("{case} {base}: cached decoding vs the whole sequence {vs_whole:.2e}"));
            }
            let decoder_mismatch = kept_decoder_mismatch(args.backend, quant.as_ref())?;
            if let Some(m) = &decoder_mismatch {
                failures.push(format!("{case} {base}: a kept decoder's tokens differ from fresh launched generations, {m}"));
            }
            emit(
                args,
                serde_json::json!({
                    "suite": "parity", "backend": format!("{:?}", args.backend).to_lowercase(), "case": case,
                    "kept_decoder_same_tokens": decoder_mismatch.is_none(),
                    "base": base, "dtype": format!("{:?}", args.backend.dtype()),
                    "relative_error_vs_cpu_f32": vs_cpu,
                    "cached_last_vs_whole": vs_whole,
                    "relative_error_vs_hf_f32": quant.is_none().then(|| rel(&ours, &theirs)),
                    "finite": ours.iter().all(|v| v.is_finite()),
                }),
            )?;
        }
    }
    if !failures.is_empty() {
        bail!("parity above {PARITY_TOLERANCE:.0e} (or not finite):\n{}", failures.join("\n"));
    }
    Ok(())
}

/// Largest relative error of a backend's logits against the CPU's f32 ones that `parity`
/// accepts: bf16 rounding through the tiny models' layers measures ≈ 1e-2 on the CPU backend
/// (`llama-model/tests/bf16.rs`).
const PARITY_TOLERANCE: f64 = 3e-2;

/// Batch-1 greedy decoding of the random checkpoint with an NF4 base (the anchor's `decode`).
fn decode_random(args: &Args, config: &llama_model::LlamaConfig) -> Result<()> {
    let device = args.backend.device()?;
    let t0 = Instant::now();
    let source = llama_model::weights::open(&args.model_dir)?;
    let options = llama_model::LoadOptions::new(&device, args.backend.dtype());
    let model = llama_model::load_quantized(source.as_ref(), config, &options, Some(&nf4_quant::QuantConfig::nf4()))?;
    let load_s = t0.elapsed().as_secs_f64();
    let ids = synthetic::random_ids(&mut 0x1234_5678u64, args.prompt_tokens, config.vocab_size);
    let options = GenerateOptions {
        max_new_tokens: args.new_tokens,
        sampling: SamplingConfig::default(),
        stop_tokens: Vec::new(),
        use_cache: true,
        top_logprobs: None,
        steps: StepIssue::Auto,
    };
    // Profiling times each launch, which a recorded graph has none of: launch them.
    let options = GenerateOptions { steps: if args.profile { StepIssue::Launched } else { StepIssue::Auto }, ..options };
    // One decoder serves the warm-up and the timed run, as a server keeps it between requests:
    // on CUDA the timed run replays the step the warm-up recorded (same cache capacity).
    let mut decoder = Decoder::new(&model);
    decoder.generate(&ids, &GenerateOptions { max_new_tokens: 8, ..options.clone() }, |_| true)?;
    let session = profile::start(args.profile)?;
    let timed = timed_decode(&mut decoder, &ids, &options)?;
    device.sync().ok();
    let secs = timed.start.elapsed().as_secs_f64();
    let prefill_s = (timed.first - timed.start).as_secs_f64();
    let arrival_ms = timed.arrival_ms();
    let out = timed.out;
    let profile = profile::finish(session, out.tokens.len());
    let rounds = if args.compare_steps { compare_steps(&mut decoder, &ids, &options, &out.tokens)? } else { serde_json::Value::Null };
    emit(
        args,
        serde_json::json!({
            "suite": "decode", "backend": format!("{:?}", args.backend).to_lowercase(), "shape": args.shape,
            "base": "nf4", "prompt_tokens": ids.len(), "new_tokens": out.tokens.len(), "load_s": load_s, "seconds": secs,
            "prefill_s": prefill_s, "token_arrival_ms": arrival_ms,
            "tokens_per_s": out.tokens.len() as f64 / secs,
            "compare_steps": rounds,
            "pool_reserved_gib": device.memory_pool_usage().map(|u| u.bytes_reserved as f64 / (1u64 << 30) as f64),
            "profile_per_token": profile,
        }),
    )
}

/// One timed generation: its start, the time each token reached the caller, and its end.
struct TimedDecode {
    start: Instant,
    first: Instant,
    end: Instant,
    /// When each token was handed to the callback (they arrive in batches read back together).
    arrivals: Vec<Instant>,
    out: llama_model::Generated,
}

impl TimedDecode {
    /// Tokens per second from the first token to the last (the prompt's processing excluded).
    fn decode_rate(&self) -> f64 {
        self.out.tokens.len().saturating_sub(1) as f64 / (self.end - self.first).as_secs_f64().max(1e-9)
    }

    /// Tokens per second from the call to the last token (the prompt's processing included, as
    /// the anchor counts).
    fn total_rate(&self) -> f64 {
        self.out.tokens.len() as f64 / (self.end - self.start).as_secs_f64().max(1e-9)
    }

    /// Milliseconds from the call to each token's arrival.
    fn arrival_ms(&self) -> Vec<f64> {
        self.arrivals.iter().map(|t| ((*t - self.start).as_secs_f64() * 1e5).round() / 100.0).collect()
    }
}

fn timed_decode(decoder: &mut Decoder, ids: &[u32], options: &GenerateOptions) -> Result<TimedDecode> {
    let start = Instant::now();
    let mut arrivals = Vec::with_capacity(options.max_new_tokens);
    let out = decoder.generate(ids, options, |_| {
        arrivals.push(Instant::now());
        true
    })?;
    let end = Instant::now();
    Ok(TimedDecode { start, first: *arrivals.first().context("no token generated")?, end, arrivals, out })
}

/// `--compare-steps`: three rounds of (default steps through the kept `decoder`, launched
/// steps, default steps through a fresh decoder — which records its step anew), each run's
/// decode rate and rate with the prompt's processing; an error unless every run chose `want`.
fn compare_steps(decoder: &mut Decoder, ids: &[u32], options: &GenerateOptions, want: &[u32]) -> Result<serde_json::Value> {
    let launched = GenerateOptions { steps: StepIssue::Launched, ..options.clone() };
    let model = decoder.model();
    let mut runs: [(&str, Vec<f64>, Vec<f64>); 3] = [("kept", vec![], vec![]), ("launched", vec![], vec![]), ("fresh", vec![], vec![])];
    for _ in 0..3 {
        for (name, decode, total) in &mut runs {
            let t = match *name {
                "kept" => timed_decode(decoder, ids, options)?,
                "launched" => timed_decode(&mut Decoder::new(model), ids, &launched)?,
                _ => timed_decode(&mut Decoder::new(model), ids, options)?,
            };
            if t.out.tokens != want {
                let first = t.out.tokens.iter().zip(want).position(|(a, b)| a != b).unwrap_or(t.out.tokens.len().min(want.len()));
                bail!("decode: the {name} run chose other tokens than the first run from token {first} on");
            }
            decode.push(t.decode_rate());
            total.push(t.total_rate());
        }
    }
    // The kept decoder on a shorter prompt (its step started over in place: the new prompt's
    // keys and values copied into the recorded buffers) against a fresh launched generation.
    let short = &ids[..ids.len().div_ceil(2)];
    if let Some(m) = kept_vs_launched(decoder, short, options)? {
        bail!("decode: the kept decoder chose other tokens than a fresh launched generation for a {}-token prompt: {m}", short.len());
    }
    let mut rounds = serde_json::Map::new();
    for (name, decode, total) in runs {
        rounds.insert(format!("{name}_decode_tokens_per_s"), decode.into());
        rounds.insert(format!("{name}_tokens_per_s_prefill_included"), total.into());
    }
    Ok(rounds.into())
}

/// `decoder`'s tokens for `prompt` against a fresh generation with launched steps: `None` when
/// they agree, else both.
fn kept_vs_launched(decoder: &mut Decoder, prompt: &[u32], options: &GenerateOptions) -> Result<Option<String>> {
    let got = decoder.generate(prompt, options, |_| true)?.tokens;
    let want = generate(decoder.model(), prompt, &GenerateOptions { steps: StepIssue::Launched, ..options.clone() }, |_| true)?.tokens;
    Ok((got != want).then(|| format!("{got:?} vs {want:?}")))
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
    crate::finetune::run(crate::finetune::Args {
        config: None,
        preset: Some(args.preset.clone()),
        overrides: overrides.clone(),
        resume: false,
        print_config: false,
    })?;
    let text = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    let records: Vec<sft_trainer::LogRecord> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let timed: Vec<f64> = records.iter().filter(|r| r.step > 1).filter_map(|r| r.tokens_per_s).collect();
    if timed.is_empty() {
        bail!("no timed steps (use --steps 2 or more)");
    }
    let mean = timed.iter().sum::<f64>() / timed.len() as f64;
    let peak = records.iter().filter_map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    emit(
        args,
        serde_json::json!({
            "suite": "train", "backend": format!("{:?}", args.backend).to_lowercase(), "preset": args.preset,
            "overrides": args.overrides, "timed_steps": timed.len(), "tokens_per_s": mean, "peak_rss_mib": peak,
        }),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kindling-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
