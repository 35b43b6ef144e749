//! Logits and greedy tokens against HF transformers for tiny random models
//! (fixtures: `tests/fixtures/hf_parity/make_fixture.py`), on the CPU and, with the `wgpu`
//! feature, on the first wgpu adapter (CI: Mesa's software Vulkan, lavapipe).

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use llama_model::weights::{self, WeightSource};
use llama_model::{GenerateOptions, LlamaConfig, LoadOptions, generate, load};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_parity").join(case)
}

fn expected_i64(src: &dyn WeightSource, name: &str) -> (Vec<usize>, Vec<i64>) {
    let (_, shape, bytes) = src.read_raw(name).expect("expected tensor");
    (shape, bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

fn check_case(case: &str) {
    check_case_on(case, &Device::flex());
}

fn check_case_on(case: &str, device: &Device) {
    let device = device.clone();
    let dir = fixture(case);
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let source = weights::open(&dir).expect("weights");
    let model = load(source.as_ref(), &config, &LoadOptions::f32(&device)).expect("model");
    let expected = weights::safetensors::SafetensorsSource::open_file(&dir.join("expected.safetensors")).expect("expected");

    let (shape, ids) = expected_i64(&expected, "input_ids");
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let ours = model.forward(tokens, None).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    let theirs = expected.read_f32("logits").expect("logits");
    assert_eq!(ours.len(), theirs.len());
    // Relative error ‖ours − theirs‖ / ‖theirs‖ over all logits, in f64.
    let diff: f64 = ours.iter().zip(&theirs).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let norm: f64 = theirs.iter().map(|b| (*b as f64).powi(2)).sum();
    let rel = (diff / norm).sqrt();
    let max_err = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{case}: relative error {rel:.2e}, max |Δlogit| {max_err:.2e}");
    assert!(rel < 1e-4, "{case}: relative error {rel:.2e} (max |Δlogit| {max_err:.2e})");

    let (_, prompt) = expected_i64(&expected, "prompt");
    let prompt: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    for (key, use_cache) in [("greedy", true), ("greedy_nocache", false)] {
        let (_, want) = expected_i64(&expected, key);
        let options = GenerateOptions { max_new_tokens: 20, use_cache, ..GenerateOptions::default() };
        let got = generate(&model, &prompt, &options, |_| true).expect("generate").tokens;
        let want: Vec<u32> = want.iter().map(|&t| t as u32).collect();
        assert_eq!(got, want, "{case}: {key}");
    }
}

#[test]
fn gqa_matches_transformers() {
    check_case("gqa");
}

#[test]
fn llama3_rope_scaling_sharded_matches_transformers() {
    check_case("llama3_rope");
}

#[test]
fn tied_embeddings_with_bias_match_transformers() {
    check_case("tied");
}

/// The same checks on wgpu (f32: WGSL has no bf16).
#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    fn device() -> Device {
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
    }

    #[test]
    fn gqa_matches_transformers_on_wgpu() {
        check_case_on("gqa", &device());
    }

    #[test]
    fn llama3_rope_scaling_matches_transformers_on_wgpu() {
        check_case_on("llama3_rope", &device());
    }

    #[test]
    fn tied_embeddings_match_transformers_on_wgpu() {
        check_case_on("tied", &device());
    }
}
