//! Fixture readers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use nf4_quant::{HfDType, HfTensorView};
use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures/<rel>`.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Reads a fixture file (panics with its path if absent: fixtures are committed).
pub fn read(rel: &str) -> Vec<u8> {
    let path = fixture_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()))
}

/// Parses safetensors bytes.
pub fn parse(bytes: &[u8]) -> SafeTensors<'_> {
    SafeTensors::deserialize(bytes).expect("valid safetensors fixture")
}

/// Raw bytes of a tensor.
pub fn raw<'a>(st: &'a SafeTensors<'a>, name: &str) -> &'a [u8] {
    st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}")).data()
}

/// An F32 tensor.
pub fn f32s(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A 16-bit tensor as raw bit patterns.
pub fn u16s(st: &SafeTensors<'_>, name: &str) -> Vec<u16> {
    raw(st, name).chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

/// A U8 tensor.
pub fn u8s(st: &SafeTensors<'_>, name: &str) -> Vec<u8> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::U8, "{name}");
    t.data().to_vec()
}

/// The lookup `Nf4Tensor::from_hf_tensors` takes, over a safetensors file.
pub fn hf_lookup<'a>(st: &'a SafeTensors<'a>) -> impl FnMut(&str) -> Option<HfTensorView<'a>> + 'a {
    move |name| {
        let t = st.tensor(name).ok()?;
        let dtype = match t.dtype() {
            Dtype::U8 => HfDType::U8,
            Dtype::F32 => HfDType::F32,
            _ => return None,
        };
        Some(HfTensorView { dtype, shape: t.shape().to_vec(), data: t.data() })
    }
}

/// Index of the first differing element, for readable failures.
pub fn first_diff<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// f32 slices compared by bit pattern.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
