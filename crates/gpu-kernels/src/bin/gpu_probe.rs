//! Side-by-side timings on CUDA device 0: burn's bf16 matmul vs cuBLASLt (through
//! `gpu_kernels::linear` and raw), NF4 dequantization bandwidth (fused kernel vs burn ops), and
//! an NF4 linear (dequantize + GEMM) both ways. Every variant is checked before it is timed.
//!
//! `gpu_probe [OUT_DIR]` prints a table and, with `OUT_DIR`, writes `probe.md` there.
//! Method: fresh random inputs (two sets, alternated), 3 warm-up calls, rounds of enough calls
//! for ≥ 20 ms, device synchronized before the clock stops; the median round is reported.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};
use gpu_kernels::{HostScales, PackedNf4, cuda, linear, nf4_dequantize, nf4_dequantize_unfused, nf4_linear};

const ROUNDS: usize = 15;

/// Median, min and max of per-call milliseconds over rounds.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn from(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Stats { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
    }
}

/// Times `f(i)` per call: warm-up, an estimate, then `ROUNDS` rounds synchronized at the end.
fn time(device: &Device, mut f: impl FnMut(usize)) -> Result<Stats> {
    let sync = || device.sync().map_err(|e| anyhow::anyhow!("sync: {e:?}"));
    for i in 0..3 {
        f(i);
    }
    sync()?;
    let t0 = Instant::now();
    for i in 0..3 {
        f(i);
    }
    sync()?;
    let per_call = t0.elapsed().as_secs_f64() / 3.0;
    let iters = ((0.02 / per_call.max(1e-7)).ceil() as usize).clamp(3, 2000);
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        for i in 0..iters {
            f(i);
        }
        sync()?;
        rounds.push(t0.elapsed().as_secs_f64() * 1e3 / iters as f64);
    }
    Ok(Stats::from(rounds))
}

fn host_f64(t: Tensor<2>) -> Result<Vec<f64>> {
    let v = t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(v.into_iter().map(f64::from).collect())
}

/// Checks rows `rows` of `y = x · wᵀ` against an f64 host product (bf16 tolerances).
fn check_rows(what: &str, y: &Tensor<2>, x: &Tensor<2>, w_host: &[f64], rows: &[usize]) -> Result<f64> {
    let [_, n] = y.dims();
    let k = x.dims()[1];
    let mut worst = 0.0f64;
    for &r in rows {
        let xr = host_f64(x.clone().narrow(0, r, 1))?;
        let yr = host_f64(y.clone().narrow(0, r, 1))?;
        let want: Vec<f64> = (0..n).map(|j| (0..k).map(|p| xr[p] * w_host[j * k + p]).sum()).collect();
        let rms = (want.iter().map(|v| v * v).sum::<f64>() / n as f64).sqrt();
        for (j, (g, w)) in yr.iter().zip(&want).enumerate() {
            ensure!(g.is_finite() && (g - w).abs() <= 1e-2 * w.abs() + 4e-3 * rms, "{what}: row {r} col {j}: {g} vs {w}");
            worst = worst.max((g - w).abs() / rms.max(1e-30));
        }
    }
    Ok(worst)
}

fn tflops(m: usize, k: usize, n: usize, ms: f64) -> f64 {
    2.0 * (m * k * n) as f64 / (ms * 1e-3) / 1e12
}

