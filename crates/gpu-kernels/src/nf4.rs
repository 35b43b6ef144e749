//! Packed 4-bit (NF4/FP4) weights on a device, and their dequantization to a dense tensor.
//!
//! Layout (bitsandbytes): a row-major `[rows, cols]` weight flattened to `n` values, two per
//! byte with the first value of a pair in the high nibble; block `b` of `blocksize` values is
//! scaled by `absmax[b]`. Double quantization stores the scales as u8 codes with a 256-entry
//! code, one f32 `nested_absmax` per `nested_blocksize` blocks and a mean `offset`:
//! `absmax[b] = nested_code[codes[b]] · nested_absmax[b / nested_blocksize] + offset`.
//!
//! # Invariant
//! [`nf4_dequantize`] returns `code[q] · absmax[b]` computed in f32 (the product and, for double
//! quantization, the nested product and the offset sum each rounded to f32, never fused), then
//! rounded once to the requested dtype — the host codec's values bit for bit, on every path.

use burn::tensor::{DType, Device, FloatDType, Int, IntDType, Tensor, TensorData};

use crate::error::{Error, Result};

/// Per-block scales on the host, as a checkpoint or the codec holds them.
#[derive(Debug, Clone, Copy)]
pub enum HostScales<'a> {
    /// One f32 per block.
    Plain(&'a [f32]),
    /// Double-quantized scales.
    Double {
        /// u8 code per block.
        codes: &'a [u8],
        /// f32 per `nested_blocksize` blocks.
        nested_absmax: &'a [f32],
        /// The 256-entry code the u8 values index.
        nested_code: &'a [f32],
        /// Blocks per nested scale (256 in bitsandbytes).
        nested_blocksize: usize,
        /// The mean added back after decoding.
        offset: f32,
    },
}

/// Per-block scales resident on a device.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per weight; boxing buys nothing
pub(crate) enum DeviceScales {
    Plain(Tensor<1>),
    Double { codes: Tensor<1, Int>, nested_absmax: Tensor<1>, nested_code: Tensor<1>, nested_blocksize: usize, offset: f32 },
}

/// The layout of a packed weight, as the backend ops of [`crate::extension::KernelBackend`] take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nf4Meta {
    /// Dense rows (`out` of a linear layer).
    pub rows: usize,
    /// Dense columns (`in`).
    pub cols: usize,
    /// Values per scale block.
    pub blocksize: usize,
    /// Blocks per nested scale (double quantization; 1 otherwise).
    pub nested_blocksize: usize,
    /// The mean added back to the decoded scales (double quantization; 0 otherwise).
    pub offset: f32,
    /// Whether the scales are double-quantized.
    pub double: bool,
    /// The dtype of the dense weight.
    pub dtype: FloatDType,
}

/// A 2-D 4-bit weight whose packed bytes and scales live on a burn device (never autodiff).
#[derive(Debug, Clone)]
pub struct PackedNf4 {
    pub(crate) packed: Tensor<1, Int>,
    pub(crate) code: Tensor<1>,
    pub(crate) scales: DeviceScales,
    pub(crate) shape: [usize; 2],
    pub(crate) blocksize: usize,
}

fn shape_err(what: &'static str, reason: String) -> Error {
    Error::Shape { what, reason }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual { Ok(()) } else { Err(shape_err(what, format!("expected {expected} elements, got {actual}"))) }
}

/// The narrowest integer dtype `device` stores and computes with.
fn byte_dtype(device: &Device) -> DType {
    [DType::U8, DType::I32, DType::I64].into_iter().find(|&d| device.supports_dtype(d)).unwrap_or(DType::I64)
}

fn bytes_on(bytes: &[u8], device: &Device) -> Tensor<1, Int> {
    let dtype = byte_dtype(device);
    Tensor::from_data(TensorData::new(bytes.to_vec(), [bytes.len()]).convert_dtype(dtype), (device, dtype))
}

fn floats_on(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), (device, DType::F32))
}

