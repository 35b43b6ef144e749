//! Raw CUDA C kernels outside CubeCL: compiled once per device by NVRTC (cudarc), launched with
//! the driver API on burn's stream from a task queued by `stream::enqueue`, where the runner
//! thread turns CubeCL handles into device addresses ([`address`]).
//!
//! For kernels whose parameters CubeCL cannot express: a group of tensors' addresses in one
//! `__grid_constant__` struct (`multi_tensor`), or host memory mapped into the device's address
//! space (`host_rows`).

use std::ffi::{CString, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::{result as drv, sys as dsys};
use cudarc::nvrtc::result as nvrtc;

use burn_cubecl::tensor::CubeTensor;
use cubecl_environment::stream::StreamId;

use super::cublaslt;
use super::stream::{self, CudaServer, RawStream};
use crate::error::{Error, Result};

/// Compiles `source` for device `ordinal` (its compute capability) and returns the functions
/// `names`, in order, as addresses (handles of the primary context; the module is never unloaded).
pub(crate) fn compile(ordinal: usize, source: &str, names: &[&str]) -> Result<Vec<usize>> {
    let nv = |call: &'static str| move |e: nvrtc::NvrtcError| Error::Cuda { call, reason: format!("{e:?}") };
    let dv = |call: &'static str| move |e: drv::DriverError| Error::Cuda { call, reason: format!("{e:?}") };
    // The primary context current on this thread (as cuBLASLt's calls have it).
    cublaslt::context(ordinal)?;
    let device = drv::device::get(ordinal as i32).map_err(dv("cuDeviceGet"))?;
    let attribute = |a| {
        // SAFETY: a valid device ordinal's handle and a plain attribute query.
        unsafe { drv::device::get_attribute(device, a) }.map_err(dv("cuDeviceGetAttribute"))
    };
    let major = attribute(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let source = CString::new(source).map_err(|e| Error::Cuda { call: "kernel source", reason: e.to_string() })?;
    let program = nvrtc::create_program(&source, None).map_err(nv("nvrtcCreateProgram"))?;
    let options = [format!("--gpu-architecture=compute_{major}{minor}"), "--std=c++17".to_string()];
    // SAFETY: `program` was just created and is destroyed below, once.
    let compiled = unsafe { nvrtc::compile_program(program, &options) };
    let ptx = match compiled {
        // SAFETY: as above; the program compiled.
        Ok(()) => unsafe { nvrtc::get_ptx(program) }.map_err(nv("nvrtcGetPTX")),
        Err(e) => {
            // SAFETY: as above.
            let log = unsafe { nvrtc::get_program_log(program) }.unwrap_or_default();
            let log: String = log.iter().map(|&c| c as u8 as char).collect();
            Err(Error::Cuda { call: "nvrtcCompileProgram", reason: format!("{e:?}: {log}") })
        }
    };
    // SAFETY: created above, not destroyed before.
    let _ = unsafe { nvrtc::destroy_program(program) };
    let ptx = ptx?;
    // SAFETY: a NUL-terminated PTX image (NVRTC's output includes the terminator).
    let module = unsafe { drv::module::load_data(ptx.as_ptr() as *const c_void) }.map_err(dv("cuModuleLoadData"))?;
    names
        .iter()
        .map(|name| {
            let name = CString::new(*name).map_err(|e| Error::Cuda { call: "kernel name", reason: e.to_string() })?;
            // SAFETY: the module was loaded above and is never unloaded.
            Ok(unsafe { drv::module::get_function(module, name) }.map_err(dv("cuModuleGetFunction"))? as usize)
        })
        .collect()
}

/// Launches `function` on `blocks × 1 × 1` blocks of `threads` threads on `stream`.
pub(crate) fn launch(function: usize, blocks: u32, threads: u32, stream: dsys::CUstream, params: &mut [*mut c_void]) -> Result<()> {
    // SAFETY: `function` is a kernel of the current context whose parameters are, in order, the
    // values `params` point to (each caller checks its layouts); the stream belongs to that
    // context.
    unsafe { drv::launch_kernel(function as dsys::CUfunction, (blocks, 1, 1), (threads, 1, 1), 0, stream, params) }
        .map_err(|e| Error::Cuda { call: "cuLaunchKernel (NVRTC kernel)", reason: format!("{e:?}") })
}

/// The device address of `binding` (on the runner thread, inside a queued task).
pub(crate) fn address(
    server: &mut CudaServer,
    binding: cubecl::server::BufferBinding,
    id: cubecl_environment::stream::StreamId,
) -> Result<u64> {
    use cubecl_runtime::server::ServerStorage;
    server
        .get_resource(binding, id)
        .map(|r| r.resource().ptr)
        .map_err(|e| Error::Cuda { call: "cubecl get_resource", reason: format!("{e:?}") })
}

/// Queues `task` on burn's stream of `tensor` (`stream::enqueue`; it runs on the runner thread):
/// its error, if any, is deferred to the next `stream::check_deferred`, and `counter` counts the
/// tasks queued. `false` without a verified stream (nothing queued: take another path).
pub(crate) fn queue(
    tensor: &CubeTensor,
    counter: &AtomicU64,
    task: impl FnOnce(&mut CudaServer, StreamId, RawStream) -> Result<()> + Send + 'static,
) -> Result<bool> {
    let queued = stream::enqueue(tensor, move |server: &mut CudaServer, id, on| {
        if let Err(e) = task(server, id, on) {
            stream::defer_error(e);
        }
    })?;
    if queued {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(queued)
}

/// Kernels compiled once per device on first use: `None` for a device where compiling or
/// loading failed (said once on stderr; the callers then take another path).
pub(crate) struct PerDevice<K: Copy> {
    compiled: Mutex<Vec<(usize, Option<K>)>>,
    /// What the kernels do, for the warning.
    what: &'static str,
}

impl<K: Copy> PerDevice<K> {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self { compiled: Mutex::new(Vec::new()), what }
    }

    /// Device `ordinal`'s kernels, `compile`d on the first call for it.
    pub(crate) fn get(&self, ordinal: usize, compile: impl FnOnce(usize) -> Result<K>) -> Option<K> {
        let mut guard = self.compiled.lock().ok()?;
        if let Some((_, k)) = guard.iter().find(|(o, _)| *o == ordinal) {
            return *k;
        }
        let k = compile(ordinal).map_err(|e| eprintln!("gpu-kernels: {} are off on CUDA device {ordinal}: {e}", self.what)).ok();
        guard.push((ordinal, k));
        k
    }
}