fn bench_gemm(device: &Device, (m, k, n): (usize, usize, usize), md: &mut String) -> Result<()> {
    let sets: Vec<(Tensor<2>, Tensor<2>)> = (0..2)
        .map(|_| {
            let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), (device, DType::BF16));
            let w = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 0.02), (device, DType::BF16));
            (x, w)
        })
        .collect();
    // burn's matmul on a contiguous [K, N] weight (its best layout) and as `lora` calls it today
    // (`linear(x, W[N, K].transpose())`).
    let w_kn: Vec<Tensor<2>> =
        sets.iter().map(|(_, w)| Tensor::from_data(w.clone().transpose().into_data(), (device, DType::BF16))).collect();

    // Correctness first: each variant against f64 host rows.
    let w_host = host_f64(sets[0].1.clone())?;
    let rows: Vec<usize> = [0, m / 3, m / 2, m - 1].into_iter().filter(|&r| r < m).collect();
    let e_ours = check_rows("gpu_kernels::linear", &linear(sets[0].0.clone(), sets[0].1.clone()), &sets[0].0, &w_host, &rows)?;
    let e_burn = check_rows("burn matmul", &sets[0].0.clone().matmul(w_kn[0].clone()), &sets[0].0, &w_host, &rows)?;
    let e_lora = check_rows(
        "burn linear(W^T)",
        &burn::tensor::module::linear(sets[0].0.clone(), sets[0].1.clone().transpose(), None),
        &sets[0].0,
        &w_host,
        &rows,
    )?;

    let burn_mm = time(device, |i| drop(sets[i % 2].0.clone().matmul(w_kn[i % 2].clone())))?;
    let burn_lin = time(device, |i| drop(burn::tensor::module::linear(sets[i % 2].0.clone(), sets[i % 2].1.clone().transpose(), None)))?;
    let ours = time(device, |i| drop(linear(sets[i % 2].0.clone(), sets[i % 2].1.clone())))?;
    let mut raw = Vec::new();
    for r in 0..ROUNDS {
        let (x, w) = &sets[r % 2];
        raw.push(cuda::time_cublaslt_linear(x, w, if m == 1 { 200 } else { 20 })?);
    }
    let raw = Stats::from(raw);

    let line = format!(
        "| {m}×{k}×{n} | {:.3} ({:.0}) | {:.3} ({:.0}) | {:.3} ({:.0}) | {:.3} ({:.0}) | {:.2}× | {:.1e}/{:.1e}/{:.1e} |",
        burn_mm.median,
        tflops(m, k, n, burn_mm.median),
        burn_lin.median,
        tflops(m, k, n, burn_lin.median),
        ours.median,
        tflops(m, k, n, ours.median),
        raw.median,
        tflops(m, k, n, raw.median),
        burn_mm.median / ours.median,
        e_burn,
        e_lora,
        e_ours,
    );
    println!(
        "{line}   [spread burn {:.3}-{:.3}, ours {:.3}-{:.3}, raw {:.3}-{:.3}]",
        burn_mm.min, burn_mm.max, ours.min, ours.max, raw.min, raw.max
    );
    writeln!(md, "{line}")?;
    Ok(())
}

/// A packed NF4 weight with random bytes and positive scales, as the host holds it.
struct HostNf4 {
    packed: Vec<u8>,
    absmax: Vec<f32>,
    codes: Vec<u8>,
    nested_absmax: Vec<f32>,
    nested_code: Vec<f32>,
    offset: f32,
}

const NF4: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

fn host_nf4(n: usize, blocksize: usize, seed: u64) -> HostNf4 {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let blocks = n.div_ceil(blocksize);
    let packed = (0..n / 2).map(|_| next() as u8).collect();
    let absmax = (0..blocks).map(|_| 0.01 + (next() % 10_000) as f32 * 1e-5).collect();
    let codes = (0..blocks).map(|_| next() as u8).collect();
    let nested_absmax = (0..blocks.div_ceil(256)).map(|_| 0.02 + (next() % 1000) as f32 * 1e-5).collect();
    let nested_code = (0..256).map(|i| (i as f32 - 127.5) / 128.0).collect();
    HostNf4 { packed, absmax, codes, nested_absmax, nested_code, offset: 0.03 }
}

