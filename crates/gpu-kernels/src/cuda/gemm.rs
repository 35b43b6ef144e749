//! [`KernelBackend`] on burn's CubeCL backend: cuBLASLt for 2-D bf16/f16/f32 operands.

use burn::backend::DType;
use burn::tensor::Shape;
use burn_cubecl::{CubeBackend, kernel::into_contiguous, tensor::CubeTensor};

use cubecl_runtime::server::ServerStorage;

use super::cublaslt::{self, GemmCall, GemmDType, Operand, Queue};
use super::interop::{cuda_ordinal, pin, wait_for_burn};
use super::stream::{self, CudaServer};
use crate::decode::GemvPlan;
use crate::error::Result;
use crate::extension::{KernelBackend, Nf4Parts};
use crate::gemm::reference_gemm;
use crate::nf4::{Nf4Meta, PackedNf4, nf4_dequantize};

impl KernelBackend for CubeBackend {
    fn gemm(a: CubeTensor, b: CubeTensor, transpose_a: bool, transpose_b: bool) -> CubeTensor {
        match cublas_gemm(a.clone(), b.clone(), transpose_a, transpose_b, None) {
            Ok(Some(out)) => out,
            Ok(None) => reference_gemm::<Self>(a, b, transpose_a, transpose_b),
            Err(e) => panic!("gpu-kernels: cuBLASLt GEMM failed: {e}"),
        }
    }

    fn gemm_add(a: CubeTensor, b: CubeTensor, transpose_a: bool, transpose_b: bool, addend: CubeTensor) -> CubeTensor {
        match cublas_gemm(a.clone(), b.clone(), transpose_a, transpose_b, Some(addend.clone())) {
            Ok(Some(out)) => out,
            Ok(None) => sum::<Self>(Self::gemm(a, b, transpose_a, transpose_b), addend),
            Err(e) => panic!("gpu-kernels: cuBLASLt GEMM failed: {e}"),
        }
    }

    fn rms_norm(x: CubeTensor, w: CubeTensor, eps: f64) -> CubeTensor {
        super::norm::rms_norm(x, w, None, eps)
    }

    fn rms_norm_backward(x: CubeTensor, w: CubeTensor, g: CubeTensor, eps: f64) -> CubeTensor {
        super::norm::rms_norm(x, w, Some(g), eps)
    }

    fn cross_entropy(logits: CubeTensor, targets: CubeTensor, ignore: i64) -> CubeTensor {
        super::cross_entropy::cross_entropy(logits, targets, None, ignore)
    }

    fn cross_entropy_backward(logits: CubeTensor, targets: CubeTensor, grad: CubeTensor, ignore: i64) -> CubeTensor {
        super::cross_entropy::cross_entropy(logits, targets, Some(grad), ignore)
    }

    fn dropout(x: CubeTensor, p: f64, scale: f64, seed: u64, dtype: DType) -> CubeTensor {
        let in_dtype = x.dtype;
        super::dropout::dropout(x, p, scale, seed, dtype).unwrap_or_else(|| panic!("dropout: unsupported dtypes {in_dtype:?} → {dtype:?}"))
    }

    fn rope(x: CubeTensor, cos: CubeTensor, sin: CubeTensor, inverse: bool) -> CubeTensor {
        super::rope::rope(x, cos, sin, inverse)
    }

    fn scaled_softmax(scores: CubeTensor, scale: f64, causal: bool) -> CubeTensor {
        super::softmax::softmax(scores, None, scale, causal)
    }

    fn scaled_softmax_backward(probs: CubeTensor, grad: CubeTensor, scale: f64) -> CubeTensor {
        super::softmax::softmax(probs, Some(grad), scale, false)
    }

    fn add_cast(base: CubeTensor, delta: CubeTensor) -> CubeTensor {
        super::add_cast::add_cast(base, delta)
    }

    fn swiglu(gate: CubeTensor, up: CubeTensor) -> CubeTensor {
        super::swiglu::swiglu(gate, up)
    }

    fn swiglu_backward(gate: CubeTensor, up: CubeTensor, grad: CubeTensor) -> (CubeTensor, CubeTensor) {
        super::swiglu::swiglu_backward(gate, up, grad)
    }

