//! The seam between packed 4-bit weights and dense burn tensors.
//!
//! [`Dequantize::dequantize`] returns the dense `[rows, cols]` weight `W[r, c] = code[q] · absmax`
//! in the requested float dtype, computed in f32 and rounded once. Two implementations:
//!
//! - host: [`Nf4Tensor`] decodes with the Rust codec, then uploads (`Tensor::from_data`); best on
//!   CPU devices, where "upload" is a copy.
//! - device: [`DeviceNf4Tensor`] keeps the packed bytes and quant state as burn tensors on the
//!   device and decodes with burn ops only (shift/and, `select` on the codebook, block scaling,
//!   double-quant decode). It serves every backend until a fused kernel replaces it.
//!
//! Both give the codec's values bit for bit (f32 products `code[q] · absmax`, the nested decode
//! `(code8[q] · nested_absmax) + offset` rounded after each step). The tensors they return are
//! created without autodiff: under an autodiff device they act as constants, so no gradient can
//! reach the weights.

use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use crate::config::SourceDType;
pub use crate::device::DeviceNf4Tensor;
use crate::error::{Error, Result};
use crate::tensor::Nf4Tensor;

/// Which implementation decodes the weights of an [`crate::Nf4Linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DequantPath {
    /// Keep packed bytes in host memory; decode with the Rust codec and upload.
    Host,
    /// Keep packed bytes on the device; decode with burn tensor ops.
    Device,
}

impl DequantPath {
    /// [`DequantPath::Host`] for burn's CPU backends (flex, ndarray), [`DequantPath::Device`]
    /// otherwise. Decided from the device's name, since libraries do not see which backends the
    /// binary enabled.
    pub fn for_device(device: &Device) -> Self {
        let name = format!("{device:?}");
        if name.contains("Flex") || name.contains("NdArray") { DequantPath::Host } else { DequantPath::Device }
    }
}

/// Produces the dense weight of a quantized 2-D tensor.
pub trait Dequantize {
    /// Dense `[rows, cols]` weight on `device` (without autodiff) in `dtype`.
    ///
    /// # Errors
    /// A tensor that is not 2-D.
    fn dequantize(&self, device: &Device, dtype: FloatDType) -> Result<Tensor<2>>;
}

pub(crate) fn dims2(shape: &[usize], what: &str) -> Result<[usize; 2]> {
    match shape {
        [r, c] => Ok([*r, *c]),
        _ => Err(Error::InvalidShape { what: what.to_string(), shape: shape.to_vec(), reason: "expected a 2-D [out, in] weight".into() }),
    }
}

impl Dequantize for Nf4Tensor {
    fn dequantize(&self, device: &Device, dtype: FloatDType) -> Result<Tensor<2>> {
        let shape = dims2(self.shape(), "dequantize")?;
        Ok(host_dense(self, shape, device, dtype))
    }
}

