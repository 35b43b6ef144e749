//! burn-cuda tensors as raw CUDA buffers.
//!
//! A [`CubeTensor`]'s `handle` names a slice of a cubecl allocation; `client.get_resource` turns
//! it into the device address (offset applied) and pins the allocation while the returned guard
//! lives. This is the host-synchronized route for foreign work: wait for burn's stream before
//! reading or writing its buffers, and wait for our stream before handing buffers back. The fast
//! route enqueues on burn's own stream instead (`stream`); this one is its fallback.

use burn::backend::Backend;
use burn_cubecl::{CubeBackend, CubeDevice, tensor::CubeTensor};
use cubecl_runtime::runtime::Runtime;

use crate::error::{Error, Result};

type CudaServer = <cubecl::cuda::CudaRuntime as Runtime>::Server;

/// A device address, valid while `_pin` lives.
pub(crate) struct Pinned<G> {
    pub(crate) ptr: u64,
    _pin: G,
}

/// The CUDA ordinal of a cubecl device, or an error for another runtime.
pub(crate) fn cuda_ordinal(device: &CubeDevice) -> Result<usize> {
    match device {
        CubeDevice::Cuda(d) => Ok(d.index),
        other => Err(Error::NotCuda(format!("expected a CUDA device, got {other:?}"))),
    }
}

/// Pins `tensor`'s buffer and returns its address.
pub(crate) fn pin(tensor: &CubeTensor) -> Result<Pinned<impl Sized + use<>>> {
    let resource = tensor
        .client
        .get_resource::<CudaServer>(tensor.handle.clone())
        .map_err(|e| Error::Cuda { call: "cubecl get_resource", reason: format!("{e:?}") })?;
    let ptr = resource.resource().ptr;
    Ok(Pinned { ptr, _pin: resource })
}

/// Blocks until every kernel burn queued on `device` (this thread's stream) has finished.
pub(crate) fn wait_for_burn(device: &CubeDevice) -> Result<()> {
    <CubeBackend as Backend>::sync(device).map_err(|e| Error::Cuda { call: "burn sync", reason: format!("{e:?}") })
}

/// `t` itself when its elements are contiguous in row-major order, else a contiguous copy (the
/// layout every kernel of this module indexes).
pub(crate) fn contiguous(t: CubeTensor) -> CubeTensor {
    if t.is_contiguous() { t } else { burn_cubecl::kernel::into_contiguous(t) }
}

/// `KINDLING_ELEMWISE=scalar`: the kernels that take 16-byte vectors (SwiGLU, dropout, RMSNorm,
/// RoPE, softmax) take one value per thread instead (an A/B switch).
static SCALAR_ELEMWISE: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_ELEMWISE", "scalar");

/// Values per thread of an element-wise kernel over `n` values: `wide` when `n` is a multiple
/// of it and every buffer starts on a 16-byte boundary, else 1.
pub(crate) fn vector_width(n: usize, wide: usize, tensors: &[&CubeTensor]) -> usize {
    let aligned = tensors.iter().all(|t| t.handle.offset_start.unwrap_or(0).is_multiple_of(16));
    if n.is_multiple_of(wide) && aligned && !SCALAR_ELEMWISE.is_on() { wide } else { 1 }
}

/// How an element-wise kernel over `n` values is launched: `vs` values per thread
/// ([`vector_width`]), `len = n / vs` threads in cubes of 256.
pub(crate) struct Elemwise {
    pub(crate) vs: usize,
    pub(crate) len: usize,
    pub(crate) cube_dim: cubecl::prelude::CubeDim,
    pub(crate) count: cubecl::prelude::CubeCount,
}

impl Elemwise {
    /// The launch for `n` values of `tensors` (every buffer the kernel reads or writes).
    pub(crate) fn new(n: usize, wide: usize, tensors: &[&CubeTensor]) -> Self {
        let client = &tensors[0].client;
        let vs = vector_width(n, wide, tensors);
        let len = n / vs;
        let cube_dim = cubecl::prelude::CubeDim::new_1d(256);
        let count = cubecl::calculate_cube_count_elemwise(client, len, cube_dim);
        Self { vs, len, cube_dim, count }
    }
}

/// An empty contiguous 1-D tensor of `n` values of `dtype` beside `like` (same client, device).
pub(crate) fn empty_1d(like: &CubeTensor, n: usize, dtype: burn::tensor::DType) -> CubeTensor {
    let handle = like.client.empty(n * dtype.size());
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), [n].into(), handle, dtype)
}
