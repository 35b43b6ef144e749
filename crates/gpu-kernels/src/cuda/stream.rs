//! Foreign work (cuBLASLt) enqueued on burn's own CUDA stream, in order with burn's kernels, so
//! the host never waits for the GPU around it.
//!
//! cubecl 0.11 issues a thread's launches from the device's runner thread, on a non-blocking
//! `CUstream` of that thread's own, and exposes neither. What it does expose:
//! - `DeviceHandle::<CudaServer>::submit` runs a closure on the runner thread, after every task the
//!   calling thread queued before it (launches, allocations), with the caller's `StreamId` current
//!   and `&mut CudaServer` in hand (`get_resource` there turns a handle into a device address);
//! - the server's `Debug` text, which names each pool slot's handle (`server_debug`).
//!
//! The handle read from the text is used only after a check that no other stream passes: with
//! burn's queue drained, the candidate is made to wait on a flag in mapped host memory
//! (`cuStreamWaitValue32`), and burn's own sync of this thread's stream must then still be
//! blocked 100 ms later, when a plain host store releases the flag. Once per thread and device. When any step fails, or with
//! `KINDLING_GEMM_SYNC=1`, the thread stays on the host-synchronized path (`interop`) and a
//! warning says why once.
//!
//! Errors inside a submitted task cannot be returned to the caller that queued it; they are kept
//! and returned by the next [`check_deferred`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn_cubecl::{CubeDevice, tensor::CubeTensor};
use cubecl::device_handle::DeviceHandle;
use cubecl_environment::stream::StreamId;
use cubecl_runtime::runtime::Runtime;
use cudarc::driver::{result as drv, sys as dsys};

use super::cublaslt;
use super::interop::{cuda_ordinal, wait_for_burn};
use crate::error::{Error, Result};

pub(crate) type CudaServer = <cubecl::cuda::CudaRuntime as Runtime>::Server;

/// A `CUstream` as an address, so closures holding it are `Send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RawStream(pub(crate) u64);

impl RawStream {
    pub(crate) fn sys(self) -> dsys::CUstream {
        self.0 as dsys::CUstream
    }
}

/// Where this thread's foreign work goes on one device.
#[derive(Clone)]
struct Route {
    handle: DeviceHandle<CudaServer>,
    stream: Option<RawStream>,
}

thread_local! {
    static ROUTES: RefCell<HashMap<usize, Route>> = RefCell::new(HashMap::new());
    static HOST_SYNC: Cell<bool> = const { Cell::new(false) };
}

/// On this thread, sends every following cuBLASLt call down the host-synchronized path (`true`)
/// or back to burn's stream where it was verified (`false`). For comparisons and tests.
pub fn host_synchronized_gemms(on: bool) {
    HOST_SYNC.with(|h| h.set(on));
}

static DEFERRED: Mutex<Option<String>> = Mutex::new(None);

/// Keeps the first error of a task that ran on the runner thread.
pub(crate) fn defer_error(e: Error) {
    if let Ok(mut slot) = DEFERRED.lock() {
        slot.get_or_insert_with(|| e.to_string());
    }
}

/// Returns (once) the error of an earlier asynchronous task, if one failed.
pub(crate) fn check_deferred() -> Result<()> {
    match DEFERRED.lock().ok().and_then(|mut slot| slot.take()) {
        Some(reason) => Err(Error::Cuda { call: "an earlier asynchronous cuBLASLt call", reason }),
        None => Ok(()),
    }
}

/// The runner handle and, when it could be verified, burn's stream for this thread on the device
/// of `tensor` (found on first use).
fn route(tensor: &CubeTensor) -> Result<Route> {
    let ordinal = cuda_ordinal(&tensor.device)?;
    if let Some(r) = ROUTES.with(|routes| routes.borrow().get(&ordinal).cloned()) {
        return Ok(r);
    }
    let handle = DeviceHandle::<CudaServer>::new(tensor.client.service_id().device);
    let stream = if std::env::var("KINDLING_GEMM_SYNC").is_ok_and(|v| v == "1") {
        None
    } else {
        match find_stream(&handle, &tensor.device, ordinal) {
            Ok(s) => Some(s),
            Err(reason) => {
                eprintln!("gpu-kernels: cuBLASLt stays host-synchronized on CUDA device {ordinal} for this thread: {reason}");
                None
            }
        }
    };
    let r = Route { handle, stream };
    ROUTES.with(|routes| routes.borrow_mut().insert(ordinal, r.clone()));
    Ok(r)
}

/// Queues `task` behind burn's work on this thread's stream of `tensor`'s device; it runs on the
/// runner thread with the server and the stream. `Ok(false)`: no verified stream (nothing queued;
/// the caller takes the host-synchronized path).
pub(crate) fn enqueue(tensor: &CubeTensor, task: impl FnOnce(&mut CudaServer, StreamId, RawStream) + Send + 'static) -> Result<bool> {
    if HOST_SYNC.with(Cell::get) {
        return Ok(false);
    }
    let Route { handle, stream } = route(tensor)?;
    let Some(stream) = stream else { return Ok(false) };
    let id = StreamId::current();
    handle.submit(move |server: &mut CudaServer| task(server, id, stream));
    Ok(true)
}

