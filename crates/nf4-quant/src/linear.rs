//! [`Nf4Linear`]: a frozen linear layer over 4-bit weights (QLoRA's base projection).
//!
//! `y = x · Wᵀ + b` with `x: [..., in]`, `W: [out, in]` (HF layout) dequantized on the fly in
//! every forward, `b: [out]`. The layer keeps only the packed weights; the dense `W` exists for
//! the duration of one forward (and, under autodiff, until the backward that needs it for
//! `∂L/∂x = ∂L/∂y · W`). `W` and `b` are constants: gradients reach the input, never the layer.

use std::sync::Arc;

use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use half::{bf16, f16};

use crate::config::QuantConfig;
use crate::dequant::{DequantPath, DeviceNf4Tensor};
use crate::error::{Error, Result};
use crate::tensor::{Absmax, Nf4Tensor};
use crate::weight::{Nf4Weight, Storage};

/// How an [`Nf4Linear`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nf4LinearConfig {
    /// dtype of the dequantized weight and of the matmul (bitsandbytes' `compute_dtype`): f32 on
    /// CPU, bf16 on GPUs. The input is cast to it and the output cast back to the input's dtype.
    pub compute_dtype: FloatDType,
    /// Which dequantization implementation to use; `None` picks [`DequantPath::for_device`].
    pub path: Option<DequantPath>,
}

impl Default for Nf4LinearConfig {
    /// f32 compute, path chosen from the device.
    fn default() -> Self {
        Self { compute_dtype: FloatDType::F32, path: None }
    }
}

impl Nf4LinearConfig {
    /// Sets the compute dtype.
    pub fn with_compute_dtype(mut self, dtype: FloatDType) -> Self {
        self.compute_dtype = dtype;
        self
    }

    /// Forces a dequantization path.
    pub fn with_path(mut self, path: DequantPath) -> Self {
        self.path = Some(path);
        self
    }
}

/// A frozen linear layer whose weight is stored in 4 bits (bitsandbytes' `Linear4bit`).
///
/// Same call signature as burn's `Linear::forward`. Holds the packed weight (host or device, see
/// [`DequantPath`]) and an optional frozen bias; it has no trainable parameters.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct Nf4Linear {
    /// The packed `[out, in]` weight.
    pub weight: Nf4Weight,
    /// Optional bias `[out]`, frozen.
    pub bias: Option<Param<Tensor<1>>>,
    /// On CUDA devices: the packed weight resident on the GPU, decoded by a fused kernel in a
    /// forward whose backward decodes again (no dense weight is kept between the two).
    #[module(skip)]
    pub gpu: Option<gpu_kernels::PackedNf4>,
}

/// The packed weight and its scales on a CUDA device, for the fused kernels.
fn upload_gpu(weight: &Nf4Tensor, shape: [usize; 2], device: &Device) -> Result<gpu_kernels::PackedNf4> {
    let code = weight.quant_type().decode_table();
    let fail = |e: gpu_kernels::Error| Error::InvalidShape { what: "GPU upload".into(), shape: shape.to_vec(), reason: e.to_string() };
    match weight.absmax() {
        Absmax::Plain(v) => {
            gpu_kernels::PackedNf4::upload(weight.packed(), gpu_kernels::HostScales::Plain(v), code, shape, weight.blocksize(), device)
                .map_err(fail)
        }
        Absmax::Double(d) => {
            let scales = gpu_kernels::HostScales::Double {
                codes: &d.codes,
                nested_absmax: &d.nested_absmax,
                nested_code: &d.nested_code,
                nested_blocksize: d.nested_blocksize,
                offset: d.offset,
            };
            gpu_kernels::PackedNf4::upload(weight.packed(), scales, code, shape, weight.blocksize(), device).map_err(fail)
        }
    }
}