/// The host path for a tensor already known to have `shape`: decode with the codec into the
/// weight's original dtype (bitsandbytes' `dequantize_4bit` returns `quant_state.dtype`, so a
/// bf16 checkpoint's weights are rounded to bf16 before any matmul), upload, cast to `dtype`.
pub(crate) fn host_dense(tensor: &Nf4Tensor, shape: [usize; 2], device: &Device, dtype: FloatDType) -> Tensor<2> {
    let device = device.clone().without_autodiff();
    let n = tensor.numel();
    let decode = match (tensor.dtype(), dtype) {
        (SourceDType::Bf16, _) => FloatDType::BF16,
        (SourceDType::F16, _) => FloatDType::F16,
        (SourceDType::F32, d) => d,
    };
    let data = match decode {
        FloatDType::BF16 => {
            let mut out = vec![half::bf16::ZERO; n];
            crate::blockwise4::dequantize_into(
                tensor.packed(),
                &tensor.absmax().to_f32(),
                tensor.quant_type(),
                tensor.blocksize(),
                &mut out,
                crate::blockwise4::to_bf16,
            );
            TensorData::new(out, shape)
        }
        FloatDType::F16 => {
            let mut out = vec![half::f16::ZERO; n];
            crate::blockwise4::dequantize_into(
                tensor.packed(),
                &tensor.absmax().to_f32(),
                tensor.quant_type(),
                tensor.blocksize(),
                &mut out,
                crate::blockwise4::to_f16,
            );
            TensorData::new(out, shape)
        }
        _ => TensorData::new(tensor.dequantize_to_vec(), shape),
    };
    let data_dtype = data.dtype();
    let dense: Tensor<2> = Tensor::from_data(data, (&device, data_dtype));
    dense.cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BnbKernel, QuantConfig};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A deterministic spread of magnitudes, with a few exact zeros.
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97));
                if h.is_multiple_of(53) { 0.0 } else { ((h >> 8) % 20_001) as f32 / 10_000.0 - 1.0 }
            })
            .collect()
    }

    fn cases() -> Vec<(Nf4Tensor, &'static str)> {
        let mut out = Vec::new();
        for (rows, cols, bs) in [(7usize, 9usize, 32usize), (96, 100, 32), (5, 70, 64), (3, 200, 4096)] {
            for cfg in [
                QuantConfig::nf4(),
                QuantConfig::nf4().with_double_quant(true),
                QuantConfig::fp4().with_double_quant(true).with_kernel(BnbKernel::Cpu),
            ] {
                let x = values(rows * cols, (rows * cols) as u32);
                let t = Nf4Tensor::quantize(&x, &[rows, cols], &cfg.with_blocksize(bs)).expect("quantize");
                out.push((t, "case"));
            }
        }
        out
    }

    fn bits_f32(t: Tensor<2>) -> Vec<u32> {
        t.into_data().try_into_vec_as::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn host_and_device_paths_equal_the_codec_bit_for_bit() {
        let device = Device::flex();
        for (t, _) in cases() {
            let want: Vec<u32> = t.dequantize_to_vec().iter().map(|v| v.to_bits()).collect();
            let host = t.dequantize(&device, FloatDType::F32).expect("host");
            assert_eq!(bits_f32(host), want, "host {:?}", t.shape());
            let dev = DeviceNf4Tensor::upload(&t, &device).expect("upload");
            let dense = dev.dequantize(&device, FloatDType::F32).expect("device");
            assert_eq!(bits_f32(dense), want, "device {:?} dq={}", t.shape(), t.is_double_quant());
        }
    }

    #[test]
    fn bf16_weights_round_the_same_on_both_paths() {
        let device = Device::flex();
        for (t, _) in cases() {
            let mut want = vec![half::bf16::ZERO; t.numel()];
            t.dequantize_bf16_into(&mut want).expect("bf16");
            let want: Vec<u16> = want.iter().map(|v| v.to_bits()).collect();
            let read = |x: Tensor<2>| -> Vec<u16> {
                x.into_data().try_into_vec_as::<half::bf16>().expect("bf16").iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(read(t.dequantize(&device, FloatDType::BF16).expect("host")), want);
            let dev = DeviceNf4Tensor::upload(&t, &device).expect("upload");
            assert_eq!(read(dev.dequantize(&device, FloatDType::BF16).expect("device")), want);
        }
    }

    #[test]
    fn cpu_backends_take_the_host_path() {
        assert_eq!(DequantPath::for_device(&Device::flex()), DequantPath::Host);
        assert_eq!(DequantPath::for_device(&Device::flex().autodiff()), DequantPath::Host);
    }

    #[test]
    fn non_2d_tensors_are_refused() {
        let t = Nf4Tensor::quantize(&values(64, 1), &[4, 4, 4], &QuantConfig::nf4()).expect("quantize");
        assert!(matches!(t.dequantize(&Device::flex(), FloatDType::F32), Err(Error::InvalidShape { .. })));
        assert!(matches!(DeviceNf4Tensor::upload(&t, &Device::flex()), Err(Error::InvalidShape { .. })));
    }
}
