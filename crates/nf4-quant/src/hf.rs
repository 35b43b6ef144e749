//! The tensors transformers + bitsandbytes write for a 4-bit linear weight, and back.
//!
//! For a weight named `W` (e.g. `model.layers.0.self_attn.q_proj.weight`), `Linear4bit`'s
//! `_save_to_state_dict` writes `QuantState.as_dict(packed=True)`:
//!
//! | name | dtype | shape | content |
//! |---|---|---|---|
//! | `W` | U8 | `[⌈n/2⌉, 1]` | packed nibbles |
//! | `W.absmax` | F32 `[blocks]`, or U8 `[blocks]` under double quant | | block scales |
//! | `W.quant_map` | F32 | `[16]` | the 4-bit code |
//! | `W.nested_absmax` | F32 | `[⌈blocks/256⌉]` | double quant only |
//! | `W.nested_quant_map` | F32 | `[256]` | double quant only |
//! | `W.quant_state.bitsandbytes__{nf4,fp4}` | U8 | `[len]` | UTF-8 `json.dumps` of `{"quant_type", "blocksize", "dtype", "shape", ["nested_blocksize", "nested_dtype", "nested_offset"]}` |
//!
//! Reading follows `QuantState.from_dict`: the 4-bit code used for decoding is the built-in one
//! (bitsandbytes ignores `quant_map` when dequantizing), the nested code is the stored one.

use serde::Deserialize;

use crate::config::{QuantType, SourceDType, check_blocksize};
use crate::double_quant::DoubleQuant;
use crate::error::{Error, Result};
use crate::pyfloat::python_float_repr;
use crate::tensor::{Absmax, Nf4Tensor};

/// Element type of a checkpoint tensor in this layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HfDType {
    /// `uint8`.
    U8,
    /// `float32`.
    F32,
}

impl HfDType {
    /// The safetensors dtype name (`"U8"`, `"F32"`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            HfDType::U8 => "U8",
            HfDType::F32 => "F32",
        }
    }
}

/// An owned checkpoint tensor: name, dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// Full tensor name.
    pub name: String,
    /// Element type.
    pub dtype: HfDType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes (`∏ shape · size_of(dtype)`).
    pub data: Vec<u8>,
}

impl HfTensor {
    /// A borrowed view, for [`Nf4Tensor::from_hf_tensors`].
    pub fn view(&self) -> HfTensorView<'_> {
        HfTensorView { dtype: self.dtype, shape: self.shape.clone(), data: &self.data }
    }
}

/// A borrowed checkpoint tensor, as a lookup into a safetensors file returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensorView<'a> {
    /// Element type.
    pub dtype: HfDType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: &'a [u8],
}

/// Suffixes (after the weight name) of every tensor in this layout.
pub const HF_SUFFIXES: [&str; 6] =
    ["absmax", "quant_map", "nested_absmax", "nested_quant_map", "quant_state.bitsandbytes__nf4", "quant_state.bitsandbytes__fp4"];

