//! `bench --suite gemv`: the fused batch-1 NF4 products of one decoder block at a shape's widths
//! (norm + q/k/v, o + residual, norm + gate/up + SwiGLU, down + residual), under each GEMV tuning
//! (`--tunings`), in one process. Weights are random packed bytes and double-quantized scales
//! drawn on the host (speed does not depend on the values), so no quantization is timed.
//!
//! Per tuning and product: µs per launch over `--steps`·50 launches queued back to back (wall
//! clock to a device sync, and the host's time to queue them: when the two are close, the
//! host's launch cost bounds the rate), the weight bytes read per second at that rate, and a
//! whole block's four products (the decode pattern) the same way; first three other launches
//! (burn's add, our RMSNorm, the separate NF4 product), for the host cost of a launch. With
//! `--profile` (CUDA builds), each product's kernel time on the device too (`device_us`: every
//! launch timed by events), which the rate above hides where the host's issue time bounds it. `KINDLING_*` switches do not matter here: tunings are set in process.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{DType, Device, Distribution, Tensor};
use gpu_kernels::{GemvEpilogue, GemvTuning, HostScales, PackedNf4, nf4_gemv_fused, set_gemv_tuning};

use super::ops::{host, rel};
use super::{Args, emit, xorshift};

/// The tunings `--tunings` takes by default: `rows/in_flight[/prefetch]`.
pub const DEFAULT_TUNINGS: &str = "2/4/1 2/4/0 1/4/1 4/4/1 2/8/1";

/// Parses `rows/in_flight[/prefetch]` items separated by spaces or commas (prefetch 0 or 1, the
/// default's when left out).
///
/// # Errors
/// An item that is not two or three numbers, or a tuning out of range, named with its position.
pub fn parse_tunings(text: &str) -> Result<Vec<GemvTuning>> {
    let mut out = Vec::new();
    for (i, item) in text.split([' ', ',']).filter(|s| !s.is_empty()).enumerate() {
        let fields: Vec<usize> = item
            .split('/')
            .map(|f| f.parse::<usize>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--tunings item {} `{item}`: expected rows/in_flight numbers", i + 1))?;
        let (rows, in_flight, prefetch) = match fields[..] {
            [rows, in_flight] => (rows, in_flight, GemvTuning::DEFAULT.prefetch),
            [rows, in_flight, p @ (0 | 1)] => (rows, in_flight, p == 1),
            [_, _, p] => bail!("--tunings item {} `{item}`: prefetch must be 0 or 1, got {p}", i + 1),
            _ => bail!("--tunings item {} `{item}`: expected rows/in_flight or rows/in_flight/prefetch", i + 1),
        };
        let t =
            GemvTuning { rows, in_flight, prefetch }.validate().map_err(|e| anyhow::anyhow!("--tunings item {} `{item}`: {e}", i + 1))?;
        out.push(t);
    }
    if out.is_empty() {
        bail!("--tunings is empty");
    }
    Ok(out)
}

/// A random packed weight `[rows, cols]`, NF4 code, blocksize 64, double-quantized scales.
fn random_weight(rows: usize, cols: usize, seed: u64, device: &Device) -> Result<PackedNf4> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || xorshift(&mut x);
    let n = rows * cols;
    let packed: Vec<u8> = (0..n / 2).map(|_| next() as u8).collect();
    let blocks = n.div_ceil(64);
    let codes: Vec<u8> = (0..blocks).map(|_| next() as u8).collect();
    let nested_absmax: Vec<f32> = (0..blocks.div_ceil(256)).map(|_| 0.01 + (next() % 1000) as f32 * 1e-5).collect();
    let nested_code: Vec<f32> = (0..256).map(|i| (i as f32 - 127.5) / 127.5).collect();
    let scales =
        HostScales::Double { codes: &codes, nested_absmax: &nested_absmax, nested_code: &nested_code, nested_blocksize: 256, offset: 0.02 };
    Ok(PackedNf4::upload(&packed, scales, &nf4_quant::code::NF4_CODE, [rows, cols], 64, device)?)
}

/// One block's products.
struct Block {
    q: PackedNf4,
    k: PackedNf4,
    v: PackedNf4,
    o: PackedNf4,
    gate: PackedNf4,
    up: PackedNf4,
    down: PackedNf4,
    norm: Tensor<1>,
    x: Tensor<2>,
    h: Tensor<2>,
    m: Tensor<2>,
}

