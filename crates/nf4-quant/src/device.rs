//! The device path of the dequantization seam: packed bytes and quant state held as burn tensors
//! on the device, decoded with burn ops only.
//!
//! `W[r, c] = code[(byte >> 4) or (byte & 15)] · absmax[i / B]` with `i = r · cols + c`; under double
//! quant `absmax[b] = code8[q8[b]] · nested_absmax[b / 256] + offset`. Every product and sum is
//! an f32 op rounded on its own, so the result equals the host codec bit for bit (checked on flex).

use burn::tensor::{DType, Device, FloatDType, Int, IntDType, Tensor, TensorData};

use crate::config::{QuantType, SourceDType};
use crate::dequant::{Dequantize, dims2};
use crate::double_quant::DoubleQuant;
use crate::error::{Error, Result};
use crate::tensor::{Absmax, Nf4Tensor};

/// Double-quantized absmax resident on a device.
#[derive(Debug, Clone)]
struct DeviceDoubleQuant {
    /// 8-bit codes `[blocks]`.
    codes: Tensor<1, Int>,
    /// `[⌈blocks / nested_blocksize⌉]` f32.
    nested_absmax: Tensor<1>,
    /// `[256]` f32.
    nested_code: Tensor<1>,
    nested_blocksize: usize,
    offset: f32,
}

#[derive(Debug, Clone)]
// One per layer: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum DeviceAbsmax {
    Plain(Tensor<1>),
    Double(Box<DeviceDoubleQuant>),
}

/// A 2-D 4-bit tensor whose packed bytes and quant state live on a burn device.
///
/// Holds `packed: [⌈n/2⌉]` (u8 where the device supports it), the 16-entry code (f32) and the
/// absmax (f32 `[blocks]`, or u8 codes + nested f32 scales); nothing dense.
#[derive(Debug, Clone)]
pub struct DeviceNf4Tensor {
    packed: Tensor<1, Int>,
    code: Tensor<1>,
    absmax: DeviceAbsmax,
    shape: [usize; 2],
    blocksize: usize,
    quant_type: QuantType,
    dtype: SourceDType,
}

/// The narrowest integer dtype the device stores bytes in.
fn byte_dtype(device: &Device) -> DType {
    [DType::U8, DType::I32, DType::I64].into_iter().find(|&d| device.supports_dtype(d)).unwrap_or(DType::I64)
}

fn f32_tensor(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), (device, DType::F32))
}

fn byte_tensor(bytes: &[u8], device: &Device) -> Tensor<1, Int> {
    let dtype = byte_dtype(device);
    let data = TensorData::new(bytes.to_vec(), [bytes.len()]).convert_dtype(dtype);
    Tensor::from_data(data, (device, dtype))
}

impl DeviceNf4Tensor {
    /// Uploads a 2-D quantized tensor's packed bytes and quant state to `device` (without
    /// autodiff).
    ///
    /// # Errors
    /// A tensor that is not 2-D.
    pub fn upload(tensor: &Nf4Tensor, device: &Device) -> Result<Self> {
        let shape = dims2(tensor.shape(), "upload")?;
        let device = device.clone().without_autodiff();
        let absmax = match tensor.absmax() {
            Absmax::Plain(a) => DeviceAbsmax::Plain(f32_tensor(a, &device)),
            Absmax::Double(d) => DeviceAbsmax::Double(Box::new(DeviceDoubleQuant {
                codes: byte_tensor(&d.codes, &device),
                nested_absmax: f32_tensor(&d.nested_absmax, &device),
                nested_code: f32_tensor(&d.nested_code, &device),
                nested_blocksize: d.nested_blocksize,
                offset: d.offset,
            })),
        };
        Ok(Self {
            packed: byte_tensor(tensor.packed(), &device),
            code: f32_tensor(tensor.quant_type().decode_table(), &device),
            absmax,
            shape,
            blocksize: tensor.blocksize(),
            quant_type: tensor.quant_type(),
            dtype: tensor.dtype(),
        })
    }