    fn nf4_linear(
        x: CubeTensor,
        packed: CubeTensor,
        code: CubeTensor,
        absmax: CubeTensor,
        qcodes: CubeTensor,
        nested_code: CubeTensor,
        meta: Nf4Meta,
    ) -> CubeTensor {
        if let Some(y) = super::nf4_gemv::nf4_gemv(&x, &packed, &code, &absmax, &qcodes, &nested_code, &meta) {
            return y;
        }
        let w = Self::nf4_dense(packed, code, absmax, qcodes, nested_code, meta);
        Self::gemm(x, w, false, true)
    }

    fn nf4_gemv_fused(
        x: CubeTensor,
        norm_w: CubeTensor,
        residual: CubeTensor,
        w0: Nf4Parts<Self>,
        w1: Nf4Parts<Self>,
        w2: Nf4Parts<Self>,
        plan: GemvPlan,
    ) -> CubeTensor {
        if let Some(y) = super::nf4_gemv_fused::nf4_gemv_fused(&x, &norm_w, &residual, [&w0, &w1, &w2], plan) {
            return y;
        }
        crate::decode::compose::<Self>(x, norm_w, residual, [w0, w1, w2], plan)
    }

    fn nf4_dense(
        packed: CubeTensor,
        code: CubeTensor,
        absmax: CubeTensor,
        qcodes: CubeTensor,
        nested_code: CubeTensor,
        meta: Nf4Meta,
    ) -> CubeTensor {
        use burn::tensor::{Int, Tensor};
        type B = CubeBackend;
        let w = PackedNf4::from_parts(
            Tensor::<1, Int>::from_primitive::<B>(packed),
            Tensor::<1>::from_primitive::<B>(code),
            Tensor::<1>::from_primitive::<B>(absmax),
            Tensor::<1, Int>::from_primitive::<B>(qcodes),
            Tensor::<1>::from_primitive::<B>(nested_code),
            meta,
        );
        nf4_dequantize(&w, meta.dtype).try_into_primitive::<B>().expect("a CubeCL tensor")
    }
}

/// `x + y` (burn's add).
fn sum<B: burn::backend::Backend>(
    x: burn::backend::tensor::FloatTensor<B>,
    y: burn::backend::tensor::FloatTensor<B>,
) -> burn::backend::tensor::FloatTensor<B> {
    B::float_add(x, y)
}

/// The cuBLASLt element type of a pair of operands, if it handles them (f32 as
/// [`crate::f32_matmul_precision`] says).
fn gemm_dtype(a: DType, b: DType) -> Option<GemmDType> {
    match (a, b) {
        (DType::BF16, DType::BF16) => Some(GemmDType::Bf16),
        (DType::F16, DType::F16) => Some(GemmDType::F16),
        (DType::F32, DType::F32) => Some(match crate::f32_matmul_precision() {
            crate::F32MatmulPrecision::Highest => GemmDType::F32,
            crate::F32MatmulPrecision::Tf32 => GemmDType::Tf32,
        }),
        _ => None,
    }
}

/// A 2-D tensor, or a batch of matrices `[batch, rows, cols]`, as row-major operands plus the
/// element stride between batch entries; flips `transpose` when the matrices are transposed views
/// of row-major buffers, and copies to contiguous memory when neither reading works.
fn operand(t: CubeTensor, transpose: bool) -> (CubeTensor, Operand, usize, bool) {
    let t = if t.meta.is_tiled() { into_contiguous(t) } else { t };
    let rank = t.meta.num_dims();
    let (r, c) = (t.meta.shape()[rank - 2], t.meta.shape()[rank - 1]);
    let (s0, s1) = (t.meta.strides()[rank - 2], t.meta.strides()[rank - 1]);
    let batch_stride = if rank == 3 { t.meta.strides()[0] } else { 0 };
    let row_major = (s1 == 1 || c <= 1) && (r <= 1 || s0 >= c.max(1));
    let col_major = (s0 == 1 || r <= 1) && (c <= 1 || s1 >= r.max(1));
    if row_major {
        let ld = if r <= 1 { c.max(1) } else { s0 };
        (t, Operand { ptr: 0, rows: r, cols: c, ld }, batch_stride, transpose)
    } else if col_major {
        let ld = if c <= 1 { r.max(1) } else { s1 };
        (t, Operand { ptr: 0, rows: c, cols: r, ld }, batch_stride, !transpose)
    } else {
        let t = into_contiguous(t);
        (t, Operand { ptr: 0, rows: r, cols: c, ld: c.max(1) }, r * c, transpose)
    }
}

