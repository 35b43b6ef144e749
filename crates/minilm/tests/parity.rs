//! Parity with sentence-transformers on the real all-MiniLM-L6-v2 folder.
//!
//! `tests/fixtures/sentence_transformers/expected.json` was written by `make_fixture.py` beside
//! it, which encodes the same sentences with sentence-transformers from the same folder.

use burn::tensor::Device;
use llm_api::Embedder;
use minilm::MiniLm;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    sentences: Vec<String>,
    token_counts: Vec<usize>,
    embeddings: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sentence_transformers/expected.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn model() -> MiniLm {
    let dir = assets::require(assets::known::MINILM_DIR).unwrap_or_else(|e| panic!("{e}"));
    MiniLm::load(&dir, &Device::flex()).unwrap_or_else(|e| panic!("{e}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers_one_at_a_time_and_batched() {
    let fx = fixture();
    let model = model();
    assert_eq!(model.max_seq_length(), fx.max_seq_length);
    assert_eq!(model.dim(), 384);

    for (s, &count) in fx.sentences.iter().zip(&fx.token_counts) {
        assert_eq!(model.token_count(s).expect("tokenize"), count, "token count of {s:?}");
    }

    let singles: Vec<Vec<f32>> = fx.sentences.iter().map(|s| model.encode(&[s.as_str()]).expect("encode").remove(0)).collect();
    for ((s, got), want) in fx.sentences.iter().zip(&singles).zip(&fx.embeddings) {
        let c = cosine(got, want);
        assert!(c >= 0.9999, "cosine {c} for {s:?}");
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm} for {s:?}");
    }

    // All sentences in one padded batch (lengths 2..256) and through the trait object.
    let embedder: &dyn Embedder = &model;
    let batched = embedder.embed(&fx.sentences).expect("batch");
    assert_eq!(batched.len(), fx.sentences.len());
    for ((s, b), one) in fx.sentences.iter().zip(&batched).zip(&singles) {
        let diff = b.iter().zip(one).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "batched vs single differ by {diff} for {s:?}");
    }

    // Smaller batches that split the list differently give the same vectors too.
    let small = model.with_batch_size(3);
    let refs: Vec<&str> = fx.sentences.iter().map(String::as_str).collect();
    for (b, one) in small.encode(&refs).expect("small batches").iter().zip(&singles) {
        let diff = b.iter().zip(one).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "batch of 3 differs by {diff}");
    }
}

#[test]
fn a_folder_without_weights_names_the_file() {
    let src = assets::require(assets::known::MINILM_DIR).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).expect("copy");
    }
    let err = MiniLm::load(dir.path(), &Device::flex()).expect_err("no weights");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
