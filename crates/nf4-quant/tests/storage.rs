//! The storage formula against real quantized tensors, and the Llama-3-8B shape after NF4.

use nf4_quant::{Nf4Tensor, QuantConfig};

#[test]
fn formula_matches_quantized_tensors() {
    for (rows, cols) in [(3usize, 5usize), (64, 64), (100, 300), (257, 1024)] {
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        for quant in [QuantConfig::nf4(), QuantConfig::nf4().with_double_quant(true), QuantConfig::nf4().with_blocksize(128)] {
            let t = Nf4Tensor::quantize(&values, &[rows, cols], &quant).expect("quantize");
            assert_eq!(quant.storage_bytes(rows * cols), t.storage_bytes(), "{rows}×{cols} {quant:?}");
        }
    }
}

#[test]
fn llama3_8b_after_nf4_is_about_5_6_gib() {
    // The 8B shape: d 4096, kv width 1024, FFN 14336, 32 blocks, vocab 128256.
    let (d, kv, ffn, layers, vocab) = (4096usize, 1024usize, 14336usize, 32usize, 128_256usize);
    let per_layer = [d * d, d * kv, d * kv, d * d, d * ffn, d * ffn, ffn * d];
    let quant = QuantConfig::nf4();
    let packed: usize = per_layer.iter().map(|&n| quant.storage_bytes(n)).sum::<usize>() * layers;
    // Embeddings, lm_head and the norms stay bf16, as bitsandbytes leaves them.
    let bf16 = 2 * (2 * vocab * d + (2 * layers + 1) * d);
    let gib = (packed + bf16) as f64 / (1u64 << 30) as f64;
    assert!((gib - 5.6).abs() < 0.05, "{gib:.3} GiB");
    // Double quantization saves ≈0.30 GiB more: per block of 64 values the absmax goes from 4
    // bytes to 1 + 4/256, i.e. ≈2.98 bytes × 6.98e9/64 blocks.
    let dq = QuantConfig::nf4().with_double_quant(true);
    let packed_dq: usize = per_layer.iter().map(|&n| dq.storage_bytes(n)).sum::<usize>() * layers;
    let saved = (packed - packed_dq) as f64 / (1u64 << 30) as f64;
    assert!((saved - 0.30).abs() < 0.01, "double quant saves {saved:.3} GiB");
}
