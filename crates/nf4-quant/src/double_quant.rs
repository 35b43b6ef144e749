//! Double quantization of the absmax vector (QLoRA §3, "double quantization").
//!
//! For the 4-bit absmax vector `a: [m]` (f32), bitsandbytes stores
//! `offset = mean(a)` (f32), then quantizes `a - offset` blockwise to 8 bits with the signed
//! dynamic code and blocksize 256: `codes: [m]` (u8) and `nested_absmax: [⌈m/256⌉]` (f32).
//! Decoding is `a'[i] = nested_code[codes[i]] · nested_absmax[i/256] + offset`, a product then a
//! sum, each rounded to f32 (no fused multiply-add), exactly as bitsandbytes'
//! `dequantize_blockwise(...) + offset`.

use crate::config::{BnbKernel, NESTED_BLOCKSIZE};
use crate::dynamic::{dequantize_blockwise_into, dynamic_code, quantize_dynamic};
use crate::error::{Error, Result};

/// The double-quantized absmax of a 4-bit tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuant {
    /// 8-bit codes of `absmax - offset`, one per 4-bit block: `[m]`.
    pub codes: Vec<u8>,
    /// f32 scale of each nested block: `[⌈m / nested_blocksize⌉]`.
    pub nested_absmax: Vec<f32>,
    /// The 256-entry code the 8-bit values index (bitsandbytes' `nested_quant_map`).
    pub nested_code: Vec<f32>,
    /// Values per nested block (256 as bitsandbytes writes it).
    pub nested_blocksize: usize,
    /// The mean subtracted before the 8-bit quantization (`nested_offset`).
    pub offset: f32,
}

impl DoubleQuant {
    /// Double-quantizes `absmax` (finite, non-empty) as bitsandbytes' `quantize_4bit(...,
    /// compress_statistics=True)` does.
    pub fn compress(absmax: &[f32], kernel: BnbKernel) -> Self {
        let offset = mean(absmax, kernel);
        let centered: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let (codes, nested_absmax) = quantize_dynamic(&centered, NESTED_BLOCKSIZE, kernel);
        Self { codes, nested_absmax, nested_code: dynamic_code().to_vec(), nested_blocksize: NESTED_BLOCKSIZE, offset }
    }

    /// Checks the lengths against `blocks` 4-bit blocks; `what` names the tensor for errors.
    pub fn validate(&self, blocks: usize, what: &str) -> Result<()> {
        let len = |part: &str, expected: usize, actual: usize| {
            if expected == actual { Ok(()) } else { Err(Error::LengthMismatch { what: format!("{what}: {part}"), expected, actual }) }
        };
        if self.nested_blocksize == 0 {
            return Err(Error::InvalidBlocksize { blocksize: 0 });
        }
        len("absmax codes", blocks, self.codes.len())?;
        len("nested_absmax", blocks.div_ceil(self.nested_blocksize), self.nested_absmax.len())?;
        len("nested_quant_map", 256, self.nested_code.len())?;
        Ok(())
    }

    /// Decodes the absmax vector into `out: [m]` (`m == codes.len()`, checked by `validate`).
    pub fn decode_into(&self, out: &mut [f32]) {
        let mut code = [0.0f32; 256];
        code.copy_from_slice(&self.nested_code[..256]);
        dequantize_blockwise_into(&self.codes, &self.nested_absmax, &code, self.nested_blocksize, out);
        for v in out.iter_mut() {
            *v += self.offset;
        }
    }

    /// Decodes the absmax vector.
    pub fn decode(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.codes.len()];
        self.decode_into(&mut out);
        out
    }

    /// Bytes held: codes, nested absmax, the nested code and the offset.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() + 4 * (self.nested_absmax.len() + self.nested_code.len() + 1)
    }
}

/// The mean of `values` as an f32, from the f32 rounding of an f64 sum: `sum / n` on CPU
/// (`torch.mean` divides), `sum · (1/n)` on CUDA (torch's `MeanOps` multiplies by a factor).
///
/// bitsandbytes sums in f32 (cascade on CPU, a tree on GPU); when every partial sum is exact —
/// e.g. bf16-derived absmax values of a moderate count — the results agree bit for bit.
pub fn mean(values: &[f32], kernel: BnbKernel) -> f32 {
    let sum = values.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
    let n = values.len() as f32;
    match kernel {
        BnbKernel::Cpu => sum / n,
        BnbKernel::Cuda => sum * (1.0 / n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_exact_values() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 6.0], BnbKernel::Cpu), 3.0);
        assert_eq!(mean(&[1.0, 2.0, 3.0, 6.0], BnbKernel::Cuda), 3.0);
    }

    #[test]
    fn decode_is_close_to_the_input() {
        let absmax: Vec<f32> = (0..600).map(|i| 0.01 + (i as f32 * 0.37).sin().abs() * 0.2).collect();
        for kernel in [BnbKernel::Cuda, BnbKernel::Cpu] {
            let dq = DoubleQuant::compress(&absmax, kernel);
            assert!(dq.validate(600, "t").is_ok());
            assert_eq!(dq.nested_absmax.len(), 3);
            let back = dq.decode();
            for (a, b) in absmax.iter().zip(&back) {
                // 8-bit dynamic code: relative step ≤ 1.4% of the nested absmax (≤ 0.2).
                assert!((a - b).abs() <= 0.2 * 0.008, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn validate_names_the_bad_part() {
        let mut dq = DoubleQuant::compress(&[1.0; 10], BnbKernel::Cuda);
        dq.nested_absmax.push(1.0);
        match dq.validate(10, "w") {
            Err(Error::LengthMismatch { what, expected: 1, actual: 2 }) => assert_eq!(what, "w: nested_absmax"),
            other => panic!("expected LengthMismatch, got {other:?}"),
        }
    }
}
