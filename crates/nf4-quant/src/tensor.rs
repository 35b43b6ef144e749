//! [`Nf4Tensor`]: a 4-bit quantized tensor (packed nibbles + shape + quant state).

use half::{bf16, f16};

use crate::blockwise4;
use crate::config::{QuantConfig, QuantType, SourceDType, check_blocksize};
use crate::double_quant::DoubleQuant;
use crate::error::{Error, Result};

/// The per-block scales of a 4-bit tensor: plain f32, or double-quantized.
#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    /// One f32 per block: `[⌈n / blocksize⌉]`.
    Plain(Vec<f32>),
    /// 8-bit codes with a nested f32 scale per 256 blocks and a mean offset.
    Double(DoubleQuant),
}

impl Absmax {
    /// Number of 4-bit blocks these scales cover.
    pub fn blocks(&self) -> usize {
        match self {
            Absmax::Plain(v) => v.len(),
            Absmax::Double(d) => d.codes.len(),
        }
    }

    /// The f32 scale of every block (decoded if double-quantized).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Absmax::Plain(v) => v.clone(),
            Absmax::Double(d) => d.decode(),
        }
    }

    fn storage_bytes(&self) -> usize {
        match self {
            Absmax::Plain(v) => 4 * v.len(),
            Absmax::Double(d) => d.storage_bytes(),
        }
    }
}

/// A tensor quantized to 4 bits exactly as bitsandbytes' `quantize_4bit` does.
///
/// Invariant (checked by every constructor): `packed.len() == ⌈numel/2⌉`, the absmax covers
/// `⌈numel/blocksize⌉` blocks, `numel = ∏ shape > 0`, and the blocksize is valid. Values are in
/// row-major order of `shape`; a linear weight has HF's `[out, in]` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    packed: Vec<u8>,
    shape: Vec<usize>,
    quant_type: QuantType,
    blocksize: usize,
    dtype: SourceDType,
    absmax: Absmax,
}

impl Nf4Tensor {
    /// Quantizes f32 values of the given shape (`dtype` of the state: float32).
    ///
    /// # Errors
    /// Invalid blocksize, `values.len() != ∏ shape`, an empty shape, or a non-finite value
    /// (the error gives its flat index).
    pub fn quantize(values: &[f32], shape: &[usize], config: &QuantConfig) -> Result<Self> {
        Self::quantize_generic(values, |v| v, shape, config, SourceDType::F32)
    }

    /// Quantizes bf16 values (`dtype` of the state: bfloat16), as bitsandbytes does for a bf16
    /// weight: each value is widened to f32 first.
    pub fn quantize_bf16(values: &[bf16], shape: &[usize], config: &QuantConfig) -> Result<Self> {
        Self::quantize_generic(values, bf16::to_f32, shape, config, SourceDType::Bf16)
    }

    /// Quantizes f16 values (`dtype` of the state: float16).
    pub fn quantize_f16(values: &[f16], shape: &[usize], config: &QuantConfig) -> Result<Self> {
        Self::quantize_generic(values, f16::to_f32, shape, config, SourceDType::F16)
    }

    fn quantize_generic<T: Copy + Sync>(
        values: &[T],
        to_f32: impl Fn(T) -> f32 + Sync + Copy,
        shape: &[usize],
        config: &QuantConfig,
        dtype: SourceDType,
    ) -> Result<Self> {
        config.validate()?;
        let numel = checked_numel(shape, "input")?;
        if values.len() != numel {
            return Err(Error::LengthMismatch { what: format!("input of shape {shape:?}"), expected: numel, actual: values.len() });
        }
        blockwise4::check_finite(values, to_f32, "input")?;
        let (packed, absmax) = blockwise4::quantize(values, to_f32, config.quant_type, config.blocksize, config.kernel);
        let absmax =
            if config.double_quant { Absmax::Double(DoubleQuant::compress(&absmax, config.kernel)) } else { Absmax::Plain(absmax) };
        Ok(Self { packed, shape: shape.to_vec(), quant_type: config.quant_type, blocksize: config.blocksize, dtype, absmax })
    }