impl Block {
    fn new(config: &llama_model::LlamaConfig, device: &Device, dtype: DType) -> Result<Self> {
        let d = config.hidden_size;
        let hd = config.head_dim;
        let (nq, nkv, ffn) = (config.num_heads * hd, config.num_kv_heads * hd, config.intermediate_size);
        let row = |n: usize| Tensor::<2>::random([1, n], Distribution::Normal(0.0, 1.0), (device, dtype));
        Ok(Self {
            q: random_weight(nq, d, 1, device)?,
            k: random_weight(nkv, d, 2, device)?,
            v: random_weight(nkv, d, 3, device)?,
            o: random_weight(d, nq, 4, device)?,
            gate: random_weight(ffn, d, 5, device)?,
            up: random_weight(ffn, d, 6, device)?,
            down: random_weight(d, ffn, 7, device)?,
            norm: Tensor::<1>::random([d], Distribution::Normal(1.0, 0.1), (device, dtype)),
            x: row(d),
            h: row(nq),
            m: row(ffn),
        })
    }

    /// Product `which` (0 q/k/v, 1 o, 2 gate/up, 3 down); its output.
    fn product(&self, which: usize) -> Tensor<2> {
        let norm = || Some((self.norm.clone(), 1e-5));
        match which {
            0 => nf4_gemv_fused(self.x.clone(), &[&self.q, &self.k, &self.v], norm(), GemvEpilogue::Concat, None),
            1 => nf4_gemv_fused(self.h.clone(), &[&self.o], None, GemvEpilogue::Residual, Some(self.x.clone())),
            2 => nf4_gemv_fused(self.x.clone(), &[&self.gate, &self.up], norm(), GemvEpilogue::SwiGlu, None),
            _ => nf4_gemv_fused(self.m.clone(), &[&self.down], None, GemvEpilogue::Residual, Some(self.x.clone())),
        }
    }

    /// Packed bytes product `which` reads (weights; scales are ≈ 1/128 of that).
    fn bytes(&self, which: usize) -> usize {
        let b = |w: &PackedNf4| w.shape()[0] * w.shape()[1] / 2;
        match which {
            0 => b(&self.q) + b(&self.k) + b(&self.v),
            1 => b(&self.o),
            2 => b(&self.gate) + b(&self.up),
            _ => b(&self.down),
        }
    }
}

const NAMES: [&str; 4] = ["norm+qkv", "o+residual", "norm+gate/up+swiglu", "down+residual"];

/// Seconds per repetition of `f` over `reps` queued back to back: to a device sync (wall), and
/// until the host had queued the last (issue: when it is close to the wall time, the host's
/// launch cost bounds the rate, not the kernel).
fn time(device: &Device, reps: usize, mut f: impl FnMut() -> Tensor<2>) -> (f64, f64) {
    for _ in 0..reps.min(10) {
        let _ = f();
    }
    device.sync().ok();
    let start = Instant::now();
    for _ in 0..reps {
        let _ = f();
    }
    let issued = start.elapsed().as_secs_f64();
    device.sync().ok();
    (start.elapsed().as_secs_f64() / reps as f64, issued / reps as f64)
}

/// With `--profile`, the device time of one run of `f`, averaged over `reps` runs queued back
/// to back with every launch timed on the device (`super::profile`): the kernels' own time, which
/// the wall-clock rate does not show where the host's issue time bounds it. `None` without it.
///
/// # Errors
/// `--profile` on a build without the `cuda` feature.
fn device_seconds(args: &Args, device: &Device, reps: usize, mut f: impl FnMut() -> Tensor<2>) -> Result<Option<f64>> {
    if !args.profile {
        return Ok(None);
    }
    let session = super::profile::start(true)?;
    for _ in 0..reps {
        let _ = f();
    }
    device.sync().ok();
    Ok(super::profile::finish(session, reps).and_then(|p| p["kernel_device_s"].as_f64()))
}

