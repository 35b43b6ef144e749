//! bitsandbytes 4-bit checkpoints (fixtures: `tests/fixtures/bnb4bit/make_fixture.py`):
//! transformers' 4-bit save loads here with transformers' 4-bit logits, and the checkpoint
//! `xtask quantize`'s code writes loads in transformers with our logits.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use llama_model::weights::safetensors::SafetensorsSource;
use llama_model::weights::{self, WeightSource};
use llama_model::{Llama, LlamaConfig, LoadOptions, load, load_quantized, quantized};
use nf4_quant::{QuantConfig, SourceDType};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn open(dir: &Path, quant: Option<&QuantConfig>) -> Llama {
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let source = weights::open(dir).expect("weights");
    load_quantized(source.as_ref(), &config, &LoadOptions::f32(&Device::flex()), quant).expect("model")
}

fn logits(model: &Llama) -> Vec<f32> {
    let expected = SafetensorsSource::open_file(&fixtures().join("hf_parity/gqa/expected.safetensors")).expect("ids");
    let (_, shape, bytes) = expected.read_raw("input_ids").expect("input_ids");
    let ids: Vec<i64> = bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &Device::flex());
    model.forward(tokens, None).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

fn rel_err(ours: &[f32], theirs: &[f32]) -> f64 {
    let diff: f64 = ours.iter().zip(theirs).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let norm: f64 = theirs.iter().map(|b| (*b as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

fn expected(file: &str, key: &str) -> Vec<f32> {
    SafetensorsSource::open_file(&fixtures().join("bnb4bit").join(file)).expect(file).read_f32(key).expect(key)
}

/// transformers' CPU 4-bit forward computes with bf16-rounded weights (≈3e-3 relative to the
/// exact decoding), so it is compared at bf16 tolerance; the exact decoding at f32 tolerance.
fn check(ours: &[f32], file: &str) {
    let exact = rel_err(ours, &expected(file, "logits_exact"));
    assert!(exact < 1e-4, "{file}: vs exact decoding, relative error {exact:.2e}");
    let hf = rel_err(ours, &expected(file, "logits"));
    assert!(hf < 1e-2, "{file}: vs transformers' 4-bit forward, relative error {hf:.2e}");
}

#[test]
fn transformers_4bit_checkpoint_gives_transformers_4bit_logits() {
    let model = open(&fixtures().join("bnb4bit/hf_4bit"), None);
    let nf4 = model.projections().iter().filter(|(_, p)| matches!(p.base, lora::BaseLinear::Nf4(_))).count();
    assert_eq!(nf4, 14, "every block projection is read packed");
    check(&logits(&model), "expected_hf.safetensors");
    // The 4-bit model really differs from the dense one (quantization error is visible).
    let dense = open(&fixtures().join("hf_parity/gqa"), None);
    assert!(rel_err(&logits(&dense), &expected("expected_hf.safetensors", "logits_exact")) > 1e-2);
}

#[test]
fn checkpoint_we_quantize_gives_transformers_logits() {
    let quant = QuantConfig::nf4().with_double_quant(true);
    let model = open(&fixtures().join("hf_parity/gqa"), Some(&quant));
    let ours = logits(&model);
    let tmp = tempfile::tempdir().expect("tmp");
    quantized::save_quantized(&model, &quant, SourceDType::F32, tmp.path()).expect("save");
    let committed = fixtures().join("bnb4bit/ours_4bit");
    let write = std::env::var("KINDLING_WRITE_FIXTURES").is_ok_and(|v| v == "1");
    for f in ["config.json", "model.safetensors"] {
        let bytes = std::fs::read(tmp.path().join(f)).expect("written");
        if write {
            std::fs::create_dir_all(&committed).expect("mkdir");
            std::fs::write(committed.join(f), &bytes).expect("write fixture");
        } else {
            assert!(bytes == std::fs::read(committed.join(f)).expect("fixture"), "{f} differs from the file transformers read");
        }
    }
    if write {
        return;
    }
    check(&ours, "expected_ours.safetensors");
    // Reading our own checkpoint back gives the same model.
    let back = open(tmp.path(), None);
    assert!(rel_err(&logits(&back), &ours) < 1e-6);
    // And the dense load of the same model is a different function (the base is really 4-bit).
    let dense =
        load(weights::open(&fixtures().join("hf_parity/gqa")).expect("w").as_ref(), &model.config, &LoadOptions::f32(&Device::flex()))
            .expect("dense");
    assert!(rel_err(&logits(&dense), &ours) > 1e-2);
}
