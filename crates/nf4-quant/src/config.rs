//! Quantization settings: code type, blocksize, double quantization and which bitsandbytes
//! implementation the quantizer reproduces.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Blocksizes bitsandbytes accepts for 4-bit quantization (`quantize_4bit`).
pub const VALID_BLOCKSIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Blocksize bitsandbytes uses by default, and the one transformers always uses.
pub const DEFAULT_BLOCKSIZE: usize = 64;

/// Blocksize of the second (8-bit) quantization of absmax under double quantization.
pub const NESTED_BLOCKSIZE: usize = 256;

/// The 4-bit data type: which 16-value code the nibbles index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantType {
    /// NormalFloat4: quantiles of N(0, 1), normalized to [-1, 1] (QLoRA, arXiv:2305.14314).
    #[default]
    Nf4,
    /// bitsandbytes' FP4: 1 sign, 2 exponent and 1 mantissa bit, normalized by 12.
    Fp4,
}

impl QuantType {
    /// The name bitsandbytes and transformers use (`"nf4"` / `"fp4"`).
    pub fn as_str(self) -> &'static str {
        match self {
            QuantType::Nf4 => "nf4",
            QuantType::Fp4 => "fp4",
        }
    }

    /// Parses bitsandbytes' name; `what` names the field for the error.
    pub fn parse(name: &str, what: &str) -> Result<Self> {
        match name {
            "nf4" => Ok(QuantType::Nf4),
            "fp4" => Ok(QuantType::Fp4),
            other => Err(Error::QuantizationConfig {
                field: what.to_string(),
                reason: format!("unknown 4-bit quant type `{other}` (expected `nf4` or `fp4`)"),
            }),
        }
    }
}

/// Which bitsandbytes implementation the quantizer reproduces bit for bit.
///
/// bitsandbytes 0.50 quantizes differently on CUDA and on CPU; dequantization is the same
/// everywhere. The differences (all read from bitsandbytes' sources):
///
/// | | CUDA kernels (`kQuantizeBlockwise`) | CPU (`backends/default`, `cpu_ops.cpp`) |
/// |---|---|---|
/// | 4-bit scaling | `x · (1/absmax)` in every block | `x · (1/max(absmax, 1e-38))`; the last partial block uses `x / max(absmax, 1e-38)` and stores the clamped absmax |
/// | all-zero 4-bit block | `0 · ∞ = NaN` → code 0 (NF4 `0x00`, decodes to -0.0) | code of 0.0 (NF4 `0x77`) |
/// | FP4 rounding | sign bit from `x < 0`, magnitude by a tree of fixed literals; a tiny negative value gives `-0` (code 8) | nearest code by `bucketize` on f32 midpoints; a tiny negative value gives `+0` (code 0) |
/// | 8-bit absmax (double quant) | exact nearest code by binary search, ties toward the search pivot | a 65 536-bin lookup table on [-1, 1] (approximate near codes closer than 3e-5) |
/// | mean offset | `sum · (1/n)` | `sum / n` |
///
/// NF4 decision thresholds are the same f32 midpoints on both. Known residual differences:
/// the CUDA build uses `--use_fast_math` (`1/absmax` may be 1 ulp off IEEE, subnormal maxima
/// flush to zero), and bitsandbytes' own f32 summation order for the mean offset differs from
/// this crate's correctly rounded sum in the last bit when partial sums are inexact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BnbKernel {
    /// The CUDA kernels, which produce the 4-bit checkpoints found on the Hub.
    #[default]
    Cuda,
    /// The CPU implementation (what `quantize_4bit` runs on CPU tensors).
    Cpu,
}

/// The floating-point dtype of the tensor that was quantized (`dtype` in bitsandbytes' quant
/// state); dequantization returns values in this dtype by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceDType {
    /// `torch.float32`.
    #[default]
    F32,
    /// `torch.bfloat16`.
    Bf16,
    /// `torch.float16`.
    F16,
}

impl SourceDType {
    /// The torch name without the `torch.` prefix, as bitsandbytes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceDType::F32 => "float32",
            SourceDType::Bf16 => "bfloat16",
            SourceDType::F16 => "float16",
        }
    }

    /// Parses a torch dtype name (`"float32"`, `"bfloat16"`, `"float16"`); `what` names the field.
    pub fn parse(name: &str, what: &str) -> Result<Self> {
        match name {
            "float32" => Ok(SourceDType::F32),
            "bfloat16" => Ok(SourceDType::Bf16),
            "float16" => Ok(SourceDType::F16),
            other => Err(Error::QuantizationConfig {
                field: what.to_string(),
                reason: format!("unsupported dtype `{other}` (expected float32, bfloat16 or float16)"),
            }),
        }
    }
}