/// Runs the suite on `config`'s widths.
pub fn run(args: &Args, config: &llama_model::LlamaConfig) -> Result<()> {
    let tunings = parse_tunings(&args.tunings)?;
    super::profile::check(args.profile)?;
    let device = args.backend.device()?;
    let block = Block::new(config, &device, args.backend.dtype().into())?;
    let reps = args.steps.max(1) * 50;
    // The first tuning's outputs, to check that every tuning computes the same products (also
    // the first four fused launches of the process, one per product: what a profiler's
    // `--launch-count 4` sees).
    set_gemv_tuning(Some(tunings[0]));
    let reference: Vec<Vec<f32>> = (0..4).map(|w| host(block.product(w))).collect::<Result<_>>()?;
    // Host cost of other launches for comparison: burn's add and our RMSNorm (three buffers
    // each), the separate one-row NF4 product (seven) — the fused products bind twenty.
    let references: [(&str, &dyn Fn() -> Tensor<2>); 3] = [
        ("add [1, d] (burn)", &|| block.x.clone() + block.x.clone()),
        ("rms_norm [1, d]", &|| gpu_kernels::rms_norm(block.x.clone(), block.norm.clone(), 1e-5)),
        ("nf4_linear [1, d] · o", &|| gpu_kernels::nf4_linear(block.h.clone(), &block.o)),
    ];
    for (name, f) in references {
        let (s, issue) = time(&device, reps, f);
        emit(args, serde_json::json!({"suite": "gemv", "reference": name, "us": s * 1e6, "issue_us": issue * 1e6}))?;
    }
    for tuning in tunings {
        set_gemv_tuning(Some(tuning));
        let mut per = serde_json::Map::new();
        let mut worst = 0.0f64;
        for (w, name) in NAMES.iter().enumerate() {
            worst = worst.max(rel(&host(block.product(w))?, &reference[w]));
            let (s, issue) = time(&device, reps, || block.product(w));
            let mut line = serde_json::json!({"us": s * 1e6, "issue_us": issue * 1e6, "gb_per_s": block.bytes(w) as f64 / s / 1e9});
            if let Some(d) = device_seconds(args, &device, reps, || block.product(w))? {
                line["device_us"] = (d * 1e6).into();
                line["device_gb_per_s"] = (block.bytes(w) as f64 / d / 1e9).into();
            }
            per.insert((*name).into(), line);
        }
        let (layer, layer_issue) = time(&device, reps / 4, || {
            let _ = block.product(0);
            let _ = block.product(1);
            let _ = block.product(2);
            block.product(3)
        });
        let bytes: usize = (0..4).map(|w| block.bytes(w)).sum();
        emit(
            args,
            serde_json::json!({
                "suite": "gemv", "backend": format!("{:?}", args.backend).to_lowercase(), "shape": args.shape,
                "tuning": {"rows": tuning.rows, "in_flight": tuning.in_flight, "prefetch": tuning.prefetch},
                "block_us": layer * 1e6, "block_issue_us": layer_issue * 1e6, "block_gb_per_s": bytes as f64 / layer / 1e9, "products": per,
                "relative_error_vs_first": worst,
            }),
        )?;
    }
    set_gemv_tuning(None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    #[test]
    fn tunings_parse_and_bad_items_are_named() {
        let t = parse_tunings(DEFAULT_TUNINGS).expect("defaults parse");
        assert_eq!(t[0], GemvTuning::DEFAULT);
        assert_eq!(
            parse_tunings("4/8, 1/4/0").expect("two"),
            vec![
                GemvTuning { rows: 4, in_flight: 8, prefetch: GemvTuning::DEFAULT.prefetch },
                GemvTuning { rows: 1, in_flight: 4, prefetch: false }
            ]
        );
        let err = parse_tunings("2/4 3/4").expect_err("rows 3").to_string();
        assert!(err.contains("item 2") && err.contains("rows"), "{err}");
        let err = parse_tunings("2/4/3").expect_err("prefetch 3").to_string();
        assert!(err.contains("prefetch"), "{err}");
        let err = parse_tunings("2/4/1/1").expect_err("four fields").to_string();
        assert!(err.contains("rows/in_flight/prefetch"), "{err}");
        assert!(parse_tunings(" ").is_err());
    }

    #[test]
    fn a_tiny_block_runs_on_the_cpu_with_every_product_shaped() {
        let config = llama_model::presets::by_name("tiny").expect("tiny preset");
        let device = Backend::Cpu.device().expect("cpu");
        let block = Block::new(&config, &device, DType::F32).expect("block");
        let d = config.hidden_size;
        let nkv = config.num_kv_heads * config.head_dim;
        let widths = [config.num_heads * config.head_dim + 2 * nkv, d, config.intermediate_size, d];
        for (w, width) in widths.into_iter().enumerate() {
            let y = host(block.product(w)).expect("host");
            assert_eq!(y.len(), width, "{}", NAMES[w]);
            assert!(y.iter().all(|v| v.is_finite()), "{}", NAMES[w]);
        }
    }
}