impl PackedNf4 {
    /// Uploads a packed weight to `device` (its autodiff wrapper, if any, is dropped).
    ///
    /// `code` is the 16-entry decode table (NF4 or FP4), `shape` the dense `[rows, cols]`.
    ///
    /// # Errors
    /// Lengths that do not match `shape` and `blocksize`, a blocksize that is not a positive
    /// multiple of 8, or a 256-entry nested code of another length.
    pub fn upload(
        packed: &[u8],
        scales: HostScales<'_>,
        code: &[f32; 16],
        shape: [usize; 2],
        blocksize: usize,
        device: &Device,
    ) -> Result<Self> {
        let n = shape[0] * shape[1];
        if n == 0 {
            return Err(shape_err("shape", format!("{shape:?} has no elements")));
        }
        if blocksize == 0 || !blocksize.is_multiple_of(8) {
            return Err(shape_err("blocksize", format!("{blocksize} is not a positive multiple of 8")));
        }
        check_len("packed", n.div_ceil(2), packed.len())?;
        let blocks = n.div_ceil(blocksize);
        let device = device.clone().without_autodiff();
        let scales = match scales {
            HostScales::Plain(a) => {
                check_len("absmax", blocks, a.len())?;
                DeviceScales::Plain(floats_on(a, &device))
            }
            HostScales::Double { codes, nested_absmax, nested_code, nested_blocksize, offset } => {
                if nested_blocksize == 0 {
                    return Err(shape_err("nested_blocksize", "is 0".into()));
                }
                check_len("absmax codes", blocks, codes.len())?;
                check_len("nested_absmax", blocks.div_ceil(nested_blocksize), nested_absmax.len())?;
                check_len("nested_code", 256, nested_code.len())?;
                DeviceScales::Double {
                    codes: bytes_on(codes, &device),
                    nested_absmax: floats_on(nested_absmax, &device),
                    nested_code: floats_on(nested_code, &device),
                    nested_blocksize,
                    offset,
                }
            }
        };
        Ok(Self { packed: bytes_on(packed, &device), code: floats_on(code, &device), scales, shape, blocksize })
    }

    /// Rebuilds a weight from the tensors [`Self::parts`] returned (inside backend ops).
    #[cfg(any(test, feature = "cuda"))]
    pub(crate) fn from_parts(
        packed: Tensor<1, Int>,
        code: Tensor<1>,
        absmax: Tensor<1>,
        qcodes: Tensor<1, Int>,
        nested_code: Tensor<1>,
        meta: Nf4Meta,
    ) -> Self {
        let scales = if meta.double {
            DeviceScales::Double {
                codes: qcodes,
                nested_absmax: absmax,
                nested_code,
                nested_blocksize: meta.nested_blocksize,
                offset: meta.offset,
            }
        } else {
            DeviceScales::Plain(absmax)
        };
        Self { packed, code, scales, shape: [meta.rows, meta.cols], blocksize: meta.blocksize }
    }

    /// The packed parts as the backend ops take them ([`crate::extension::Nf4Parts`] of the
    /// dispatch backend), the dense weight in `dtype`; `absmax` is the nested absmax under double
    /// quantization, and unused slots repeat another tensor.
    #[cfg(any(test, feature = "cuda"))]
    pub(crate) fn parts(&self, dtype: FloatDType) -> crate::extension::Nf4Parts<burn::backend::Dispatch> {
        let [rows, cols] = self.shape;
        let meta =
            |nested_blocksize, offset, double| Nf4Meta { rows, cols, blocksize: self.blocksize, nested_blocksize, offset, double, dtype };
        let (absmax, qcodes, nested_code, meta) = match &self.scales {
            DeviceScales::Plain(a) => (a.clone(), self.packed.clone(), a.clone(), meta(1, 0.0, false)),
            DeviceScales::Double { codes, nested_absmax, nested_code, nested_blocksize, offset } => {
                (nested_absmax.clone(), codes.clone(), nested_code.clone(), meta(*nested_blocksize, *offset, true))
            }
        };
        crate::extension::Nf4Parts {
            packed: self.packed.clone().into_dispatch(),
            code: self.code.clone().into_dispatch(),
            absmax: absmax.into_dispatch(),
            qcodes: qcodes.into_dispatch(),
            nested_code: nested_code.into_dispatch(),
            meta,
        }
    }

    /// The dense shape `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// Values per scale block.
    pub fn blocksize(&self) -> usize {
        self.blocksize
    }

    /// Whether the scales are double-quantized.
    pub fn is_double_quant(&self) -> bool {
        matches!(self.scales, DeviceScales::Double { .. })
    }

    /// The device holding the tensors.
    pub fn device(&self) -> Device {
        self.packed.device()
    }

