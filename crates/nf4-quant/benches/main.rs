//! Throughput of the codec on a 4096 × 4096 weight, in bytes of f32 input (quantize) or output
//! (dequantize) per second, with and without double quantization; and of the two dequantization
//! paths of `Nf4Linear` on the flex CPU backend.

use std::hint::black_box;

use burn::tensor::{Device, FloatDType};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nf4_quant::{Dequantize, DeviceNf4Tensor, Nf4Tensor, QuantConfig};

const ROWS: usize = 4096;
const COLS: usize = 4096;

fn weights() -> Vec<f32> {
    // Deterministic, roughly normal-looking values (sum of three uniforms).
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..ROWS * COLS).map(|_| (next() + next() + next()) * 0.04).collect()
}

fn configs() -> [(&'static str, QuantConfig); 2] {
    [("nf4", QuantConfig::nf4()), ("nf4_double_quant", QuantConfig::nf4().with_double_quant(true))]
}

fn codec(c: &mut Criterion) {
    let w = weights();
    let mut group = c.benchmark_group("codec_4096x4096");
    group.throughput(Throughput::Bytes((4 * ROWS * COLS) as u64));
    group.sample_size(10);
    for (name, cfg) in configs() {
        group.bench_with_input(BenchmarkId::new("quantize", name), &cfg, |b, cfg| {
            b.iter(|| Nf4Tensor::quantize(black_box(&w), &[ROWS, COLS], cfg).expect("quantize"))
        });
        let q = Nf4Tensor::quantize(&w, &[ROWS, COLS], &cfg).expect("quantize");
        let mut out = vec![0.0f32; ROWS * COLS];
        group.bench_with_input(BenchmarkId::new("dequantize", name), &q, |b, q| {
            b.iter(|| q.dequantize_into(black_box(&mut out)).expect("dequantize"))
        });
    }
    group.finish();
}

fn dense_paths(c: &mut Criterion) {
    let w = weights();
    let device = Device::flex();
    let mut group = c.benchmark_group("dense_weight_flex_4096x4096");
    group.throughput(Throughput::Bytes((4 * ROWS * COLS) as u64));
    group.sample_size(10);
    for (name, cfg) in configs() {
        let q = Nf4Tensor::quantize(&w, &[ROWS, COLS], &cfg).expect("quantize");
        group.bench_with_input(BenchmarkId::new("host", name), &q, |b, q| {
            b.iter(|| {
                let t = q.dequantize(&device, FloatDType::F32).expect("host");
                device.sync().expect("sync");
                t
            })
        });
        let d = DeviceNf4Tensor::upload(&q, &device).expect("upload");
        group.bench_with_input(BenchmarkId::new("device", name), &d, |b, d| {
            b.iter(|| {
                let t = d.dequantize(&device, FloatDType::F32).expect("device");
                device.sync().expect("sync");
                t
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec, dense_paths);
criterion_main!(benches);
