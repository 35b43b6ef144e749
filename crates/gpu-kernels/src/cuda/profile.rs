//! A kernel profile of a stretch of work on a CUDA device, in process: every CubeCL launch
//! counted by kernel name and (optionally) timed on the device with events that are read only
//! at the end, so the kernels still run back to back; plus the cuBLASLt GEMMs, which CubeCL does
//! not see: how many, how long the host was blocked around them and (timed profiles, GEMMs
//! queued on burn's stream) their device time by shape, from a pair of events around each.
//!
//! The kernels' and the GEMMs' device times add up to the GPU's busy time; the wall time minus
//! that is time the GPU waited for the host (launch overhead, host synchronization).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cubecl::logging::{LaunchObservation, LaunchObserver, ProfileDuration, TimingRequest};
use cudarc::driver::{result as drv, sys as dsys};

/// One kernel's share of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelStat {
    /// The kernel's name as CubeCL reports it.
    pub name: String,
    /// Launches.
    pub launches: usize,
    /// Summed device time in seconds (0 when not timed).
    pub device_s: f64,
}

/// A finished profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Wall-clock seconds from start to finish.
    pub wall_s: f64,
    /// Every kernel, most device time first (most launches first when not timed).
    pub kernels: Vec<KernelStat>,
    /// cuBLASLt GEMMs issued.
    pub gemms: u64,
    /// Of those, the ones queued on burn's stream (the rest waited on the host).
    pub gemms_queued: u64,
    /// Seconds the host spent issuing them (for host-synchronized ones: waiting for burn's queue,
    /// then for the GEMM).
    pub gemm_host_s: f64,
    /// The queued GEMMs' device time by shape, most first (timed profiles only).
    pub gemm_shapes: Vec<GemmStat>,
}

/// The GEMMs of one shape in a timed profile.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmStat {
    /// `"<dtype> [batch×]m×n×k"`, the product's `M × N` output over `K`.
    pub shape: String,
    /// Calls.
    pub calls: usize,
    /// Summed device time in seconds.
    pub device_s: f64,
    /// Floating-point operations per second over those calls (`2·batch·m·n·k` each).
    pub flops_per_s: f64,
}

impl Profile {
    /// CubeCL launches in all.
    pub fn launches(&self) -> usize {
        self.kernels.iter().map(|k| k.launches).sum()
    }

    /// Summed CubeCL kernel device time in seconds.
    pub fn device_s(&self) -> f64 {
        self.kernels.iter().map(|k| k.device_s).sum()
    }

    /// Summed GEMM device time in seconds (timed profiles).
    pub fn gemm_device_s(&self) -> f64 {
        self.gemm_shapes.iter().map(|g| g.device_s).sum()
    }
}

/// A raw CUDA event (a driver handle, used only on the threads that record and read it in turn).
struct Event(dsys::CUevent);

// SAFETY: a CUevent is a driver handle valid from any thread of the process; each is recorded
// once (cubecl's server thread) and read and destroyed once after a device sync ([`Profiler::finish`]).
unsafe impl Send for Event {}

/// One timed GEMM: its shape and operations, and the events recorded around it.
struct TimedGemm {
    shape: String,
    flops: f64,
    start: Event,
    end: Event,
}

static TIMED_GEMMS: Mutex<Vec<TimedGemm>> = Mutex::new(Vec::new());
static TIME_GEMMS: AtomicBool = AtomicBool::new(false);

/// While a timed profile runs: runs `gemm` between two events recorded on `stream` (the
/// current context's) and keeps them for [`Profiler::finish`]; otherwise just runs it.
pub(crate) fn time_gemm<T>(stream: dsys::CUstream, shape: impl FnOnce() -> (String, f64), gemm: impl FnOnce() -> T) -> T {
    if !TIME_GEMMS.load(Ordering::Relaxed) {
        return gemm();
    }
    let flags = dsys::CUevent_flags::CU_EVENT_DEFAULT;
    let (Ok(start), Ok(end)) = (drv::event::create(flags), drv::event::create(flags)) else { return gemm() };
    // SAFETY: live events of the current context, a live stream of it.
    let recorded = unsafe { drv::event::record(start, stream) }.is_ok();
    let out = gemm();
    // SAFETY: as above.
    if recorded && unsafe { drv::event::record(end, stream) }.is_ok() {
        let (shape, flops) = shape();
        TIMED_GEMMS.lock().expect("profile lock").push(TimedGemm { shape, flops, start: Event(start), end: Event(end) });
    }
    out
}