    /// Bytes held on the device (packed values, scales, codes).
    pub fn storage_bytes(&self) -> usize {
        let ints = |t: &Tensor<1, Int>| t.shape().num_elements() * t.dtype().size();
        let floats = |t: &Tensor<1>| t.shape().num_elements() * 4;
        ints(&self.packed)
            + floats(&self.code)
            + match &self.scales {
                DeviceScales::Plain(a) => floats(a),
                DeviceScales::Double { codes, nested_absmax, nested_code, .. } => ints(codes) + floats(nested_absmax) + floats(nested_code),
            }
    }
}

/// The dense `[rows, cols]` weight of `w` in `dtype`, on `w`'s device, without autodiff (a
/// constant under an autodiff device: no gradient reaches a quantized weight).
///
/// On CUDA (`cuda` feature) one fused kernel reads the packed bytes and scales and writes the
/// dense weight; elsewhere it is composed from burn ops. Both give the codec's values bit for bit.
pub fn nf4_dequantize(w: &PackedNf4, dtype: FloatDType) -> Tensor<2> {
    #[cfg(feature = "cuda")]
    if crate::gemm::is_cuda(&w.device())
        && let Some(dense) = crate::cuda::nf4::dequantize(w, dtype)
    {
        return dense;
    }
    nf4_dequantize_unfused(w, dtype)
}

/// `y = x · Wᵀ` for a packed weight `w: [out, in]`, the dense weight in `x`'s float dtype.
///
/// On CUDA (`cuda` feature): the fused dequantization kernel, then cuBLASLt; under autodiff the
/// backward keeps only the packed weight and dequantizes again for `dx = dy · W` (no dense
/// weight stays alive between forward and backward — the QLoRA memory budget). No gradient
/// reaches `w`. Elsewhere: [`nf4_dequantize`] then [`crate::linear`], whose backward keeps the
/// dense weight.
///
/// # Shapes
/// - `x`: `[..., in]` → `[..., out]`.
///
/// # Panics
/// If `x`'s last dimension is not `in`, or a CUDA library call fails.
pub fn nf4_linear<const D: usize>(x: Tensor<D>, w: &PackedNf4) -> Tensor<D> {
    packed_product(x, w, true)
}

/// [`nf4_linear`] for a product that enters a computation **by its gradient only** (e.g. a
/// recomputed forward whose output value nobody reads: see `sft_trainer::recompute`).
///
/// Where [`nf4_linear`] takes the kernel path (CUDA), the value is **zeros** and neither the
/// dequantization nor the product runs; the backward is [`nf4_linear`]'s (`dx = dy · W`, `W`
/// dequantized then). Elsewhere it is [`nf4_linear`] itself (value and gradient). Either way
/// `x`'s gradient is the product's.
///
/// # Shapes
/// - `x`: `[..., in]` → `[..., out]`.
///
/// # Panics
/// As [`nf4_linear`].
pub fn nf4_linear_gradient_only<const D: usize>(x: Tensor<D>, w: &PackedNf4) -> Tensor<D> {
    packed_product(x, w, false)
}

/// The compute dtype named by a tensor dtype (f32 for anything but bf16/f16).
pub(crate) fn float_dtype(dtype: DType) -> FloatDType {
    match dtype {
        DType::BF16 => FloatDType::BF16,
        DType::F16 => FloatDType::F16,
        _ => FloatDType::F32,
    }
}

/// `x · Wᵀ` (`value`), or its zeros with the product's backward (`!value`) on the kernel path.
fn packed_product<const D: usize>(x: Tensor<D>, w: &PackedNf4, value: bool) -> Tensor<D> {
    let dims = x.dims();
    let [out, inp] = w.shape;
    assert_eq!(dims[D - 1], inp, "nf4_linear: x is {dims:?} but the weight is [{out}, {inp}]");
    let dtype = float_dtype(x.dtype());
    if !crate::gemm::uses_extension(&x.device()) {
        return crate::linear(x, nf4_dequantize(w, dtype));
    }
    #[cfg(any(test, feature = "cuda"))]
    {
        use crate::extension::KernelBackend;
        use burn::backend::Dispatch;
        let rows: usize = dims[..D - 1].iter().product();
        let w = w.parts(dtype);
        let op = if value { <Dispatch as KernelBackend>::nf4_linear } else { <Dispatch as KernelBackend>::nf4_linear_gradient_only };
        let y = op(x.reshape([rows, inp]).into_dispatch(), w.packed, w.code, w.absmax, w.qcodes, w.nested_code, w.meta);
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        Tensor::<2>::from_dispatch(y).reshape(out_dims)
    }
    #[cfg(not(any(test, feature = "cuda")))]
    {
        let _ = value;
        unreachable!("uses_extension is false without the cuda feature")
    }
}