    /// Builds a tensor from stored parts, checking the invariant; `what` names it in errors.
    pub fn from_parts(
        packed: Vec<u8>,
        shape: Vec<usize>,
        quant_type: QuantType,
        blocksize: usize,
        dtype: SourceDType,
        absmax: Absmax,
        what: &str,
    ) -> Result<Self> {
        check_blocksize(blocksize)?;
        let numel = checked_numel(&shape, what)?;
        if packed.len() != numel.div_ceil(2) {
            return Err(Error::LengthMismatch { what: format!("{what}: packed bytes"), expected: numel.div_ceil(2), actual: packed.len() });
        }
        let blocks = numel.div_ceil(blocksize);
        match &absmax {
            Absmax::Plain(v) if v.len() != blocks => {
                return Err(Error::LengthMismatch { what: format!("{what}: absmax"), expected: blocks, actual: v.len() });
            }
            Absmax::Plain(v) => blockwise4::check_finite(v, |x| x, &format!("{what}: absmax"))?,
            Absmax::Double(d) => {
                d.validate(blocks, what)?;
                blockwise4::check_finite(&d.nested_absmax, |x| x, &format!("{what}: nested_absmax"))?;
                blockwise4::check_finite(&d.nested_code, |x| x, &format!("{what}: nested_quant_map"))?;
                if !d.offset.is_finite() {
                    return Err(Error::NonFinite { what: format!("{what}: nested_offset"), index: 0, value: d.offset });
                }
            }
        }
        Ok(Self { packed, shape, quant_type, blocksize, dtype, absmax })
    }

    /// Dequantizes into `out: [numel]` as f32 (`code[q] · absmax`, exactly bitsandbytes' f32 values).
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        self.check_out(out.len())?;
        let absmax = self.absmax.to_f32();
        blockwise4::dequantize_into(&self.packed, &absmax, self.quant_type, self.blocksize, out, blockwise4::to_f32);
        Ok(())
    }

    /// Dequantizes into bf16 (the f32 values rounded to nearest even, as bitsandbytes does).
    pub fn dequantize_bf16_into(&self, out: &mut [bf16]) -> Result<()> {
        self.check_out(out.len())?;
        let absmax = self.absmax.to_f32();
        blockwise4::dequantize_into(&self.packed, &absmax, self.quant_type, self.blocksize, out, blockwise4::to_bf16);
        Ok(())
    }

    /// Dequantizes into f16 (the f32 values rounded to nearest even).
    pub fn dequantize_f16_into(&self, out: &mut [f16]) -> Result<()> {
        self.check_out(out.len())?;
        let absmax = self.absmax.to_f32();
        blockwise4::dequantize_into(&self.packed, &absmax, self.quant_type, self.blocksize, out, blockwise4::to_f16);
        Ok(())
    }

    /// Dequantizes to a new f32 vector.
    pub fn dequantize_to_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.numel()];
        let absmax = self.absmax.to_f32();
        blockwise4::dequantize_into(&self.packed, &absmax, self.quant_type, self.blocksize, &mut out, blockwise4::to_f32);
        out
    }

    fn check_out(&self, len: usize) -> Result<()> {
        if len == self.numel() {
            Ok(())
        } else {
            Err(Error::LengthMismatch { what: "dequantization output".into(), expected: self.numel(), actual: len })
        }
    }

    /// Bytes held by the quantized representation (packed nibbles and quant state).
    pub fn storage_bytes(&self) -> usize {
        self.packed.len() + self.absmax.storage_bytes()
    }

    /// Packed nibbles, two per byte, first value in the high nibble: `[⌈numel/2⌉]`.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// Logical shape (HF `[out, in]` for a linear weight).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// NF4 or FP4.
    pub fn quant_type(&self) -> QuantType {
        self.quant_type
    }

    /// Values per absmax block.
    pub fn blocksize(&self) -> usize {
        self.blocksize
    }

    /// The dtype of the tensor that was quantized.
    pub fn dtype(&self) -> SourceDType {
        self.dtype
    }

    /// The per-block scales.
    pub fn absmax(&self) -> &Absmax {
        &self.absmax
    }

    /// Whether the absmax is double-quantized.
    pub fn is_double_quant(&self) -> bool {
        matches!(self.absmax, Absmax::Double(_))
    }
}

