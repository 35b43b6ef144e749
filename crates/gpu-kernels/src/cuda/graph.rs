//! A step recorded once as a CUDA graph (cubecl 0.11's capture) and replayed.
//!
//! `graph_prepare` arms the stream's pools, the step runs once for real (the warm-up: it leaves
//! the pools holding every buffer the step asks for), `start_capture` opens the recording, the
//! step runs again and is only recorded, `stop_capture` instantiates it. cubecl guards every
//! page the recording touched for the graph's lifetime, so the step's intermediate buffers keep
//! their addresses; the recording refuses host reads, syncs, uploads and new allocations.

use burn::tensor::Device;
use cubecl::cuda::CudaRuntime;
use cubecl_runtime::client::{Client, Graph};
use cubecl_runtime::runtime::Runtime;

use crate::error::{Error, Result};

/// The cubecl client burn uses for `device` (this thread's stream), or `NotCuda`.
fn client(device: &Device) -> Result<Client> {
    match device.as_dispatch().clone().inner() {
        burn::backend::DispatchDevice::Cube(cubecl::Device::Cuda(d)) => Ok(CudaRuntime::client(&d)),
        other => Err(Error::NotCuda(format!("a step graph needs a CUDA device, got {other:?}"))),
    }
}

fn graph_err(call: &'static str) -> impl Fn(cubecl_runtime::server::ServerError) -> Error {
    move |e| Error::Cuda { call, reason: format!("{e:?}") }
}

/// A recorded step (see the module docs).
pub(crate) struct Recorded {
    graph: Graph,
}

/// Runs `step` once, then records it (see the module docs). The recording is closed whatever
/// the step returns.
pub(crate) fn record(device: &Device, step: &mut dyn FnMut() -> Result<()>) -> Result<Recorded> {
    let client = client(device)?;
    let mut phases = Phases::start();
    client.graph_prepare().map_err(graph_err("graph_prepare"))?;
    phases.mark("prepare");
    if let Err(e) = step() {
        // Closing from the prepared state unwinds it.
        let _ = client.stop_capture();
        return Err(e);
    }
    phases.mark("warm-up step");
    if let Err(e) = client.start_capture() {
        let _ = client.stop_capture();
        return Err(graph_err("start_capture")(e));
    }
    phases.mark("start_capture");
    let recorded = step();
    phases.mark("recorded step");
    let graph = client.stop_capture().map_err(graph_err("stop_capture"));
    phases.mark("stop_capture");
    phases.report();
    recorded?;
    Ok(Recorded { graph: graph? })
}

/// `KINDLING_GRAPH_TIMING=1`: each recording prints its phases' host times to stderr.
static TIMING: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_GRAPH_TIMING", "1");

/// Host time of each phase of a recording (see [`TIMING`]).
struct Phases {
    last: Option<std::time::Instant>,
    marks: Vec<(&'static str, f64)>,
}

impl Phases {
    fn start() -> Self {
        Self { last: TIMING.is_on().then(std::time::Instant::now), marks: Vec::new() }
    }

    fn mark(&mut self, phase: &'static str) {
        if let Some(last) = self.last {
            let now = std::time::Instant::now();
            self.marks.push((phase, (now - last).as_secs_f64() * 1e3));
            self.last = Some(now);
        }
    }

    fn report(&self) {
        if self.last.is_some() {
            let text: Vec<String> = self.marks.iter().map(|(p, ms)| format!("{p} {ms:.2} ms")).collect();
            eprintln!("graph recording: {}", text.join(", "));
        }
    }
}

impl Recorded {
    /// Enqueues one replay on the stream it was recorded on.
    pub(crate) fn replay(&self) -> Result<()> {
        // SAFETY: the graph's buffers are the recorded step's: pages cubecl guards for the
        // graph's lifetime, and the caller's state buffers, which `StepGraph`'s contract keeps
        // alive and untouched by other streams while it replays; replays and the caller's reads
        // are issued from the recording thread, on its stream.
        unsafe { self.graph.replay() }.map_err(graph_err("graph replay"))
    }
}