/// How to quantize a tensor to 4 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuantConfig {
    /// NF4 or FP4.
    pub quant_type: QuantType,
    /// Values per absmax block; one of [`VALID_BLOCKSIZES`].
    pub blocksize: usize,
    /// Quantize the absmax vector again (8-bit dynamic code, blocksize 256, mean offset).
    pub double_quant: bool,
    /// Which bitsandbytes implementation to reproduce.
    pub kernel: BnbKernel,
}

impl Default for QuantConfig {
    /// NF4, blocksize 64, no double quantization, CUDA rounding.
    fn default() -> Self {
        Self { quant_type: QuantType::Nf4, blocksize: DEFAULT_BLOCKSIZE, double_quant: false, kernel: BnbKernel::Cuda }
    }
}

impl QuantConfig {
    /// Bytes a tensor of `numel` values takes once quantized with this config, as
    /// [`crate::Nf4Tensor::storage_bytes`] counts them: `⌈n/2⌉` packed bytes plus the absmax —
    /// `4·⌈n/b⌉` plain, or `⌈n/b⌉` codes + `4·(⌈⌈n/b⌉/256⌉ + 256 + 1)` double-quantized.
    pub fn storage_bytes(&self, numel: usize) -> usize {
        let blocks = numel.div_ceil(self.blocksize);
        let absmax = if self.double_quant { blocks + 4 * (blocks.div_ceil(256) + 256 + 1) } else { 4 * blocks };
        numel.div_ceil(2) + absmax
    }

    /// NF4 with the defaults of [`QuantConfig::default`].
    pub fn nf4() -> Self {
        Self::default()
    }

    /// FP4 with the other defaults of [`QuantConfig::default`].
    pub fn fp4() -> Self {
        Self { quant_type: QuantType::Fp4, ..Self::default() }
    }

    /// Sets the blocksize (validated when used).
    pub fn with_blocksize(mut self, blocksize: usize) -> Self {
        self.blocksize = blocksize;
        self
    }

    /// Enables or disables double quantization.
    pub fn with_double_quant(mut self, double_quant: bool) -> Self {
        self.double_quant = double_quant;
        self
    }

    /// Chooses the bitsandbytes implementation to reproduce.
    pub fn with_kernel(mut self, kernel: BnbKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Checks the blocksize.
    pub fn validate(&self) -> Result<()> {
        check_blocksize(self.blocksize)
    }
}

/// Checks that `blocksize` is one bitsandbytes accepts for 4-bit quantization.
pub fn check_blocksize(blocksize: usize) -> Result<()> {
    if VALID_BLOCKSIZES.contains(&blocksize) { Ok(()) } else { Err(Error::InvalidBlocksize { blocksize }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocksizes_are_powers_of_two_from_32_to_4096() {
        for b in VALID_BLOCKSIZES {
            assert!(check_blocksize(b).is_ok());
        }
        for b in [0, 16, 48, 96, 8192] {
            assert!(matches!(check_blocksize(b), Err(Error::InvalidBlocksize { blocksize }) if blocksize == b));
        }
    }

    #[test]
    fn names_round_trip() {
        for q in [QuantType::Nf4, QuantType::Fp4] {
            assert_eq!(QuantType::parse(q.as_str(), "t").ok(), Some(q));
        }
        for d in [SourceDType::F32, SourceDType::Bf16, SourceDType::F16] {
            assert_eq!(SourceDType::parse(d.as_str(), "t").ok(), Some(d));
        }
        assert!(matches!(QuantType::parse("int4", "bnb_4bit_quant_type"),
            Err(Error::QuantizationConfig { field, .. }) if field == "bnb_4bit_quant_type"));
    }

    #[test]
    fn config_serde_uses_lowercase_names() {
        let c = QuantConfig::fp4().with_double_quant(true).with_kernel(BnbKernel::Cpu);
        let json = serde_json::to_string(&c).expect("serialize");
        assert_eq!(json, r#"{"quant_type":"fp4","blocksize":64,"double_quant":true,"kernel":"cpu"}"#);
        let back: QuantConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
    }
}