/// The non-tensor quant state bitsandbytes packs into a U8 tensor.
#[derive(Debug, Deserialize)]
struct PackedState {
    quant_type: String,
    blocksize: usize,
    dtype: String,
    shape: Option<Vec<usize>>,
    nested_blocksize: Option<usize>,
    nested_dtype: Option<String>,
    nested_offset: Option<f64>,
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Nf4Tensor {
    /// The tensors transformers writes for this weight, named after `name` (the weight's full
    /// name, e.g. `model.layers.0.mlp.down_proj.weight`), in bitsandbytes' order.
    pub fn to_hf_tensors(&self, name: &str) -> Vec<HfTensor> {
        let t = |suffix: &str, dtype, shape: Vec<usize>, data| HfTensor {
            name: if suffix.is_empty() { name.to_string() } else { format!("{name}.{suffix}") },
            dtype,
            shape,
            data,
        };
        let mut out = vec![t("", HfDType::U8, vec![self.packed().len(), 1], self.packed().to_vec())];
        let shape_json = self.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        let mut state = format!(
            r#"{{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": [{}]"#,
            self.quant_type().as_str(),
            self.blocksize(),
            self.dtype().as_str(),
            shape_json
        );
        match self.absmax() {
            Absmax::Plain(a) => {
                out.push(t("absmax", HfDType::F32, vec![a.len()], f32_bytes(a)));
                out.push(t("quant_map", HfDType::F32, vec![16], f32_bytes(self.quant_type().code())));
            }
            Absmax::Double(d) => {
                out.push(t("absmax", HfDType::U8, vec![d.codes.len()], d.codes.clone()));
                out.push(t("quant_map", HfDType::F32, vec![16], f32_bytes(self.quant_type().code())));
                out.push(t("nested_absmax", HfDType::F32, vec![d.nested_absmax.len()], f32_bytes(&d.nested_absmax)));
                out.push(t("nested_quant_map", HfDType::F32, vec![256], f32_bytes(&d.nested_code)));
                state.push_str(&format!(
                    r#", "nested_blocksize": {}, "nested_dtype": "float32", "nested_offset": {}"#,
                    d.nested_blocksize,
                    python_float_repr(f64::from(d.offset))
                ));
            }
        }
        state.push('}');
        let key = format!("quant_state.bitsandbytes__{}", self.quant_type().as_str());
        let bytes = state.into_bytes();
        out.push(t(&key, HfDType::U8, vec![bytes.len()], bytes));
        out
    }

    /// Reads a weight back from the tensors named after `name`; `lookup` returns a tensor by its
    /// full name (or `None` if absent).
    ///
    /// # Errors
    /// A missing tensor ([`Error::MissingTensor`]), a wrong dtype/shape/length
    /// ([`Error::MalformedTensor`]) or an unreadable or inconsistent packed state
    /// ([`Error::MalformedQuantState`]), each naming the tensor.
    pub fn from_hf_tensors<'a>(name: &str, mut lookup: impl FnMut(&str) -> Option<HfTensorView<'a>>) -> Result<Self> {
        let full = |suffix: &str| format!("{name}.{suffix}");
        let mut get = |n: &str| lookup(n).ok_or_else(|| Error::MissingTensor { name: n.to_string() });

        let nf4_key = full("quant_state.bitsandbytes__nf4");
        let fp4_key = full("quant_state.bitsandbytes__fp4");
        let (state_key, state_view) = match (get(&nf4_key), get(&fp4_key)) {
            (Ok(v), Err(_)) => (nf4_key, v),
            (Err(_), Ok(v)) => (fp4_key, v),
            (Err(_), Err(_)) => {
                return Err(Error::MissingTensor { name: format!("{name}.quant_state.bitsandbytes__{{nf4,fp4}}") });
            }
            (Ok(_), Ok(_)) => {
                return Err(Error::MalformedQuantState {
                    name: nf4_key,
                    reason: "both bitsandbytes__nf4 and bitsandbytes__fp4 states are present".into(),
                });
            }
        };
        let bad_state = |reason: String| Error::MalformedQuantState { name: state_key.clone(), reason };
        expect_dtype(&state_key, &state_view, HfDType::U8)?;
        let state: PackedState =
            serde_json::from_slice(state_view.data).map_err(|e| bad_state(format!("not a bitsandbytes quant state JSON: {e}")))?;
        let quant_type = QuantType::parse(&state.quant_type, "quant_type").map_err(|e| bad_state(e.to_string()))?;
        if !state_key.ends_with(quant_type.as_str()) {
            return Err(bad_state(format!("quant_type `{}` does not match the tensor name", state.quant_type)));
        }
        check_blocksize(state.blocksize).map_err(|e| bad_state(e.to_string()))?;
        let dtype = SourceDType::parse(&state.dtype, "dtype").map_err(|e| bad_state(e.to_string()))?;
        let shape = state.shape.ok_or_else(|| bad_state("`shape` is null; the weight's shape is needed".into()))?;
        let numel: usize = shape.iter().product();
        let blocks = numel.div_ceil(state.blocksize);

        let packed_view = get(name)?;
        expect_dtype(name, &packed_view, HfDType::U8)?;
        expect_len(name, packed_view.data.len(), numel.div_ceil(2))?;

        let absmax_key = full("absmax");
        let absmax_view = get(&absmax_key)?;
        let quant_map_key = full("quant_map");
        let quant_map = read_f32(&quant_map_key, &get(&quant_map_key)?, 16)?;
        if quant_map.iter().zip(quant_type.code()).any(|(a, b)| a.to_bits() != b.to_bits()) {
            tracing::warn!(tensor = %quant_map_key, "stored quant_map differs from the built-in {} code; decoding uses the built-in code, as bitsandbytes does", quant_type.as_str());
        }

        let absmax = match state.nested_offset {
            None => Absmax::Plain(read_f32(&absmax_key, &absmax_view, blocks)?),
            Some(offset) => {
                let nested_blocksize =
                    state.nested_blocksize.filter(|&b| b > 0).ok_or_else(|| bad_state("`nested_blocksize` missing or zero".into()))?;
                if let Some(d) = &state.nested_dtype
                    && d != "float32"
                {
                    return Err(bad_state(format!("nested_dtype `{d}` is not float32")));
                }
                expect_dtype(&absmax_key, &absmax_view, HfDType::U8)?;
                expect_len(&absmax_key, absmax_view.data.len(), blocks)?;
                let nested_key = full("nested_absmax");
                let nested_absmax = read_f32(&nested_key, &get(&nested_key)?, blocks.div_ceil(nested_blocksize))?;
                let map_key = full("nested_quant_map");
                let nested_code = read_f32(&map_key, &get(&map_key)?, 256)?;
                Absmax::Double(DoubleQuant {
                    codes: absmax_view.data.to_vec(),
                    nested_absmax,
                    nested_code,
                    nested_blocksize,
                    // bitsandbytes: torch.tensor(float(nested_offset)) → f32.
                    offset: offset as f32,
                })
            }
        };
        Nf4Tensor::from_parts(packed_view.data.to_vec(), shape, quant_type, state.blocksize, dtype, absmax, name)
    }
}

