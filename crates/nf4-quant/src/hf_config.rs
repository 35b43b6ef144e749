//! The `quantization_config` block of an HF `config.json` for a bitsandbytes 4-bit model
//! (transformers' `BitsAndBytesConfig.to_dict()`).

use serde_json::{Map, Value, json};

use crate::config::{BnbKernel, DEFAULT_BLOCKSIZE, QuantConfig, QuantType, SourceDType};
use crate::error::{Error, Result};

/// The settings a 4-bit `quantization_config` carries.
///
/// transformers always quantizes with blocksize 64 and does not record it; a model quantized
/// with another blocksize cannot be described by this block (its per-tensor quant states still
/// record the blocksize).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BnbQuantizationConfig {
    /// `bnb_4bit_quant_type`.
    pub quant_type: QuantType,
    /// `bnb_4bit_use_double_quant`.
    pub double_quant: bool,
    /// `bnb_4bit_compute_dtype`: the dtype of the matmuls.
    pub compute_dtype: SourceDType,
    /// `llm_int8_skip_modules`: module names left unquantized (`None` = transformers' default).
    pub skip_modules: Option<Vec<String>>,
}

fn bad(field: &str, reason: impl Into<String>) -> Error {
    Error::QuantizationConfig { field: field.to_string(), reason: reason.into() }
}

impl BnbQuantizationConfig {
    /// The block for weights quantized with `quant` and matmuls in `compute_dtype`.
    ///
    /// # Errors
    /// A blocksize other than 64, which this block cannot express.
    pub fn new(quant: &QuantConfig, compute_dtype: SourceDType) -> Result<Self> {
        if quant.blocksize != DEFAULT_BLOCKSIZE {
            return Err(bad("blocksize", format!("{} cannot be expressed; transformers always uses {DEFAULT_BLOCKSIZE}", quant.blocksize)));
        }
        Ok(Self { quant_type: quant.quant_type, double_quant: quant.double_quant, compute_dtype, skip_modules: None })
    }

    /// The quantization these settings ask for, reproducing `kernel`'s rounding.
    pub fn quant_config(&self, kernel: BnbKernel) -> QuantConfig {
        QuantConfig { quant_type: self.quant_type, blocksize: DEFAULT_BLOCKSIZE, double_quant: self.double_quant, kernel }
    }

    /// The JSON object transformers writes (every field of `BitsAndBytesConfig.to_dict()`).
    pub fn to_json(&self) -> Value {
        json!({
            "_load_in_4bit": true,
            "_load_in_8bit": false,
            "bnb_4bit_compute_dtype": self.compute_dtype.as_str(),
            "bnb_4bit_quant_storage": "uint8",
            "bnb_4bit_quant_type": self.quant_type.as_str(),
            "bnb_4bit_use_double_quant": self.double_quant,
            "llm_int8_enable_fp32_cpu_offload": false,
            "llm_int8_has_fp16_weight": false,
            "llm_int8_skip_modules": self.skip_modules,
            "llm_int8_threshold": 6.0,
            "load_in_4bit": true,
            "load_in_8bit": false,
            "quant_method": "bitsandbytes",
        })
    }

    /// Reads a `quantization_config` object, with transformers' defaults for absent fields
    /// (`bnb_4bit_quant_type` defaults to `fp4`, as in `BitsAndBytesConfig`).
    ///
    /// # Errors
    /// Not a bitsandbytes 4-bit config, an unsupported quant storage, or a field of the wrong type.
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj: &Map<String, Value> = value.as_object().ok_or_else(|| bad("quantization_config", "not a JSON object"))?;
        let string = |field: &str, default: &'static str| -> Result<String> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(default.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(bad(field, format!("expected a string, got {other}"))),
            }
        };
        let boolean = |fields: &[&str]| -> Result<bool> {
            for field in fields {
                match obj.get(*field) {
                    None | Some(Value::Null) => continue,
                    Some(Value::Bool(b)) => return Ok(*b),
                    Some(other) => {
                        return Err(bad(field, format!("expected a boolean, got {other}")));
                    }
                }
            }
            Ok(false)
        };
        let method = string("quant_method", "")?;
        if method != "bitsandbytes" {
            return Err(bad("quant_method", format!("`{method}` is not `bitsandbytes`")));
        }
        if !boolean(&["load_in_4bit", "_load_in_4bit"])? {
            return Err(bad("load_in_4bit", "not a 4-bit config (load_in_4bit is false or absent)"));
        }
        let storage = string("bnb_4bit_quant_storage", "uint8")?;
        if storage != "uint8" {
            return Err(bad("bnb_4bit_quant_storage", format!("`{storage}` is not supported (only uint8)")));
        }
        let quant_type = QuantType::parse(&string("bnb_4bit_quant_type", "fp4")?, "bnb_4bit_quant_type")?;
        let compute_dtype = SourceDType::parse(&string("bnb_4bit_compute_dtype", "float32")?, "bnb_4bit_compute_dtype")?;
        let double_quant = boolean(&["bnb_4bit_use_double_quant"])?;
        let skip_modules = match obj.get("llm_int8_skip_modules") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| bad("llm_int8_skip_modules", format!("expected strings, got {v}")))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(other) => {
                return Err(bad("llm_int8_skip_modules", format!("expected a list, got {other}")));
            }
        };
        Ok(Self { quant_type, double_quant, compute_dtype, skip_modules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
    /// bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16).to_dict()` as
    /// transformers 5.24 writes it into config.json.
    const TRANSFORMERS_BLOCK: &str = r#"{
 "_load_in_4bit": true,
 "_load_in_8bit": false,
 "bnb_4bit_compute_dtype": "bfloat16",
 "bnb_4bit_quant_storage": "uint8",
 "bnb_4bit_quant_type": "nf4",
 "bnb_4bit_use_double_quant": true,
 "llm_int8_enable_fp32_cpu_offload": false,
 "llm_int8_has_fp16_weight": false,
 "llm_int8_skip_modules": null,
 "llm_int8_threshold": 6.0,
 "load_in_4bit": true,
 "load_in_8bit": false,
 "quant_method": "bitsandbytes"
}"#;

    #[test]
    fn writes_what_transformers_writes() {
        let want: Value = serde_json::from_str(TRANSFORMERS_BLOCK).expect("json");
        let ours = BnbQuantizationConfig::new(&QuantConfig::nf4().with_double_quant(true), SourceDType::Bf16).expect("config");
        assert_eq!(ours.to_json(), want);
        assert_eq!(BnbQuantizationConfig::from_json(&want).expect("parse"), ours);
    }

    #[test]
    fn rejects_other_methods_and_storage() {
        let v = json!({"quant_method": "gptq"});
        assert!(matches!(BnbQuantizationConfig::from_json(&v), Err(Error::QuantizationConfig { field, .. }) if field == "quant_method"));
        let v = json!({"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_storage": "bfloat16"});
        assert!(
            matches!(BnbQuantizationConfig::from_json(&v), Err(Error::QuantizationConfig { field, .. }) if field == "bnb_4bit_quant_storage")
        );
        let v = json!({"quant_method": "bitsandbytes", "load_in_8bit": true});
        assert!(matches!(BnbQuantizationConfig::from_json(&v), Err(Error::QuantizationConfig { field, .. }) if field == "load_in_4bit"));
        assert!(BnbQuantizationConfig::new(&QuantConfig::nf4().with_blocksize(128), SourceDType::Bf16).is_err());
    }
}