/// `values[i] · scales[i / blocksize]` for `i < len`, padding a partial last block.
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
    values.reshape([blocks, blocksize]).mul(scales.reshape([blocks, 1])).reshape([padded]).narrow(0, 0, len)
}

/// The portable (unfused) path of [`nf4_dequantize`] on any device: nibbles by shifts and masks,
/// a `select` on the code, block scaling, each a separate burn op (so nothing is contracted).
/// Bit-identical to the kernel; public for comparisons.
pub fn nf4_dequantize_unfused(w: &PackedNf4, dtype: FloatDType) -> Tensor<2> {
    let [rows, cols] = w.shape;
    let n = rows * cols;
    let bytes = w.packed.shape().num_elements();
    let hi = w.packed.clone().bitwise_right_shift_scalar(4);
    let lo = w.packed.clone().bitwise_and_scalar(0x0f);
    let idx: Tensor<1, Int> = Tensor::stack::<2>(vec![hi, lo], 1).reshape([2 * bytes]).cast(IntDType::I32);
    let values = w.code.clone().select(0, idx);
    let scales = match &w.scales {
        DeviceScales::Plain(a) => a.clone(),
        DeviceScales::Double { codes, nested_absmax, nested_code, nested_blocksize, offset } => {
            let blocks = codes.shape().num_elements();
            let decoded = nested_code.clone().select(0, codes.clone().cast(IntDType::I32));
            scale_blocks(decoded, nested_absmax.clone(), *nested_blocksize, blocks).add_scalar(*offset)
        }
    };
    scale_blocks(values, scales, w.blocksize, n).reshape([rows, cols]).cast(dtype)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nf4_quant::{Absmax, Nf4Tensor, QuantConfig};

    /// Deterministic values with a spread of magnitudes and some exact zeros.
    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(40_503));
                if h.is_multiple_of(61) { 0.0 } else { ((h >> 7) % 40_001) as f32 / 20_000.0 - 1.0 }
            })
            .collect()
    }

    pub(crate) fn upload(t: &Nf4Tensor, device: &Device) -> PackedNf4 {
        let shape = [t.shape()[0], t.shape()[1]];
        let code = t.quant_type().decode_table();
        match t.absmax() {
            Absmax::Plain(a) => PackedNf4::upload(t.packed(), HostScales::Plain(a), code, shape, t.blocksize(), device),
            Absmax::Double(d) => PackedNf4::upload(
                t.packed(),
                HostScales::Double {
                    codes: &d.codes,
                    nested_absmax: &d.nested_absmax,
                    nested_code: &d.nested_code,
                    nested_blocksize: d.nested_blocksize,
                    offset: d.offset,
                },
                code,
                shape,
                t.blocksize(),
                device,
            ),
        }
        .expect("upload")
    }

    fn cases() -> Vec<Nf4Tensor> {
        let mut out = Vec::new();
        for (rows, cols, bs) in [(7usize, 9usize, 32usize), (96, 100, 64), (5, 70, 64), (3, 200, 4096), (64, 64, 128)] {
            for cfg in [QuantConfig::nf4(), QuantConfig::nf4().with_double_quant(true), QuantConfig::fp4().with_double_quant(true)] {
                let x = values(rows * cols, (rows * 31 + cols) as u32);
                out.push(Nf4Tensor::quantize(&x, &[rows, cols], &cfg.with_blocksize(bs)).expect("quantize"));
            }
        }
        out
    }

    #[test]
    fn ops_path_equals_the_codec_bit_for_bit() {
        let device = Device::flex();
        for t in cases() {
            let w = upload(&t, &device);
            let want: Vec<u32> = t.dequantize_to_vec().iter().map(|v| v.to_bits()).collect();
            let got: Vec<u32> =
                nf4_dequantize(&w, FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "f32 {:?} double={}", t.shape(), t.is_double_quant());

            let mut want16 = vec![half::bf16::ZERO; t.numel()];
            t.dequantize_bf16_into(&mut want16).expect("bf16");
            let got16 = nf4_dequantize(&w, FloatDType::BF16).into_data().try_to_vec::<half::bf16>().expect("bf16");
            assert!(got16.iter().zip(&want16).all(|(a, b)| a.to_bits() == b.to_bits()), "bf16 {:?}", t.shape());
        }
    }

    #[test]
    fn nf4_linear_matches_dense_linear_and_its_input_gradient() {
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        for double in [false, true] {
            let cfg = QuantConfig::nf4().with_double_quant(double);
            let t = Nf4Tensor::quantize(&values(24 * 64, 5), &[24, 64], &cfg.with_blocksize(32)).expect("quantize");
            let w = upload(&t, &plain);
            let x0 = Tensor::<3>::random([2, 3, 64], burn::tensor::Distribution::Normal(0.0, 1.0), &plain);
            let g0 = Tensor::<3>::random([2, 3, 24], burn::tensor::Distribution::Normal(0.0, 1.0), &plain);
            let dense = Tensor::<2>::from_data(TensorData::new(t.dequantize_to_vec(), [24, 64]), &device);

            let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let y = nf4_linear(x.clone(), &w);
            let grads = (y.clone() * Tensor::from_data(g0.to_data(), &device)).sum().backward();
            let dx = x.grad(&grads).expect("dx");

            let xr = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let yr = burn::tensor::module::linear(xr.clone(), dense.transpose(), None);
            let grads = (yr.clone() * Tensor::from_data(g0.to_data(), &device)).sum().backward();
            let tol = burn::tensor::Tolerance::<f32>::rel_abs(1e-5, 1e-5);
            y.into_data().assert_approx_eq::<f32>(&yr.into_data(), tol);
            dx.into_data().assert_approx_eq::<f32>(&xr.grad(&grads).expect("ref dx").into_data(), tol);
        }
    }

    #[test]
    fn gradient_only_product_is_zeros_with_the_products_input_gradient() {
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let t = Nf4Tensor::quantize(&values(24 * 64, 9), &[24, 64], &QuantConfig::nf4().with_blocksize(32)).expect("quantize");
        let w = upload(&t, &plain);
        let x0 = Tensor::<3>::random([2, 3, 64], burn::tensor::Distribution::Normal(0.0, 1.0), &plain);
        let g0 = Tensor::<3>::random([2, 3, 24], burn::tensor::Distribution::Normal(0.0, 1.0), &plain);
        let run = |value: bool| {
            let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let y = if value { nf4_linear(x.clone(), &w) } else { nf4_linear_gradient_only(x.clone(), &w) };
            let grads = (y.clone() * Tensor::from_data(g0.to_data(), &device)).sum().backward();
            (y.into_data().try_to_vec::<f32>().expect("f32"), x.grad(&grads).expect("dx").into_data().try_to_vec::<f32>().expect("f32"))
        };
        let ((y, dx), (y0, dx0)) = (run(true), run(false));
        assert_eq!(y0.len(), 2 * 3 * 24);
        assert!(y0.iter().all(|&v| v == 0.0), "the value is not computed");
        assert!(y.iter().any(|&v| v != 0.0));
        assert!(dx.iter().zip(&dx0).all(|(a, b)| a.to_bits() == b.to_bits()), "the same backward");
    }

    #[test]
    fn upload_checks_lengths() {
        let device = Device::flex();
        let code = [0.0f32; 16];
        let err = PackedNf4::upload(&[0u8; 3], HostScales::Plain(&[1.0]), &code, [2, 4], 64, &device);
        assert!(matches!(err, Err(Error::Shape { what: "packed", .. })));
        let err = PackedNf4::upload(&[0u8; 4], HostScales::Plain(&[1.0, 2.0]), &code, [2, 4], 64, &device);
        assert!(matches!(err, Err(Error::Shape { what: "absmax", .. })));
        let err = PackedNf4::upload(&[0u8; 4], HostScales::Plain(&[1.0]), &code, [2, 4], 12, &device);
        assert!(matches!(err, Err(Error::Shape { what: "blocksize", .. })));
        let ok = PackedNf4::upload(&[0u8; 4], HostScales::Plain(&[1.0]), &code, [2, 4], 64, &device).expect("valid");
        assert_eq!(ok.storage_bytes(), 4 + 64 + 4);
    }
}