/// The host formula for element `i` (f32 steps, no fusion).
fn host_value(h: &HostNf4, i: usize, blocksize: usize, double: bool) -> f32 {
    let byte = h.packed[i / 2];
    let q = if i.is_multiple_of(2) { byte >> 4 } else { byte & 15 };
    let b = i / blocksize;
    let scale = if double { h.nested_code[usize::from(h.codes[b])] * h.nested_absmax[b / 256] + h.offset } else { h.absmax[b] };
    NF4[usize::from(q)] * scale
}

fn bench_nf4(device: &Device, md: &mut String) -> Result<()> {
    let (rows, cols, bs) = (14336usize, 4096usize, 64usize);
    let n = rows * cols;
    writeln!(md, "\n| NF4 dequant {rows}×{cols} → bf16 | fused kernel ms (GB/s) | burn ops ms (GB/s) | ratio |\n|---|---|---|---|")?;
    println!("\nNF4 dequant {rows}x{cols} -> bf16");
    for double in [false, true] {
        let h = host_nf4(n, bs, if double { 99 } else { 7 });
        let scales = if double {
            HostScales::Double {
                codes: &h.codes,
                nested_absmax: &h.nested_absmax,
                nested_code: &h.nested_code,
                nested_blocksize: 256,
                offset: h.offset,
            }
        } else {
            HostScales::Plain(&h.absmax)
        };
        let w = PackedNf4::upload(&h.packed, scales, &NF4, [rows, cols], bs, device)?;
        println!("packed weight on the device: {} bytes for {n} values", w.storage_bytes());
        let fused = nf4_dequantize(&w, FloatDType::BF16);
        let unfused = nf4_dequantize_unfused(&w, FloatDType::BF16);
        let bits = |t: &Tensor<2>| -> Result<Vec<u16>> {
            Ok(t.clone()
                .into_data()
                .try_to_vec::<half::bf16>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .iter()
                .map(|v| v.to_bits())
                .collect())
        };
        let (bf, bu) = (bits(&fused)?, bits(&unfused)?);
        ensure!(bf == bu, "fused and unfused dequantization differ (double={double})");
        for i in (0..n).step_by(9973).chain([n - 1]) {
            let want = half::bf16::from_f32(host_value(&h, i, bs, double)).to_bits();
            ensure!(bf[i] == want, "element {i}: {:#06x} vs host {:#06x} (double={double})", bf[i], want);
        }
        let blocks = n / bs;
        let read = n / 2 + if double { blocks + 4 * blocks.div_ceil(256) + 1024 } else { 4 * blocks } + 64;
        let bytes = (read + 2 * n) as f64;
        let tf = time(device, |_| drop(nf4_dequantize(&w, FloatDType::BF16)))?;
        let tu = time(device, |_| drop(nf4_dequantize_unfused(&w, FloatDType::BF16)))?;
        let gbs = |ms: f64| bytes / (ms * 1e-3) / 1e9;
        let line = format!(
            "| {} | {:.4} ({:.0}) | {:.3} ({:.0}) | {:.1}× |",
            if double { "double-quant absmax" } else { "f32 absmax" },
            tf.median,
            gbs(tf.median),
            tu.median,
            gbs(tu.median),
            tu.median / tf.median
        );
        println!("{line}   [fused {:.4}-{:.4}]", tf.min, tf.max);
        writeln!(md, "{line}")?;
    }

    // Reference bandwidth: one elementwise pass of burn over a tensor of the dense weight's size.
    let big = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), (device, DType::BF16));
    let te = time(device, |_| drop(big.clone().mul_scalar(1.5)))?;
    let line = format!(
        "| burn elementwise x·1.5 on the bf16 weight (read+write {:.0} MB) | {:.4} ({:.0} GB/s) | | |",
        4.0 * n as f64 / 1e6,
        te.median,
        4.0 * n as f64 / (te.median * 1e-3) / 1e9
    );
    println!("{line}");
    writeln!(md, "{line}")?;

    // NF4 linear at a training shape: dequantize + GEMM, fused kernel + cuBLASLt vs burn ops + burn matmul.
    let m = 2048;
    let h = host_nf4(n, bs, 5);
    let w = PackedNf4::upload(&h.packed, HostScales::Plain(&h.absmax), &NF4, [rows, cols], bs, device)?;
    let xs: Vec<Tensor<2>> =
        (0..2).map(|_| Tensor::<2>::random([m, cols], Distribution::Normal(0.0, 1.0), (device, DType::BF16))).collect();
    let ours = |x: Tensor<2>| linear(x, nf4_dequantize(&w, FloatDType::BF16));
    let theirs = |x: Tensor<2>| burn::tensor::module::linear(x, nf4_dequantize_unfused(&w, FloatDType::BF16).transpose(), None);
    let w_host = host_f64(nf4_dequantize(&w, FloatDType::BF16))?;
    check_rows("nf4 linear (ours)", &ours(xs[0].clone()), &xs[0], &w_host, &[0, m - 1])?;
    check_rows("nf4 linear (burn)", &theirs(xs[0].clone()), &xs[0], &w_host, &[0, m - 1])?;
    let to = time(device, |i| drop(ours(xs[i % 2].clone())))?;
    let tb = time(device, |i| drop(theirs(xs[i % 2].clone())))?;
    let line = format!(
        "\n| NF4 linear {m}×{cols}×{rows} (dequant + GEMM) | kernel + cuBLASLt {:.3} ms ({:.0} TFLOP/s) | burn ops + burn matmul {:.3} ms ({:.0}) | {:.2}× |",
        to.median,
        tflops(m, cols, rows, to.median),
        tb.median,
        tflops(m, cols, rows, tb.median),
        tb.median / to.median
    );
    println!("{line}");
    writeln!(md, "{line}")?;
    Ok(())
}