    /// Reads the packed bytes and quant state back to the host (e.g. to save a checkpoint).
    ///
    /// # Errors
    /// The backend fails to read a tensor back.
    pub fn download(&self) -> Result<Nf4Tensor> {
        let absmax = match &self.absmax {
            DeviceAbsmax::Plain(a) => Absmax::Plain(read_f32(a, "absmax")?),
            DeviceAbsmax::Double(d) => Absmax::Double(DoubleQuant {
                codes: read_bytes(&d.codes, "absmax codes")?,
                nested_absmax: read_f32(&d.nested_absmax, "nested_absmax")?,
                nested_code: read_f32(&d.nested_code, "nested_quant_map")?,
                nested_blocksize: d.nested_blocksize,
                offset: d.offset,
            }),
        };
        Nf4Tensor::from_parts(
            read_bytes(&self.packed, "packed")?,
            self.shape.to_vec(),
            self.quant_type,
            self.blocksize,
            self.dtype,
            absmax,
            "download",
        )
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// NF4 or FP4.
    pub fn quant_type(&self) -> QuantType {
        self.quant_type
    }

    /// The device holding the tensors.
    pub fn device(&self) -> Device {
        self.packed.device()
    }

    /// Moves every tensor to `device` (without autodiff).
    pub fn to_device(self, device: &Device) -> Self {
        let device = device.clone().without_autodiff();
        let absmax = match self.absmax {
            DeviceAbsmax::Plain(a) => DeviceAbsmax::Plain(a.to_device(&device)),
            DeviceAbsmax::Double(d) => {
                let DeviceDoubleQuant { codes, nested_absmax, nested_code, nested_blocksize, offset } = *d;
                DeviceAbsmax::Double(Box::new(DeviceDoubleQuant {
                    codes: codes.to_device(&device),
                    nested_absmax: nested_absmax.to_device(&device),
                    nested_code: nested_code.to_device(&device),
                    nested_blocksize,
                    offset,
                }))
            }
        };
        Self { packed: self.packed.to_device(&device), code: self.code.to_device(&device), absmax, ..self }
    }

    /// Bytes held on the device.
    pub fn storage_bytes(&self) -> usize {
        let bytes = |t: &Tensor<1, Int>| t.shape().num_elements() * t.dtype().size();
        let floats = |t: &Tensor<1>| t.shape().num_elements() * 4;
        bytes(&self.packed)
            + floats(&self.code)
            + match &self.absmax {
                DeviceAbsmax::Plain(a) => floats(a),
                DeviceAbsmax::Double(d) => bytes(&d.codes) + floats(&d.nested_absmax) + floats(&d.nested_code) + 4,
            }
    }

    /// Per-block f32 scales `[blocks]`: plain, or `code8[q] · nested_absmax[i/256] + offset`.
    fn absmax_f32(&self) -> Tensor<1> {
        match &self.absmax {
            DeviceAbsmax::Plain(a) => a.clone(),
            DeviceAbsmax::Double(d) => {
                let blocks = d.codes.shape().num_elements();
                let idx = d.codes.clone().cast(IntDType::I32);
                let vals = d.nested_code.clone().select(0, idx);
                scale_blocks(vals, d.nested_absmax.clone(), d.nested_blocksize, blocks).add_scalar(d.offset)
            }
        }
    }
}

/// `values[i] · scales[i / blocksize]` for `i < len`, padding the last block if partial.
fn scale_blocks(values: Tensor<1>, scales: Tensor<1>, blocksize: usize, len: usize) -> Tensor<1> {
    let blocks = scales.shape().num_elements();
    let padded = blocks * blocksize;
    let have = values.shape().num_elements();
    let device = values.device();
    let values = if have < padded {
        Tensor::cat(vec![values, Tensor::zeros([padded - have], (&device, DType::F32))], 0)
    } else {
        values.narrow(0, 0, padded)
    };
    let scaled = values.reshape([blocks, blocksize]).mul(scales.reshape([blocks, 1]));
    scaled.reshape([padded]).narrow(0, 0, len)
}

fn read_f32(t: &Tensor<1>, what: &str) -> Result<Vec<f32>> {
    let err = |e: String| Error::TensorRead { what: what.to_string(), reason: e };
    t.try_to_data().map_err(|e| err(format!("{e:?}")))?.try_into_vec_as::<f32>().map_err(|e| err(format!("{e:?}")))
}

fn read_bytes(t: &Tensor<1, Int>, what: &str) -> Result<Vec<u8>> {
    let err = |e: String| Error::TensorRead { what: what.to_string(), reason: e };
    t.try_to_data().map_err(|e| err(format!("{e:?}")))?.try_into_vec_as::<u8>().map_err(|e| err(format!("{e:?}")))
}

impl Dequantize for DeviceNf4Tensor {
    fn dequantize(&self, device: &Device, dtype: FloatDType) -> Result<Tensor<2>> {
        Ok(self.dense(device, dtype))
    }
}

impl DeviceNf4Tensor {
    /// The device path: decode with burn ops where the bytes live, then move to `device`.
    pub(crate) fn dense(&self, device: &Device, dtype: FloatDType) -> Tensor<2> {
        let [rows, cols] = self.shape;
        let n = rows * cols;
        let bytes = self.packed.shape().num_elements();
        // Nibbles: high half first. [bytes] → [bytes, 2] → [2·bytes].
        let hi = self.packed.clone().bitwise_right_shift_scalar(4);
        let lo = self.packed.clone().bitwise_and_scalar(0x0f);
        let idx: Tensor<1, Int> = Tensor::stack::<2>(vec![hi, lo], 1).reshape([2 * bytes]).cast(IntDType::I32);
        let values = self.code.clone().select(0, idx);
        let dense = scale_blocks(values, self.absmax_f32(), self.blocksize, n).reshape([rows, cols]);
        let target = device.clone().without_autodiff();
        let dense = if dense.device() == target { dense } else { dense.to_device(&target) };
        // bitsandbytes' dequantize_4bit returns the weight's original dtype; round through it.
        let dense = match self.dtype {
            SourceDType::F32 => dense,
            SourceDType::Bf16 => dense.cast(FloatDType::BF16),
            SourceDType::F16 => dense.cast(FloatDType::F16),
        };
        dense.cast(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuantConfig;

    fn sample(double: bool) -> Nf4Tensor {
        let x: Vec<f32> = (0..96 * 100).map(|i| ((i * 7_919) % 2_001) as f32 / 1_000.0 - 1.0).collect();
        Nf4Tensor::quantize(&x, &[96, 100], &QuantConfig::nf4().with_blocksize(32).with_double_quant(double)).expect("quantize")
    }

    #[test]
    fn device_copy_is_packed_and_downloads_unchanged() {
        let device = Device::flex();
        for t in [sample(false), sample(true)] {
            let dev = DeviceNf4Tensor::upload(&t, &device).expect("upload");
            assert_eq!(dev.download().expect("download"), t);
            // flex stores the bytes as u8: device storage = packed + state + the 16-entry code.
            assert!(device.supports_dtype(DType::U8));
            assert_eq!(dev.storage_bytes(), t.storage_bytes() + 64);
        }
    }
}
