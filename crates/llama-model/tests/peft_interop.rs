//! peft interop on the tiny `gqa` model (fixtures: `tests/fixtures/peft/make_fixture.py`):
//! adapters peft saved load here with peft's logits; adapters we save load in peft with our
//! logits; a model we merge loads in transformers with the same logits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use llama_model::weights::safetensors::SafetensorsSource;
use llama_model::weights::{self, WeightSource};
use llama_model::{Llama, LlamaConfig, LoadOptions, adapters, load, save};
use lora::{AdapterWeights, LoraConfig, PeftAdapter, PeftConfig, TargetModules};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn base_model() -> Llama {
    let dir = fixtures().join("hf_parity/gqa");
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let source = weights::open(&dir).expect("weights");
    load(source.as_ref(), &config, &LoadOptions::f32(&Device::flex())).expect("model")
}

fn logits(model: &Llama) -> Vec<f32> {
    let expected = SafetensorsSource::open_file(&fixtures().join("hf_parity/gqa/expected.safetensors")).expect("ids");
    let (_, shape, bytes) = expected.read_raw("input_ids").expect("input_ids");
    let ids: Vec<i64> = bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &Device::flex());
    model.forward(tokens, None).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    let diff: f64 = ours.iter().zip(theirs).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let norm: f64 = theirs.iter().map(|b| (*b as f64).powi(2)).sum();
    let rel = (diff / norm).sqrt();
    assert!(rel < 1e-4, "{what}: relative error {rel:.2e}");
}

fn expected(file: &str, name: &str) -> Vec<f32> {
    SafetensorsSource::open_file(&fixtures().join("peft").join(file)).expect(file).read_f32(name).expect(name)
}

#[test]
fn adapter_saved_by_peft_gives_peft_logits() {
    let mut model = base_model();
    let plain = logits(&model);
    adapters::apply_peft_adapter(&mut model, &fixtures().join("peft/peft_saved")).expect("apply");
    let with = logits(&model);
    assert_close(&with, &expected("expected_peft.safetensors", "logits"), "peft adapter");
    let moved: f32 = with.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(moved > 1e-2, "the adapter must change the logits (max change {moved})");
}

/// The adapter kindling writes in the fixture: every projection, r 4, α 8, values from a formula.
fn formula_adapter(model: &Llama) -> PeftAdapter {
    let lora = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: TargetModules::parse("all-linear").expect("targets"),
        ..LoraConfig::default()
    };
    let mut modules = BTreeMap::new();
    for (k, (path, p)) in model.projections().into_iter().enumerate() {
        let [d_out, d_in] = p.dims();
        let a = (0..4 * d_in).map(|i| 0.05 * (0.1 * i as f32 + k as f32).sin()).collect();
        let b = (0..d_out * 4).map(|j| 0.05 * (0.07 * j as f32 + k as f32).cos()).collect();
        modules.insert(path, AdapterWeights { a, a_shape: [4, d_in], b, b_shape: [d_out, 4] });
    }
    PeftAdapter { config: PeftConfig::from_lora(&lora, "kindling/tiny-gqa"), modules }
}

/// Compares `dir`'s files with the committed ones, or writes them when
/// `KINDLING_WRITE_FIXTURES=1` (phase 2 of the fixture script).
fn check_or_write(dir: &Path, committed: &Path, files: &[&str]) {
    let write = std::env::var("KINDLING_WRITE_FIXTURES").is_ok_and(|v| v == "1");
    for f in files {
        let ours = std::fs::read(dir.join(f)).expect("written");
        if write {
            std::fs::create_dir_all(committed).expect("mkdir");
            std::fs::write(committed.join(f), &ours).expect("write fixture");
        } else {
            let theirs = std::fs::read(committed.join(f)).expect("committed fixture");
            assert!(ours == theirs, "{f}: our output differs from the fixture that peft/transformers read");
        }
    }
}

#[test]
fn adapter_we_save_gives_peft_logits_and_merge_gives_transformers_logits() {
    let mut model = base_model();
    let adapter = formula_adapter(&model);
    let tmp = tempfile::tempdir().expect("tmp");
    let ours = tmp.path().join("ours");
    adapter.save(&ours).expect("save adapter");
    check_or_write(&ours, &fixtures().join("peft/ours"), &["adapter_config.json", "adapter_model.safetensors"]);

    adapters::apply_peft_adapter(&mut model, &ours).expect("apply ours");
    let with = logits(&model);
    let merged = adapters::merge_adapters(model);
    let merged_dir = tmp.path().join("merged");
    save::save_hf_folder(&merged, &merged_dir).expect("save merged");
    check_or_write(&merged_dir, &fixtures().join("peft/merged"), &["config.json", "model.safetensors"]);
    if std::env::var("KINDLING_WRITE_FIXTURES").is_ok_and(|v| v == "1") {
        return;
    }
    assert_close(&with, &expected("expected_ours.safetensors", "logits_ours"), "our adapter in peft");
    let reloaded = {
        let config = LlamaConfig::from_hf_file(merged_dir.join("config.json")).expect("config");
        let source = weights::open(&merged_dir).expect("weights");
        load(source.as_ref(), &config, &LoadOptions::f32(&Device::flex())).expect("merged model")
    };
    assert_close(&logits(&reloaded), &expected("expected_ours.safetensors", "logits_merged"), "merged in transformers");
    assert_close(&logits(&merged), &with, "merge keeps the function");
}

#[test]
fn adapter_modules_that_do_not_fit_are_named() {
    let mut model = base_model();
    let mut adapter = formula_adapter(&model);
    let w = adapter.modules.remove("model.layers.0.self_attn.q_proj").expect("q");
    adapter.modules.insert("model.layers.7.self_attn.q_proj".into(), w.clone());
    let err = adapters::apply_adapter(&mut model, &adapter, Path::new("x")).expect_err("no layer 7");
    assert!(err.to_string().contains("model.layers.7.self_attn.q_proj"), "{err}");
    let mut adapter = formula_adapter(&model);
    adapter.modules.insert("model.layers.0.self_attn.k_proj".into(), w);
    let err = adapters::apply_adapter(&mut model, &adapter, Path::new("x")).expect_err("wrong shape");
    assert!(err.to_string().contains("k_proj") && err.to_string().contains("do not fit"), "{err}");
}