/// One frozen-weight linear, forward + backward (dx only), as a LoRA base layer trains.
fn bench_train_step(md: &mut String) -> Result<()> {
    let device = Device::cuda(0).autodiff();
    let (m, k, n) = (2048, 4096, 14336);
    let plain = Device::cuda(0);
    let w = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 0.02), (&plain, DType::BF16));
    let w = Tensor::<2>::from_data(w.into_data(), (&device, DType::BF16));
    let xs: Vec<Tensor<2>> = (0..2).map(|_| Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), (&plain, DType::BF16))).collect();
    let step = |x: &Tensor<2>, ours: bool| {
        let x = Tensor::<2>::from_data(x.to_data(), (&device, DType::BF16)).require_grad();
        let y = if ours { linear(x.clone(), w.clone()) } else { burn::tensor::module::linear(x.clone(), w.clone().transpose(), None) };
        let grads = y.sum().backward();
        x.grad(&grads)
    };
    // Both must agree (and produce a gradient) before timing.
    let (a, b) = (step(&xs[0], true).context("no dx (ours)")?, step(&xs[0], false).context("no dx (burn)")?);
    let (a, b) = (host_f64(a)?, host_f64(b)?);
    let rms = (b.iter().map(|v| v * v).sum::<f64>() / b.len() as f64).sqrt();
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / rms;
    ensure!(worst < 0.05, "dx differs: max |Δ| / rms = {worst}");
    let to = time(&plain, |i| drop(step(&xs[i % 2], true)))?;
    let tb = time(&plain, |i| drop(step(&xs[i % 2], false)))?;
    let flops = 2.0 * 2.0 * (m * k * n) as f64;
    let line = format!(
        "\n| fwd+bwd frozen linear {m}×{k}×{n} (autodiff, dx only) | ours {:.3} ms ({:.0} TFLOP/s) | burn {:.3} ms ({:.0}) | {:.2}× |",
        to.median,
        flops / (to.median * 1e-3) / 1e12,
        tb.median,
        flops / (tb.median * 1e-3) / 1e12,
        tb.median / to.median
    );
    println!("{line}");
    writeln!(md, "{line}")?;

    // The same with an NF4 base weight: nf4_linear (fused dequant + cuBLASLt, dequantizes again
    // in backward, keeps no dense weight) vs burn ops dequant + burn linear (keeps the dense weight).
    let hq = host_nf4(n * k, 64, 13);
    let wq = PackedNf4::upload(&hq.packed, HostScales::Plain(&hq.absmax), &NF4, [n, k], 64, &plain)?;
    let nf4_step = |x: &Tensor<2>, ours: bool| {
        let x = Tensor::<2>::from_data(x.to_data(), (&device, DType::BF16)).require_grad();
        let y = if ours {
            nf4_linear(x.clone(), &wq)
        } else {
            burn::tensor::module::linear(x.clone(), nf4_dequantize_unfused(&wq, FloatDType::BF16).transpose(), None)
        };
        let grads = y.sum().backward();
        x.grad(&grads)
    };
    let (a, b) = (nf4_step(&xs[0], true).context("no dx (nf4 ours)")?, nf4_step(&xs[0], false).context("no dx (nf4 burn)")?);
    let (a, b) = (host_f64(a)?, host_f64(b)?);
    let rms = (b.iter().map(|v| v * v).sum::<f64>() / b.len() as f64).sqrt();
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / rms;
    ensure!(worst < 0.05, "nf4 dx differs: max |Δ| / rms = {worst}");
    let to = time(&plain, |i| drop(nf4_step(&xs[i % 2], true)))?;
    let tb = time(&plain, |i| drop(nf4_step(&xs[i % 2], false)))?;
    let line = format!(
        "| fwd+bwd NF4 linear {m}×{k}×{n} (dx only) | nf4_linear {:.3} ms ({:.0} TFLOP/s) | burn ops dequant + linear {:.3} ms ({:.0}) | {:.2}× |",
        to.median,
        flops / (to.median * 1e-3) / 1e12,
        tb.median,
        flops / (tb.median * 1e-3) / 1e12,
        tb.median / to.median
    );
    println!("{line}");
    writeln!(md, "{line}")?;
    Ok(())
}