/// `op(a) · op(b)` (plus `addend`) through cuBLASLt, for two 2-D tensors or two 3-D batches of
/// one batch size (strided-batched); `Ok(None)` for inputs it does not take (other dtypes or
/// ranks, quantized tensors, an empty inner dimension, operands on different devices; an addend
/// that is batched, of another dtype or shape, or not contiguous with rows `N` apart).
pub(crate) fn cublas_gemm(
    a: CubeTensor,
    b: CubeTensor,
    transpose_a: bool,
    transpose_b: bool,
    addend: Option<CubeTensor>,
) -> Result<Option<CubeTensor>> {
    let Some(dtype) = gemm_dtype(a.dtype, b.dtype) else { return Ok(None) };
    let rank = a.meta.num_dims();
    if !(rank == 2 || rank == 3) || b.meta.num_dims() != rank || a.qparams.is_some() || b.qparams.is_some() || a.device != b.device {
        return Ok(None);
    }
    if let Some(y) = &addend {
        let plain = rank == 2 && y.dtype == a.dtype && y.qparams.is_none() && y.device == a.device && y.meta.num_dims() == 2;
        let row_major = plain && !y.meta.is_tiled() && y.meta.strides()[1] == 1 && y.meta.strides()[0] == y.meta.shape()[1];
        if !row_major {
            return Ok(None);
        }
    }
    let batch = if rank == 3 { a.meta.shape()[0] } else { 1 };
    if rank == 3 && b.meta.shape()[0] != batch {
        return Ok(None);
    }
    let ordinal = cuda_ordinal(&a.device)?;
    let (a, a_op, stride_a, ta) = operand(a, transpose_a);
    let (b, b_op, stride_b, tb) = operand(b, transpose_b);
    let mut call = GemmCall { a: a_op, b: b_op, transpose_a: ta, transpose_b: tb, c: 0, addend: 0, dtype, batch, stride_a, stride_b };
    let (m, n, k) = call.dims()?;
    if k == 0 || addend.as_ref().is_some_and(|y| y.meta.shape()[..] != [m, n]) {
        return Ok(None);
    }
    let shape = if rank == 3 { Shape::new([batch, m, n]) } else { Shape::new([m, n]) };
    let handle = a.client.empty(batch * m * n * dtype.size());
    let out = CubeTensor::new_contiguous(a.client.clone(), a.device.clone(), shape, handle, a.dtype);
    if m == 0 || n == 0 || batch == 0 {
        return Ok(Some(addend.unwrap_or(out)));
    }
    stream::check_deferred()?;
    let clock = super::profile::gemm_clock();
    let bindings = [a.handle.clone().binding(), b.handle.clone().binding(), out.handle.clone().binding()];
    let addend_binding = addend.as_ref().map(|y| y.handle.clone().binding());
    let queued = stream::enqueue(&a, move |server: &mut CudaServer, id, on| {
        let [ba, bb, bc] = bindings;
        let run = || -> Result<()> {
            let resource = |server: &mut CudaServer, binding| {
                server.get_resource(binding, id).map_err(|e| crate::Error::Cuda { call: "cubecl get_resource", reason: format!("{e:?}") })
            };
            let (ra, rb, rc) = (resource(server, ba)?, resource(server, bb)?, resource(server, bc)?);
            let ry = match addend_binding {
                Some(by) => Some(resource(server, by)?),
                None => None,
            };
            let mut call = call;
            call.a.ptr = ra.resource().ptr;
            call.b.ptr = rb.resource().ptr;
            call.c = rc.resource().ptr;
            call.addend = ry.as_ref().map_or(0, |r| r.resource().ptr);
            let shape = || {
                (
                    format!(
                        "{:?} {}{m}×{n}×{k}{}",
                        call.dtype,
                        if batch > 1 { format!("{batch}×") } else { String::new() },
                        if call.addend != 0 { " +Y" } else { "" }
                    ),
                    2.0 * (batch * m * n * k) as f64,
                )
            };
            // SAFETY: three (four with the addend, which is not the fresh output) live cubecl
            // allocations of this device, sized by their metadata; the
            // GEMM is enqueued on the stream burn runs this thread's kernels on, after every
            // kernel queued before it and before every later one, so buffers are read after their
            // writers, and released or reused only in that order.
            super::profile::time_gemm(on.sys(), shape, || unsafe { cublaslt::gemm(ordinal, &call, Queue::Stream(on.0)) })
        };
        if let Err(e) = run() {
            stream::defer_error(e);
        }
    })?;
    if !queued {
        let (pa, pb, pc) = (pin(&a)?, pin(&b)?, pin(&out)?);
        let py = match &addend {
            Some(y) => Some(pin(y)?),
            None => None,
        };
        call.a.ptr = pa.ptr;
        call.b.ptr = pb.ptr;
        call.c = pc.ptr;
        call.addend = py.as_ref().map_or(0, |p| p.ptr);
        wait_for_burn(&a.device)?;
        // SAFETY: the three (four) buffers are pinned cubecl allocations of this device's primary
        // context, sized by their metadata; burn's queued work on them has finished
        // (`wait_for_burn`) and the call waits for the GEMM before the pins are released and
        // the output is handed to burn.
        unsafe { cublaslt::gemm(ordinal, &call, Queue::Own { wait: true }) }?;
        drop((pa, pb, pc, py));
    }
    super::profile::record_gemm(clock, queued);
    drop((a, b, addend));
    Ok(Some(out))
}

