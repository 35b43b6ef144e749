//! Every malformed checkpoint is a clear error that names the file and the tensor or key.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use llama_model::weights;
use llama_model::{Error, LlamaConfig, LoadOptions, load};

fn gqa_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_parity/gqa")
}

fn config() -> LlamaConfig {
    LlamaConfig::from_hf_file(gqa_dir().join("config.json")).expect("fixture config")
}

fn try_load(dir: &Path) -> Result<(), Error> {
    let source = weights::open(dir)?;
    load(source.as_ref(), &config(), &LoadOptions::f32(&Device::flex())).map(|_| ())
}

/// A copy of the fixture folder whose `model.safetensors` is rewritten by `edit`.
fn edited(
    edit: impl FnOnce(Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>) -> Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(gqa_dir().join("config.json"), dir.path().join("config.json")).expect("copy");
    let bytes = std::fs::read(gqa_dir().join("model.safetensors")).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
    let tensors: Vec<_> = st.iter().map(|(n, v)| (n.to_string(), v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    let tensors = edit(tensors);
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view"))).collect();
    let out = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(dir.path().join("model.safetensors"), out).expect("write");
    dir
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = std::fs::read(gqa_dir().join("model.safetensors")).expect("read");
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("write");
    let err = weights::open(&path).err().expect("truncated file must fail");
    let text = err.to_string();
    assert!(matches!(err, Error::Format { .. }), "{text}");
    assert!(text.contains("model.safetensors") && text.contains("not a valid safetensors"), "{text}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = edited(|mut t| {
        t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight");
        t
    });
    let err = try_load(dir.path()).expect_err("missing tensor");
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "model.layers.1.mlp.up_proj.weight"), "{err}");
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let dir = edited(|mut t| {
        for (n, _, s, b) in t.iter_mut() {
            if n == "model.norm.weight" {
                *s = vec![32];
                b.truncate(32 * 2);
            }
        }
        t
    });
    let err = try_load(dir.path()).expect_err("wrong shape");
    let text = err.to_string();
    assert!(
        matches!(&err, Error::Shape { name, found, expected, .. } if name == "model.norm.weight" && found == &vec![32] && expected == &vec![64]),
        "{text}"
    );
}

#[test]
fn wrong_dtype_is_named() {
    let dir = edited(|mut t| {
        for (n, d, _, _) in t.iter_mut() {
            if n == "model.embed_tokens.weight" {
                *d = safetensors::Dtype::I16;
            }
        }
        t
    });
    let err = try_load(dir.path()).expect_err("wrong dtype");
    assert!(matches!(&err, Error::Dtype { name, dtype, .. } if name == "model.embed_tokens.weight" && dtype == "I16"), "{err}");
}

#[test]
fn extra_tensor_is_reported() {
    let dir = edited(|mut t| {
        t.push(("model.layers.9.mystery.weight".into(), safetensors::Dtype::F32, vec![1], vec![0; 4]));
        t
    });
    let err = try_load(dir.path()).expect_err("unexpected tensor");
    assert!(matches!(&err, Error::UnexpectedTensors { names, .. } if names == &vec!["model.layers.9.mystery.weight".to_string()]), "{err}");
}

#[test]
fn config_missing_required_key_names_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(gqa_dir().join("config.json")).expect("read");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json.as_object_mut().expect("object").remove("num_hidden_layers");
    let path = dir.path().join("config.json");
    std::fs::write(&path, json.to_string()).expect("write");
    let err = LlamaConfig::from_hf_file(&path).expect_err("missing key");
    let text = err.to_string();
    assert!(text.contains("config.json") && text.contains("`num_hidden_layers`"), "{text}");
}

#[test]
fn gguf_bad_magic_and_truncation_are_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGML\x03\x00\x00\x00rest").expect("write");
    let err = weights::open(&bad).err().expect("bad magic");
    assert!(err.to_string().contains("bad magic"), "{err}");

    // A real GGUF cut short inside its tensor data.
    let real = assets::require(assets::known::SMOLLM2_GGUF).expect("run scripts/fetch-assets.sh");
    let bytes = std::fs::read(&real).expect("read gguf");
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let err = weights::open(&cut).err().expect("truncated data");
    let text = err.to_string();
    assert!(text.contains("cut.gguf") && text.contains("truncated"), "{text}");

    // Cut inside the header.
    std::fs::write(&cut, &bytes[..1000]).expect("write");
    let err = weights::open(&cut).err().expect("truncated header");
    assert!(err.to_string().contains("truncated header"), "{err}");
}

#[test]
fn sharded_index_pointing_at_wrong_shard_is_an_error() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_parity/llama3_rope");
    let dir = tempfile::tempdir().expect("tmp");
    for e in std::fs::read_dir(&src).expect("dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copy");
    }
    let index = dir.path().join("model.safetensors.index.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index).expect("read")).expect("json");
    let map = json["weight_map"].as_object_mut().expect("map");
    let (name, file) = map.iter().next().map(|(k, v)| (k.clone(), v.as_str().expect("str").to_string())).expect("entry");
    let other = map.values().map(|v| v.as_str().expect("str").to_string()).find(|f| *f != file).expect("two shards");
    map.insert(name.clone(), serde_json::Value::from(other));
    std::fs::write(&index, json.to_string()).expect("write");
    let err = weights::open(dir.path()).err().expect("wrong shard");
    assert!(err.to_string().contains(&name), "{err}");
    let source = weights::open(&src).expect("the original index is fine");
    assert!(source.names().len() > 10);
}
