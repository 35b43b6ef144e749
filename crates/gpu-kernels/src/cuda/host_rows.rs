//! Rows of a host-resident table gathered by the GPU: the table's pages are pinned and mapped
//! into the device's address space once (`cuMemHostRegister`, read-only), and one kernel copies
//! row `ids[k]` to row `k` of a fresh device tensor over the bus — no read-back of the ids, no
//! host gather, no staging upload (Llama-3-8B's training step: 2,048 rows of 8 KiB each).
//!
//! The kernel copies 16 bytes per thread and load, so the table must start on a 16-byte
//! boundary and its rows be a multiple of 16 bytes ([`MappedTable::register`] says `None`
//! otherwise). An id outside `0..vocab` gives a row of zeros (callers validate ids first: the
//! host path's panic cannot be raised from a kernel).

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::{DType, TensorData};
use burn_cubecl::tensor::CubeTensor;
use cudarc::driver::sys as dsys;

use super::cublaslt;
use super::interop::{contiguous, cuda_ordinal};
use super::nvrtc_module;
use super::stream::{self, CudaServer};
use crate::error::{Error, Result};

const THREADS: u32 = 128;

const SOURCE: &str = r#"
template <typename Id>
__device__ void gather(const uint4* __restrict__ table, const Id* __restrict__ ids, uint4* __restrict__ out,
                       unsigned long long vocab, unsigned int row_vecs) {
    const unsigned long long k = blockIdx.x;
    const long long id = (long long)ids[k];
    const bool valid = id >= 0 && (unsigned long long)id < vocab;
    const uint4* src = table + (valid ? (unsigned long long)id : 0ull) * row_vecs;
    uint4* dst = out + k * row_vecs;
    for (unsigned int j = threadIdx.x; j < row_vecs; j += blockDim.x) {
        dst[j] = valid ? src[j] : make_uint4(0u, 0u, 0u, 0u);
    }
}
extern "C" __global__ void gather_rows_i32(const uint4* table, const int* ids, uint4* out, unsigned long long vocab, unsigned int row_vecs) {
    gather<int>(table, ids, out, vocab, row_vecs);
}
extern "C" __global__ void gather_rows_i64(const uint4* table, const long long* ids, uint4* out, unsigned long long vocab, unsigned int row_vecs) {
    gather<long long>(table, ids, out, vocab, row_vecs);
}
"#;

/// `[i32 ids, i64 ids]` per device ordinal.
static KERNELS: nvrtc_module::PerDevice<[usize; 2]> = nvrtc_module::PerDevice::new("row gathers from host memory");

/// Gathers queued on this path so far (so tests can tell it from the host path).
static QUEUED: AtomicU64 = AtomicU64::new(0);

/// How many row gathers from mapped host memory were queued in this process.
pub fn host_row_gathers() -> u64 {
    QUEUED.load(Ordering::Relaxed)
}

fn kernels(ordinal: usize) -> Option<[usize; 2]> {
    KERNELS.get(ordinal, |ordinal| {
        let f = nvrtc_module::compile(ordinal, SOURCE, &["gather_rows_i32", "gather_rows_i64"])?;
        Ok([f[0], f[1]])
    })
}

/// A `[vocab, d]` host table pinned and mapped for device `ordinal`; unmapped on drop.
pub(crate) struct MappedTable {
    data: Arc<TensorData>,
    /// The table's address as the device sees it.
    device_ptr: u64,
    ordinal: usize,
    kernels: [usize; 2],
}

impl std::fmt::Debug for MappedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedTable").field("shape", &self.data.shape()).field("ordinal", &self.ordinal).finish()
    }
}

