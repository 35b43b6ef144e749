//! `KINDLING_STEP_PHASES=1` (a measurement switch, off by default): where a training step's time
//! goes between the host and the device, phase by phase.
//!
//! At the end of each phase [`mark`] notes the host's time since the previous mark (issuing the
//! phase's work, including any wait on a full launch queue), synchronizes the device, and notes
//! the wall time since the previous mark. A phase whose wall time is well above its host time is
//! bound by the device; one whose two times agree is bound by the host only if its device work
//! is small (the optimizer's 448 small updates), since a host waiting on a full queue also keeps
//! pace with the device. The synchronizations add a bubble per phase, so a run with the switch
//! on is a little slower than one without.
//!
//! Phases of a layer-recomputing step (`sft_trainer::recompute`): `embed`, `blocks` (the
//! forward without a graph), `head` (final norm and loss), `head backward`, `blocks backward`
//! (each block recomputed and backpropagated); without recomputation one `forward and
//! backward`; then `gradient norm`, `adamw` and `new parameters` (the adapters replaced).

use std::cell::Cell;
use std::sync::Mutex;
use std::time::Instant;

use burn::tensor::Device;
use gpu_kernels::env_switch::EnvSwitch;

static ON: EnvSwitch = EnvSwitch::new("KINDLING_STEP_PHASES", "1");
static MARKS: Mutex<Vec<Phase>> = Mutex::new(Vec::new());

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// One phase of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// The phase's name.
    pub name: &'static str,
    /// Seconds the host spent from the previous mark until the phase's work was issued (waits on
    /// full queues included).
    pub host_s: f64,
    /// Seconds from the previous mark until the device had finished the phase.
    pub wall_s: f64,
}

/// Whether the switch is on.
pub fn enabled() -> bool {
    ON.is_on()
}

/// Starts a step's first phase now (switch on only).
pub fn start() {
    if enabled() {
        LAST.with(|l| l.set(Some(Instant::now())));
    }
}

/// Ends phase `name` (switch on and a phase started on this thread): notes the host time,
/// waits for `device`, notes the wall time, and starts the next phase.
pub fn mark(name: &'static str, device: &Device) {
    if !enabled() {
        return;
    }
    let Some(since) = LAST.with(Cell::get) else { return };
    let host_s = since.elapsed().as_secs_f64();
    device.sync().ok();
    let now = Instant::now();
    let wall_s = (now - since).as_secs_f64();
    if let Ok(mut marks) = MARKS.lock() {
        marks.push(Phase { name, host_s, wall_s });
    }
    LAST.with(|l| l.set(Some(now)));
}

/// The phases marked since the last call, in order, and clears them.
pub fn take() -> Vec<Phase> {
    MARKS.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_nothing_while_the_switch_is_off() {
        // The switch is read once per process; this crate's tests never set it.
        assert!(!enabled());
        start();
        mark("phase", &Device::flex());
        assert!(take().is_empty());
    }
}