impl Nf4Linear {
    /// Wraps a quantized `[out, in]` weight. `device` is where forward runs (and, on the device
    /// path, where the packed bytes are uploaded).
    ///
    /// # Errors
    /// A weight that is not 2-D, or a bias whose length is not `out`.
    pub fn new(weight: Nf4Tensor, bias: Option<Tensor<1>>, device: &Device, config: &Nf4LinearConfig) -> Result<Self> {
        let shape = match weight.shape() {
            &[o, i] => [o, i],
            other => {
                return Err(Error::InvalidShape {
                    what: "Nf4Linear weight".into(),
                    shape: other.to_vec(),
                    reason: "expected [out, in]".into(),
                });
            }
        };
        if let Some(b) = &bias
            && b.dims() != [shape[0]]
        {
            return Err(Error::InvalidShape {
                what: "Nf4Linear bias".into(),
                shape: b.dims().to_vec(),
                reason: format!("expected [{}]", shape[0]),
            });
        }
        let gpu = if gpu_kernels::is_cuda(device) { Some(upload_gpu(&weight, shape, device)?) } else { None };
        // With the GPU copy, the other copy stays on the host (for read-back and merging).
        let path = match (&gpu, config.path) {
            (Some(_), _) => DequantPath::Host,
            (None, Some(p)) => p,
            (None, None) => DequantPath::for_device(device),
        };
        let storage = match path {
            DequantPath::Host => Storage::Host { tensor: Arc::new(weight), device: device.clone().without_autodiff() },
            DequantPath::Device => Storage::Device(Box::new(DeviceNf4Tensor::upload(&weight, device)?)),
        };
        let bias = bias.map(|b| Param::from_tensor(b.set_require_grad(false)).set_require_grad(false));
        Ok(Self { weight: Nf4Weight { storage, shape, compute_dtype: config.compute_dtype }, bias, gpu })
    }

    /// Quantizes a dense `[out, in]` weight (f32, bf16 or f16; other dtypes are read as f32) and
    /// wraps it, on the weight's device.
    ///
    /// # Errors
    /// Reading the weight back fails, a non-finite value (with its index), or those of [`Nf4Linear::new`].
    pub fn from_dense(weight: Tensor<2>, bias: Option<Tensor<1>>, quant: &QuantConfig, config: &Nf4LinearConfig) -> Result<Self> {
        let device = weight.device();
        let shape = weight.dims().to_vec();
        let data = weight.try_into_data().map_err(|e| Error::TensorRead { what: "dense weight".into(), reason: format!("{e:?}") })?;
        let q = match data.dtype() {
            DType::BF16 => Nf4Tensor::quantize_bf16(&read_vec::<bf16>(data)?, &shape, quant)?,
            DType::F16 => Nf4Tensor::quantize_f16(&read_vec::<f16>(data)?, &shape, quant)?,
            _ => Nf4Tensor::quantize(&read_vec::<f32>(data)?, &shape, quant)?,
        };
        Self::new(q, bias, &device, config)
    }

    /// `y = x · Wᵀ + b`.
    ///
    /// # Shapes
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    ///
    /// # Panics
    /// If the input's last dimension is not `d_input`.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let [d_output, d_input] = self.weight.shape;
        let dims = input.dims();
        assert_eq!(dims[D - 1], d_input, "Nf4Linear::forward: input {dims:?} does not end in d_input = {d_input} (d_output = {d_output})");
        let in_dtype = input.dtype();
        let compute = self.weight.compute_dtype;
        let x = input.cast(compute);
        if let Some(packed) = &self.gpu {
            let y = gpu_kernels::nf4_linear(x, packed);
            let y = match &self.bias {
                Some(b) => y + b.val().without_autodiff().cast(compute).unsqueeze::<D>(),
                None => y,
            };
            return y.cast(in_dtype);
        }
        let w = self.weight.dense(&x.device());
        let y = gpu_kernels::portable_linear(x, w);
        let y = match &self.bias {
            Some(b) => y + b.val().without_autodiff().cast(compute).unsqueeze::<D>(),
            None => y,
        };
        y.cast(in_dtype)
    }

    /// The layer by its gradient only, for a recomputed forward whose output value nobody
    /// reads: on the GPU path ([`gpu_kernels::nf4_linear_gradient_only`]) the value is zeros (no
    /// dequantization, no product, no bias) and the backward is [`Nf4Linear::forward`]'s; on
    /// every other path it is [`Nf4Linear::forward`] itself. The input's gradient is the same.
    ///
    /// # Shapes
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    ///
    /// # Panics
    /// As [`Nf4Linear::forward`].
    pub fn forward_gradient_only<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let Some(packed) = &self.gpu else { return self.forward(input) };
        let in_dtype = input.dtype();
        gpu_kernels::nf4_linear_gradient_only(input.cast(self.weight.compute_dtype), packed).cast(in_dtype)
    }

    /// The GPU-resident packed weight when the layer is exactly `x · Wᵀ` in `dtype` (no bias,
    /// `dtype` its compute dtype), for kernels that fuse the product with its neighbours.
    pub fn packed_plain(&self, dtype: burn::tensor::DType) -> Option<&gpu_kernels::PackedNf4> {
        let compute: burn::tensor::DType = self.weight.compute_dtype.into();
        if self.bias.is_some() || compute != dtype {
            return None;
        }
        self.gpu.as_ref()
    }

    /// The dense `[out, in]` weight in the compute dtype on the layer's device (without autodiff),
    /// e.g. to merge an adapter into it.
    pub fn dequantize_weight(&self) -> Tensor<2> {
        self.weight.dense(&self.weight.device())
    }

    /// The quantized weight, read back from the device if it lives there.
    ///
    /// # Errors
    /// The backend fails to read a tensor back.
    pub fn quantized_weight(&self) -> Result<Nf4Tensor> {
        match &self.weight.storage {
            Storage::Host { tensor, .. } => Ok(tensor.as_ref().clone()),
            Storage::Device(d) => d.download(),
        }
    }

    /// Which implementation dequantizes this layer's weight.
    pub fn dequant_path(&self) -> DequantPath {
        match self.weight.storage {
            Storage::Host { .. } => DequantPath::Host,
            Storage::Device(_) => DequantPath::Device,
        }
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.weight.shape[1]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.weight.shape[0]
    }

    /// Bytes of the packed weight and quant state (host or device) plus the bias.
    pub fn storage_bytes(&self) -> usize {
        let weight = match &self.weight.storage {
            Storage::Host { tensor, .. } => tensor.storage_bytes(),
            Storage::Device(d) => d.storage_bytes(),
        };
        weight + self.bias.as_ref().map_or(0, |b| 4 * b.dims()[0])
    }
}