/// Benchmark helper: times `iters` cuBLASLt GEMMs `y = x · wᵀ` on the buffers of two 2-D CUDA
/// tensors of one dtype with CUDA events on this crate's stream, no host synchronization between
/// them; returns the mean milliseconds per GEMM. The output goes to a scratch buffer.
///
/// # Errors
/// Not CUDA tensors, other dtypes or ranks, mismatched shapes, or a failing CUDA call.
pub fn time_cublaslt_linear(x: &burn::tensor::Tensor<2>, w: &burn::tensor::Tensor<2>, iters: usize) -> Result<f64> {
    use crate::error::Error;
    let prim = |t: &burn::tensor::Tensor<2>| t.clone().try_into_primitive::<CubeBackend>().map_err(|e| Error::NotCuda(format!("{e:?}")));
    let (x, w) = (prim(x)?, prim(w)?);
    let dtype = gemm_dtype(x.dtype, w.dtype).ok_or(Error::DType { what: "time_cublaslt_linear", dtype: x.dtype })?;
    let ordinal = cuda_ordinal(&x.device)?;
    let (x, x_op, _, tx) = operand(x, false);
    let (w, w_op, _, tw) = operand(w, true);
    let mut call =
        GemmCall { a: x_op, b: w_op, transpose_a: tx, transpose_b: tw, c: 0, addend: 0, dtype, batch: 1, stride_a: 0, stride_b: 0 };
    let (m, n, _) = call.dims()?;
    let out = x.client.empty(m * n * dtype.size());
    let out = CubeTensor::new_contiguous(x.client.clone(), x.device.clone(), Shape::new([m, n]), out, x.dtype);
    let (px, pw, pc) = (pin(&x)?, pin(&w)?, pin(&out)?);
    call.a.ptr = px.ptr;
    call.b.ptr = pw.ptr;
    call.c = pc.ptr;
    wait_for_burn(&x.device)?;
    // SAFETY: pinned buffers of this device, burn's work on them finished; `time_gemm` waits for
    // its last GEMM before returning.
    let ms = unsafe { cublaslt::time_gemm(ordinal, &call, iters) }?;
    drop((px, pw, pc));
    Ok(ms)
}
