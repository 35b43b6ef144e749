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