/// `∏ shape`, rejecting empty shapes and zero-sized tensors.
fn checked_numel(shape: &[usize], what: &str) -> Result<usize> {
    let invalid = |reason: &str| Error::InvalidShape { what: what.to_string(), shape: shape.to_vec(), reason: reason.into() };
    if shape.is_empty() {
        return Err(invalid("a quantized tensor needs at least one dimension"));
    }
    let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| invalid("element count overflows"))?;
    if numel == 0 {
        return Err(invalid("a quantized tensor needs at least one element"));
    }
    Ok(numel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BnbKernel;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect()
    }

    #[test]
    fn storage_is_half_a_byte_per_value_plus_state() {
        let x = ramp(128 * 64);
        let t = Nf4Tensor::quantize(&x, &[128, 64], &QuantConfig::nf4()).expect("quantize");
        assert_eq!(t.storage_bytes(), 128 * 32 + 4 * 128);
        let d = Nf4Tensor::quantize(&x, &[128, 64], &QuantConfig::nf4().with_double_quant(true)).expect("quantize");
        assert_eq!(d.storage_bytes(), 128 * 32 + 128 + 4 * (1 + 256 + 1));
    }

    #[test]
    fn shape_and_length_errors_name_the_problem() {
        let x = ramp(10);
        assert!(matches!(
            Nf4Tensor::quantize(&x, &[3, 4], &QuantConfig::nf4()),
            Err(Error::LengthMismatch { expected: 12, actual: 10, .. })
        ));
        assert!(matches!(Nf4Tensor::quantize(&[], &[0, 4], &QuantConfig::nf4()), Err(Error::InvalidShape { .. })));
        assert!(matches!(
            Nf4Tensor::quantize(&x, &[10], &QuantConfig::nf4().with_blocksize(100)),
            Err(Error::InvalidBlocksize { blocksize: 100 })
        ));
    }

    #[test]
    fn bf16_and_f16_outputs_round_the_f32_values() {
        let x = ramp(300);
        let t = Nf4Tensor::quantize(&x, &[300], &QuantConfig::fp4().with_kernel(BnbKernel::Cpu)).expect("quantize");
        let f = t.dequantize_to_vec();
        let mut b = vec![bf16::ZERO; 300];
        let mut h = vec![f16::ZERO; 300];
        t.dequantize_bf16_into(&mut b).expect("bf16");
        t.dequantize_f16_into(&mut h).expect("f16");
        for i in 0..300 {
            assert_eq!(b[i], bf16::from_f32(f[i]));
            assert_eq!(h[i], f16::from_f32(f[i]));
        }
        assert!(matches!(t.dequantize_into(&mut [0.0; 3]), Err(Error::LengthMismatch { expected: 300, actual: 3, .. })));
    }

    #[test]
    fn from_parts_checks_lengths() {
        let t = Nf4Tensor::quantize(&ramp(100), &[100], &QuantConfig::nf4()).expect("quantize");
        let bad = Nf4Tensor::from_parts(t.packed().to_vec(), vec![101], QuantType::Nf4, 64, SourceDType::F32, t.absmax().clone(), "w");
        assert!(matches!(bad, Err(Error::LengthMismatch { expected: 51, actual: 50, .. })));
        let ok = Nf4Tensor::from_parts(t.packed().to_vec(), vec![100], QuantType::Nf4, 64, SourceDType::F32, t.absmax().clone(), "w");
        assert_eq!(ok.ok().as_ref(), Some(&t));
    }
}