fn main() -> Result<()> {
    let out_dir = std::env::args().nth(1);
    let device = Device::cuda(0);
    cuda::cublaslt_ready(0).context("cuBLASLt")?;
    let mut md = String::new();
    writeln!(
        md,
        "| M×K×N (bf16, y = x·Wᵀ) | burn matmul W[K,N] ms (TFLOP/s) | burn linear(W[N,K]ᵀ) ms (TFLOP/s) | gpu_kernels::linear ms (TFLOP/s) | cuBLASLt raw ms (TFLOP/s) | burn matmul / linear | max err/rms burn, burn-lin, ours |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    println!("{md}");
    let mut failed = 0;
    // Each section runs on its own: a failure (error or panic) is reported and the rest still run.
    let mut section = |name: &str, md: &mut String, f: &mut dyn FnMut(&mut String) -> Result<()>| {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(md)));
        let msg = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(p) => p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default(),
        };
        failed += 1;
        println!("FAILED {name}: {msg}");
        let _ = writeln!(md, "| FAILED {name}: {} |", msg.lines().next().unwrap_or(""));
    };
    for shape in [(2048, 4096, 14336), (2048, 14336, 4096), (2048, 4096, 4096), (1, 4096, 14336)] {
        section(&format!("gemm {shape:?}"), &mut md, &mut |md| bench_gemm(&device, shape, md));
    }
    section("nf4", &mut md, &mut |md| bench_nf4(&device, md));
    section("train step", &mut md, &mut |md| bench_train_step(md));
    if let Some(dir) = out_dir {
        std::fs::write(std::path::Path::new(&dir).join("probe.md"), &md).context("write probe.md")?;
    }
    println!("\n{md}");
    ensure!(failed == 0, "{failed} section(s) failed");
    Ok(())
}
