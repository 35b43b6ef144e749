//! One step of work recorded once and replayed: a CUDA graph on CUDA (this crate's `cuda`
//! feature), so a replay costs one launch on the host instead of one per kernel.
//!
//! [`StepGraph::record`] runs the step once for real (the warm-up, which leaves the pools holding
//! every buffer the step asks for), then runs it again under capture, which records the launches
//! without executing them. Each [`StepGraph::replay`] then re-runs the recorded kernels on the
//! recorded buffers: the step must read its changing inputs from device buffers it updates in
//! place (e.g. [`crate::advance_decoding`]), never from launch scalars or host uploads, and it
//! must not read anything back, synchronize or allocate outside the pools while recorded.
//!
//! Contract: every tensor the step reads or writes across replays (its state) stays alive and
//! is touched by no other thread while the graph replays; reads of the results are issued from
//! the recording thread. The step's intermediate buffers are kept for the graph's lifetime.

use burn::tensor::Device;

#[cfg(not(feature = "cuda"))]
use crate::error::Error;
use crate::error::Result;

/// A recorded step (see the module docs).
pub struct StepGraph {
    #[cfg(feature = "cuda")]
    recorded: crate::cuda::graph::Recorded,
}

impl std::fmt::Debug for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGraph").finish_non_exhaustive()
    }
}

impl StepGraph {
    /// Whether steps on `device` can be recorded (a CUDA device in a `cuda` build).
    pub fn supported(device: &Device) -> bool {
        crate::gemm::is_cuda(device)
    }

    /// Runs `step` once, then records it (see the module docs). Recording is closed whatever
    /// the step returns.
    ///
    /// # Errors
    /// `NotCuda` off CUDA; the step's error; cubecl's refusal to record (an allocation, a sync
    /// or an upload inside the step).
    pub fn record(device: &Device, mut step: impl FnMut() -> Result<()>) -> Result<Self> {
        #[cfg(feature = "cuda")]
        {
            Ok(Self { recorded: crate::cuda::graph::record(device, &mut step)? })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = &mut step;
            Err(Error::NotCuda(format!("a step graph needs a CUDA device in a `cuda` build, got {device:?}")))
        }
    }

    /// Enqueues one replay of the recorded step on the recording thread's stream.
    ///
    /// # Errors
    /// The driver's refusal to launch the graph.
    pub fn replay(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        {
            self.recorded.replay()
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(Error::NotCuda("a step graph needs a `cuda` build".into()))
        }
    }
}