fn read_vec<E: burn::tensor::Element>(data: TensorData) -> Result<Vec<E>> {
    data.try_into_vec_as::<E>().map_err(|e| Error::TensorRead { what: "dense weight".into(), reason: format!("{e:?}") })
}

impl ModuleDisplay for Nf4Linear {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new().with_new_line_after_attribute(false).optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("d_input", &self.d_input())
            .add("d_output", &self.d_output())
            .add("bias", &self.bias.is_some())
            .add("dequant", &format!("{:?}", self.dequant_path()))
            .optional()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuantConfig;
    use burn::tensor::module::linear;

    fn weight(rows: usize, cols: usize, double: bool) -> Nf4Tensor {
        let x: Vec<f32> = (0..rows * cols).map(|i| (((i * 7_919) % 1_013) as f32 / 506.5 - 1.0) * 0.3).collect();
        Nf4Tensor::quantize(&x, &[rows, cols], &QuantConfig::nf4().with_double_quant(double)).expect("quantize")
    }

    fn input(device: &Device) -> Tensor<3> {
        let data: Vec<f32> = (0..2 * 3 * 70).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
        Tensor::from_data(TensorData::new(data, [2, 3, 70]), device)
    }

    fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
        t.into_data().try_into_vec_as::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    }

    /// `x · Wᵀ + b` with the codec's dense weight, through burn's own `linear`.
    fn reference(q: &Nf4Tensor, bias: Option<&Tensor<1>>, x: Tensor<3>) -> Tensor<3> {
        let device = x.device();
        let w: Tensor<2> = Tensor::from_data(TensorData::new(q.dequantize_to_vec(), [q.shape()[0], q.shape()[1]]), &device);
        linear(x, w.transpose(), bias.cloned())
    }

    #[test]
    fn forward_matches_the_dense_reference_on_both_paths() {
        let device = Device::flex();
        let q = weight(24, 70, true);
        let bias: Tensor<1> = Tensor::from_data(TensorData::new((0..24).map(|i| i as f32 / 10.0).collect::<Vec<_>>(), [24]), &device);
        let want = bits(reference(&q, Some(&bias), input(&device)));
        for path in [DequantPath::Host, DequantPath::Device] {
            let layer = Nf4Linear::new(q.clone(), Some(bias.clone()), &device, &Nf4LinearConfig::default().with_path(path)).expect("layer");
            assert_eq!(layer.dequant_path(), path);
            let y = layer.forward(input(&device));
            assert_eq!(y.dims(), [2, 3, 24]);
            assert_eq!(bits(y), want, "{path:?}");
        }
    }

    #[test]
    fn gradients_reach_the_input_and_never_the_layer() {
        let device = Device::flex().autodiff();
        let q = weight(24, 70, false);
        let bias: Tensor<1> = Tensor::from_data(TensorData::new(vec![0.5f32; 24], [24]), &device);
        let upstream: Tensor<3> =
            Tensor::from_data(TensorData::new((0..2 * 3 * 24).map(|i| (i % 11) as f32 - 5.0).collect::<Vec<_>>(), [2, 3, 24]), &device);
        // Reference: the dense weight as a constant.
        let x_ref = input(&device).require_grad();
        let grads_ref = (reference(&q, Some(&bias), x_ref.clone()) * upstream.clone()).sum().backward();
        let gx_ref = bits(x_ref.grad(&grads_ref).expect("reference grad"));
        for path in [DequantPath::Host, DequantPath::Device] {
            let layer = Nf4Linear::new(q.clone(), Some(bias.clone()), &device, &Nf4LinearConfig::default().with_path(path)).expect("layer");
            let x = input(&device).require_grad();
            let grads = (layer.forward(x.clone()) * upstream.clone()).sum().backward();
            let gx = x.grad(&grads).expect("input gradient");
            assert_eq!(bits(gx), gx_ref, "{path:?}");
            // The only parameter is the frozen bias, and it gets no gradient.
            assert_eq!(Module::num_params(&layer), 24);
            let b = layer.bias.as_ref().expect("bias").val();
            assert!(!b.is_require_grad());
            assert!(b.grad(&grads).is_none(), "{path:?}: bias got a gradient");
        }
    }

    #[test]
    fn bf16_compute_returns_the_input_dtype() {
        let device = Device::flex();
        let q = weight(24, 70, false);
        let layer =
            Nf4Linear::new(q.clone(), None, &device, &Nf4LinearConfig::default().with_compute_dtype(FloatDType::BF16)).expect("layer");
        let y = layer.forward(input(&device));
        assert_eq!(y.dtype(), DType::F32);
        // bf16 rounding of inputs and weights: close to the f32 reference.
        let want = reference(&q, None, input(&device)).into_data().try_into_vec_as::<f32>().expect("f32");
        let got = y.into_data().try_into_vec_as::<f32>().expect("f32");
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 0.02 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn from_dense_quantizes_like_the_codec_and_reads_back() {
        let device = Device::flex();
        let data: Vec<half::bf16> = (0..24 * 70).map(|i| half::bf16::from_f32(((i * 13 % 29) as f32 - 14.0) / 20.0)).collect();
        let dense: Tensor<2> = Tensor::from_data(TensorData::new(data.clone(), [24, 70]), (&device, DType::BF16));
        let quant = QuantConfig::nf4().with_double_quant(true);
        for path in [DequantPath::Host, DequantPath::Device] {
            let layer = Nf4Linear::from_dense(dense.clone(), None, &quant, &Nf4LinearConfig::default().with_path(path)).expect("layer");
            let want = Nf4Tensor::quantize_bf16(&data, &[24, 70], &quant).expect("quantize");
            assert_eq!(layer.quantized_weight().expect("read back"), want);
            assert_eq!((layer.d_output(), layer.d_input()), (24, 70));
            // bitsandbytes dequantizes into the weight's own dtype (bf16 here).
            let mut as_bf16 = vec![half::bf16::ZERO; 24 * 70];
            want.dequantize_bf16_into(&mut as_bf16).expect("decode");
            let expected: Vec<u32> = as_bf16.iter().map(|v| v.to_f32().to_bits()).collect();
            assert!(bits(layer.dequantize_weight()) == expected, "{path:?}: dequantized weight differs from the codec's bf16 output");
        }
    }

    #[derive(Module, Debug)]
    struct Block {
        proj: Nf4Linear,
        scale: Param<Tensor<1>>,
    }

    #[test]
    fn composes_inside_a_derived_module_and_moves_with_it() {
        let device = Device::flex();
        let proj =
            Nf4Linear::new(weight(24, 70, true), None, &device, &Nf4LinearConfig::default().with_path(DequantPath::Device)).expect("layer");
        let block = Block { proj, scale: Param::from_tensor(Tensor::ones([24], &device)) };
        // Only the block's own parameter is visible to optimizers.
        assert_eq!(Module::num_params(&block), 24);
        let forked = block.fork(&Device::flex().autodiff());
        assert_eq!(forked.devices().len(), 1);
        let y = forked.proj.forward(input(&Device::flex().autodiff()));
        assert_eq!(y.dims(), [2, 3, 24]);
        assert!(format!("{forked}").contains("Nf4Linear"));
    }

    #[test]
    fn bad_shapes_are_refused_with_a_named_error() {
        let device = Device::flex();
        let bias: Tensor<1> = Tensor::zeros([5], &device);
        let err = Nf4Linear::new(weight(24, 70, false), Some(bias), &device, &Nf4LinearConfig::default());
        assert!(matches!(err, Err(Error::InvalidShape { ref what, .. }) if what == "Nf4Linear bias"));
        let t = Nf4Tensor::quantize(&[1.0; 64], &[64], &QuantConfig::nf4()).expect("quantize");
        let err = Nf4Linear::new(t, None, &device, &Nf4LinearConfig::default());
        assert!(matches!(err, Err(Error::InvalidShape { ref what, .. }) if what == "Nf4Linear weight"));
    }
}