impl MappedTable {
    /// Pins and maps `data` (`[vocab, d]`) for device `ordinal`; `None` when its layout does not
    /// suit the kernel (see the module docs); an error when the driver refuses.
    pub(crate) fn register(data: Arc<TensorData>, ordinal: usize) -> Result<Option<Self>> {
        let shape = data.shape();
        let bytes = data.as_bytes();
        let row = shape[1] * data.dtype().size();
        if shape.num_dims() != 2 || bytes.is_empty() || !row.is_multiple_of(16) || !(bytes.as_ptr() as usize).is_multiple_of(16) {
            return Ok(None);
        }
        let Some(kernels) = kernels(ordinal) else { return Ok(None) };
        cublaslt::context(ordinal)?;
        let host = bytes.as_ptr() as *mut c_void;
        let flags = dsys::CU_MEMHOSTREGISTER_DEVICEMAP | dsys::CU_MEMHOSTREGISTER_READ_ONLY;
        // SAFETY: `host..host + len` is the table's allocation, kept alive and unmoved by the
        // `Arc` this value holds until `drop` unregisters it.
        let status = unsafe { dsys::cuMemHostRegister_v2(host, bytes.len(), flags) };
        if status != dsys::CUresult::CUDA_SUCCESS {
            return Err(Error::Cuda { call: "cuMemHostRegister", reason: format!("{status:?} ({} bytes)", bytes.len()) });
        }
        let mut device_ptr: dsys::CUdeviceptr = 0;
        // SAFETY: `host` was registered above with DEVICEMAP.
        let status = unsafe { dsys::cuMemHostGetDevicePointer_v2(&mut device_ptr, host, 0) };
        if status != dsys::CUresult::CUDA_SUCCESS {
            // SAFETY: registered above.
            unsafe { dsys::cuMemHostUnregister(host) };
            return Err(Error::Cuda { call: "cuMemHostGetDevicePointer", reason: format!("{status:?}") });
        }
        Ok(Some(Self { data, device_ptr, ordinal, kernels }))
    }

    /// `[batch, len, d]`: row `ids[b, i]` of the table at `[b, i, :]`, in the table's dtype, on
    /// `ids`' device (queued on burn's stream); `None` without a verified stream, for ids that
    /// are not i32 or i64, or on another device than the mapping's.
    pub(crate) fn gather(&self, ids: &CubeTensor) -> Result<Option<CubeTensor>> {
        let kernel = match ids.dtype {
            DType::I32 => self.kernels[0],
            DType::I64 => self.kernels[1],
            _ => return Ok(None),
        };
        let dims = ids.meta.shape().clone();
        if dims.num_dims() != 2 || dims.num_elements() == 0 || dims.num_elements() > u32::MAX as usize {
            return Ok(None);
        }
        // The pages are mapped, and the kernel loaded, for one device's context.
        if cuda_ordinal(&ids.device).ok() != Some(self.ordinal) {
            return Ok(None);
        }
        stream::check_deferred()?;
        let ids = contiguous(ids.clone());
        let shape = self.data.shape();
        let (vocab, d, dtype) = (shape[0] as u64, shape[1], self.data.dtype());
        let row_vecs = (d * dtype.size() / 16) as u32;
        let rows = dims.num_elements();
        let client = ids.client.clone();
        let handle = client.empty(rows * d * dtype.size());
        let out = CubeTensor::new_contiguous(client, ids.device.clone(), [dims[0], dims[1], d].into(), handle.clone(), dtype);
        let (ids_binding, out_binding) = (ids.handle.clone().binding(), handle.binding());
        let (table, ordinal) = (self.device_ptr, self.ordinal);
        let queued = nvrtc_module::queue(&ids, &QUEUED, move |server: &mut CudaServer, id, on| {
            let mut ids_ptr = nvrtc_module::address(server, ids_binding, id)?;
            let mut out_ptr = nvrtc_module::address(server, out_binding, id)?;
            cublaslt::context(ordinal)?;
            let (mut table, mut vocab, mut row_vecs) = (table, vocab, row_vecs);
            let mut params: [*mut c_void; 5] = [
                (&mut table as *mut u64).cast(),
                (&mut ids_ptr as *mut u64).cast(),
                (&mut out_ptr as *mut u64).cast(),
                (&mut vocab as *mut u64).cast(),
                (&mut row_vecs as *mut u32).cast(),
            ];
            nvrtc_module::launch(kernel, rows as u32, THREADS, on.sys(), &mut params)
        })?;
        Ok(queued.then_some(out))
    }
}

impl Drop for MappedTable {
    fn drop(&mut self) {
        // Gathers still queued or running read the pages: wait for the device before unpinning.
        if cublaslt::context(self.ordinal).is_ok() {
            // SAFETY: the context is current; the pointer was registered in `register`.
            let (synced, unpinned) =
                unsafe { (dsys::cuCtxSynchronize(), dsys::cuMemHostUnregister(self.data.as_bytes().as_ptr() as *mut c_void)) };
            if synced != dsys::CUresult::CUDA_SUCCESS || unpinned != dsys::CUresult::CUDA_SUCCESS {
                eprintln!("gpu-kernels: unmapping a host table: synchronize {synced:?}, unregister {unpinned:?}");
            }
        }
    }
}
