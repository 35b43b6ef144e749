//! What the HF-fixture tests share: the fixture folders, their inputs, the error measure.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use llama_model::weights::WeightSource;
use llama_model::weights::safetensors::SafetensorsSource;

/// `tests/fixtures/hf_parity/<case>` (`make_fixture.py` beside them).
pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_parity").join(case)
}

/// The fixture's `expected.safetensors` (transformers' inputs and outputs).
pub fn expected(case: &str) -> SafetensorsSource {
    SafetensorsSource::open_file(&fixture(case).join("expected.safetensors")).expect("expected.safetensors")
}

/// An i64 tensor of `expected.safetensors`: (shape, values).
pub fn expected_i64(src: &dyn WeightSource, name: &str) -> (Vec<usize>, Vec<i64>) {
    let (_, shape, bytes) = src.read_raw(name).expect("expected tensor");
    (shape, bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// The fixture's `input_ids`, `[batch, len]`.
pub fn input_ids(case: &str, device: &Device) -> Tensor<2, Int> {
    let (shape, ids) = expected_i64(&expected(case), "input_ids");
    Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), device)
}

/// `‖a − b‖ / ‖b‖`, in f64.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm).sqrt()
}