/// With `KINDLING_GEMM_TRACE=1`, one stderr line per step of the stream check.
fn trace(step: &str) {
    if std::env::var("KINDLING_GEMM_TRACE").is_ok_and(|v| v == "1") {
        eprintln!("gpu-kernels stream check [{:?} {:?}]: {step}", std::thread::current().id(), std::time::SystemTime::now());
    }
}

/// Reads this thread's stream handle out of the server and checks it on the device.
fn find_stream(handle: &DeviceHandle<CudaServer>, device: &CubeDevice, ordinal: usize) -> std::result::Result<RawStream, String> {
    let id = StreamId::current();
    trace(&format!("stream id {}: draining burn's queue", id.value));
    wait_for_burn(device).map_err(|e| e.to_string())?;
    let text = handle.submit_blocking(|server: &mut CudaServer| format!("{server:?}")).map_err(|e| format!("{e:?}"))?;
    let raw = crate::server_debug::stream_handle_in(&text, id.value)
        .ok_or_else(|| format!("no stream handle for stream id {} in the server's Debug text", id.value))?;
    trace(&format!("candidate {raw:#x}"));
    let stream = RawStream(raw);
    let ctx = cublaslt::context(ordinal).map_err(|e| e.to_string())?;
    let mut stream_ctx: dsys::CUcontext = std::ptr::null_mut();
    // SAFETY: a query on a handle that may not be a stream; the driver validates it.
    let status = unsafe { dsys::cuStreamGetCtx(stream.sys(), &mut stream_ctx) };
    if status != dsys::CUresult::CUDA_SUCCESS || stream_ctx != ctx {
        return Err(format!("handle {raw:#x} is not a stream of the device's primary context ({status:?})"));
    }
    let blocked = blocks_burns_sync(device, stream)?;
    trace(&format!("candidate {raw:#x} blocked burn's sync: {blocked}"));
    if !blocked {
        return Err(format!("handle {raw:#x} is a stream, but not the one burn syncs on this thread"));
    }
    Ok(stream)
}

/// Pinned host flags mapped into the device's address space: `cuStreamWaitValue32` polls them
/// and a plain host store releases them, so no driver call (which could wait on a context lock
/// held by a device-wide synchronization, e.g. a `cuMemFree` behind the blocked stream) is
/// needed to end a wait. One page, one slot per check, never freed.
struct FlagPage {
    host: usize,
    device: u64,
    used: usize,
}

const FLAG_SLOTS: usize = 1024;

static FLAGS: Mutex<Option<FlagPage>> = Mutex::new(None);

/// Makes `stream` wait on a mapped host flag and reports whether burn's sync of this thread's
/// stream was still blocked when the flag was released 100 ms later (always released). Checks
/// run one at a time.
fn blocks_burns_sync(device: &CubeDevice, stream: RawStream) -> std::result::Result<bool, String> {
    let mut page = FLAGS.lock().map_err(|_| "the flag lock is poisoned".to_string())?;
    if page.is_none() {
        const PORTABLE_DEVICEMAP: u32 = 0x01 | 0x02;
        // SAFETY: pinned host memory for the process; the context is current (`context`).
        let host = unsafe { drv::malloc_host(4 * FLAG_SLOTS, PORTABLE_DEVICEMAP) }.map_err(|e| format!("cuMemHostAlloc: {e:?}"))?;
        let mut device: dsys::CUdeviceptr = 0;
        // SAFETY: `host` was allocated mapped just above.
        let status = unsafe { dsys::cuMemHostGetDevicePointer_v2(&mut device, host, 0) };
        if status != dsys::CUresult::CUDA_SUCCESS {
            return Err(format!("cuMemHostGetDevicePointer: {status:?}"));
        }
        *page = Some(FlagPage { host: host as usize, device, used: 0 });
    }
    let page = page.as_mut().ok_or("no flag page")?;
    if page.used == FLAG_SLOTS {
        return Err("every flag slot is used".into());
    }
    let slot = page.used;
    page.used += 1;
    let host = (page.host + 4 * slot) as *mut u32;
    let flag = page.device + 4 * slot as u64;
    // SAFETY: a slot of the mapped page that no wait uses yet.
    unsafe { std::ptr::write_volatile(host, 0) };
    // SAFETY: `stream` is a live stream of this context (checked); the flag lives for the process.
    let waiting = unsafe {
        dsys::cuStreamWaitValue32_v2(stream.sys(), flag, 1, 0 /* GEQ */)
    };
    if waiting != dsys::CUresult::CUDA_SUCCESS {
        return Err(format!("cuStreamWaitValue32: {waiting:?}"));
    }
    trace(&format!("waiting on flag slot {slot}"));
    let synced = Arc::new(AtomicBool::new(false));
    let releaser = {
        let synced = synced.clone();
        let host = host as usize;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let blocked = !synced.load(Ordering::SeqCst);
            // SAFETY: the slot is live for the process; the device only reads it.
            unsafe { std::ptr::write_volatile(host as *mut u32, 1) };
            std::sync::atomic::fence(Ordering::SeqCst);
            trace("flag released");
            blocked
        })
    };
    let sync = wait_for_burn(device);
    synced.store(true, Ordering::SeqCst);
    let blocked = releaser.join().map_err(|_| "the flag-release thread panicked".to_string())?;
    sync.map_err(|e| e.to_string())?;
    Ok(blocked)
}