fn expect_dtype(name: &str, view: &HfTensorView<'_>, dtype: HfDType) -> Result<()> {
    if view.dtype == dtype {
        Ok(())
    } else {
        Err(Error::MalformedTensor {
            name: name.to_string(),
            reason: format!("dtype {} (expected {})", view.dtype.safetensors_name(), dtype.safetensors_name()),
        })
    }
}

fn expect_len(name: &str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::MalformedTensor { name: name.to_string(), reason: format!("{actual} elements (expected {expected})") })
    }
}

fn read_f32(name: &str, view: &HfTensorView<'_>, len: usize) -> Result<Vec<f32>> {
    expect_dtype(name, view, HfDType::F32)?;
    if !view.data.len().is_multiple_of(4) {
        return Err(Error::MalformedTensor { name: name.to_string(), reason: "byte length is not a multiple of 4".into() });
    }
    expect_len(name, view.data.len() / 4, len)?;
    Ok(view.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuantConfig;
    use std::collections::HashMap;

    fn sample(double: bool) -> Nf4Tensor {
        let x: Vec<f32> = (0..6 * 70).map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.1).collect();
        Nf4Tensor::quantize(&x, &[6, 70], &QuantConfig::nf4().with_double_quant(double)).expect("quantize")
    }

    fn lookup(ts: &[HfTensor]) -> HashMap<String, HfTensor> {
        ts.iter().map(|t| (t.name.clone(), t.clone())).collect()
    }

    #[test]
    fn round_trip_plain_and_double() {
        for double in [false, true] {
            let t = sample(double);
            let ts = t.to_hf_tensors("m.q.weight");
            let map = lookup(&ts);
            let back = Nf4Tensor::from_hf_tensors("m.q.weight", |n| map.get(n).map(HfTensor::view)).expect("read back");
            assert_eq!(back, t);
            assert_eq!(ts[0].shape, vec![210, 1]);
        }
    }

    #[test]
    fn packed_state_is_python_json() {
        let ts = sample(false).to_hf_tensors("w");
        let state = ts.iter().find(|t| t.name == "w.quant_state.bitsandbytes__nf4").expect("state");
        assert_eq!(
            std::str::from_utf8(&state.data).expect("utf8"),
            r#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [6, 70]}"#
        );
    }

    #[test]
    fn missing_and_malformed_entries_are_named() {
        let ts = sample(true).to_hf_tensors("w");
        let mut map = lookup(&ts);
        map.remove("w.nested_absmax");
        let err = Nf4Tensor::from_hf_tensors("w", |n| map.get(n).map(HfTensor::view));
        assert!(matches!(err, Err(Error::MissingTensor { ref name }) if name == "w.nested_absmax"), "{err:?}");

        let mut map = lookup(&ts);
        if let Some(t) = map.get_mut("w.absmax") {
            t.dtype = HfDType::F32;
        }
        let err = Nf4Tensor::from_hf_tensors("w", |n| map.get(n).map(HfTensor::view));
        assert!(matches!(err, Err(Error::MalformedTensor { ref name, .. }) if name == "w.absmax"), "{err:?}");

        let mut map = lookup(&ts);
        if let Some(t) = map.get_mut("w.quant_state.bitsandbytes__nf4") {
            t.data = b"{\"quant_type\": \"nf4\"".to_vec();
        }
        let err = Nf4Tensor::from_hf_tensors("w", |n| map.get(n).map(HfTensor::view));
        assert!(matches!(err, Err(Error::MalformedQuantState { ref name, .. }) if name == "w.quant_state.bitsandbytes__nf4"), "{err:?}");

        let map: HashMap<String, HfTensor> = HashMap::new();
        let err = Nf4Tensor::from_hf_tensors("w", |n| map.get(n).map(HfTensor::view));
        assert!(matches!(err, Err(Error::MissingTensor { .. })), "{err:?}");
    }
}