/// The timed GEMMs by shape (waits for each end event; the events are destroyed).
fn gemm_stats() -> Vec<GemmStat> {
    let timed = std::mem::take(&mut *TIMED_GEMMS.lock().expect("profile lock"));
    let mut by_shape: HashMap<String, (usize, f64, f64)> = HashMap::new();
    for t in timed {
        // SAFETY: events recorded once on a stream of this process, destroyed here only.
        let ms = unsafe {
            let ms = drv::event::synchronize(t.end.0).and_then(|()| drv::event::elapsed(t.start.0, t.end.0)).ok();
            let _ = drv::event::destroy(t.start.0);
            let _ = drv::event::destroy(t.end.0);
            ms
        };
        if let Some(ms) = ms {
            let e = by_shape.entry(t.shape).or_default();
            e.0 += 1;
            e.1 += f64::from(ms) * 1e-3;
            e.2 += t.flops;
        }
    }
    let mut stats: Vec<GemmStat> = by_shape
        .into_iter()
        .map(|(shape, (calls, device_s, flops))| GemmStat {
            shape,
            calls,
            device_s,
            flops_per_s: if device_s > 0.0 { flops / device_s } else { 0.0 },
        })
        .collect();
    stats.sort_by(|a, b| b.device_s.total_cmp(&a.device_s).then(a.shape.cmp(&b.shape)));
    stats
}

#[derive(Default)]
struct Recorder {
    timed: bool,
    counts: Mutex<HashMap<&'static str, usize>>,
    pending: Mutex<Vec<(&'static str, ProfileDuration)>>,
}

impl LaunchObserver for Recorder {
    fn launched(&self, kernel: &'static str) {
        *self.counts.lock().expect("profile lock").entry(kernel).or_default() += 1;
    }

    fn timing(&self) -> TimingRequest {
        if self.timed { TimingRequest::Deferred } else { TimingRequest::None }
    }

    fn profiled(&self, kernel: &'static str, profile: ProfileDuration) {
        self.pending.lock().expect("profile lock").push((kernel, profile));
    }
}

static GEMMS: AtomicU64 = AtomicU64::new(0);
static GEMMS_QUEUED: AtomicU64 = AtomicU64::new(0);
static GEMM_NANOS: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicU64 = AtomicU64::new(0);

/// Records one cuBLASLt call issued from `since` until now (while a profile runs); `queued`: on
/// burn's stream.
pub(crate) fn record_gemm(since: Option<Instant>, queued: bool) {
    if let Some(since) = since {
        GEMMS.fetch_add(1, Ordering::Relaxed);
        GEMMS_QUEUED.fetch_add(u64::from(queued), Ordering::Relaxed);
        GEMM_NANOS.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// `Some(now)` while a profile runs (the start of a GEMM call to pass to [`record_gemm`]).
pub(crate) fn gemm_clock() -> Option<Instant> {
    (ACTIVE.load(Ordering::Relaxed) > 0).then(Instant::now)
}

/// A profile being recorded; [`Profiler::finish`] ends it.
pub struct Profiler {
    recorder: Arc<Recorder>,
    observation: LaunchObservation,
    start: Instant,
}

impl Profiler {
    /// Starts observing every CubeCL launch (process-wide); `timed` also times each on the device.
    pub fn start(timed: bool) -> Self {
        let recorder = Arc::new(Recorder { timed, ..Recorder::default() });
        let observation = LaunchObservation::new(recorder.clone());
        GEMMS.store(0, Ordering::Relaxed);
        GEMMS_QUEUED.store(0, Ordering::Relaxed);
        GEMM_NANOS.store(0, Ordering::Relaxed);
        TIME_GEMMS.store(timed, Ordering::Relaxed);
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Self { recorder, observation, start: Instant::now() }
    }

    /// Stops observing (call after the device has finished the work, e.g. after a sync) and reads
    /// the device timings.
    pub fn finish(self) -> Profile {
        let wall_s = self.start.elapsed().as_secs_f64();
        drop(self.observation);
        TIME_GEMMS.store(false, Ordering::Relaxed);
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
        let gemm_shapes = gemm_stats();
        let counts = std::mem::take(&mut *self.recorder.counts.lock().expect("profile lock"));
        let pending = std::mem::take(&mut *self.recorder.pending.lock().expect("profile lock"));
        let mut times: HashMap<&'static str, f64> = HashMap::new();
        for (name, profile) in pending {
            if let Some(ticks) = futures_lite::future::block_on(profile.resolve()) {
                *times.entry(name).or_default() += ticks.duration().as_secs_f64();
            }
        }
        let mut kernels: Vec<KernelStat> = counts
            .into_iter()
            .map(|(name, launches)| KernelStat { name: name.to_string(), launches, device_s: times.get(name).copied().unwrap_or(0.0) })
            .collect();
        kernels.sort_by(|a, b| b.device_s.total_cmp(&a.device_s).then(b.launches.cmp(&a.launches)).then(a.name.cmp(&b.name)));
        Profile {
            wall_s,
            kernels,
            gemms: GEMMS.load(Ordering::Relaxed),
            gemms_queued: GEMMS_QUEUED.load(Ordering::Relaxed),
            gemm_host_s: GEMM_NANOS.load(Ordering::Relaxed) as f64 * 1e-9,
            gemm_shapes,
        }
    }
}
