//! Time the host spends blocked on the device's results (the loss before the backward, the
//! gradient norm after the updates are queued): how far the device ran behind the host at those
//! reads. Waits inside launches (CubeCL's queue or the driver's launch queue full) are not
//! counted, so small waits alone do not make a step host-bound: on the H200 the all-linear step
//! waited 25 ms here and was still GPU-bound (`docs/cuda.md`, session 19).
//!
//! One process-wide counter; [`take`] reads and resets it (the benchmark takes it once a step).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static WAITED_NS: AtomicU64 = AtomicU64::new(0);

/// Runs `read` (a blocking read-back) and adds its duration to the counter.
pub fn timed<T>(read: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = read();
    add(start.elapsed());
    out
}

/// Adds a wait measured elsewhere (e.g. a caller's own device synchronization).
pub fn add(waited: Duration) {
    WAITED_NS.fetch_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// The waits summed since the last call, and resets the sum.
pub fn take() -> Duration {
    Duration::from_nanos(WAITED_NS.swap(0, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_add_up() {
        // Other tests of this crate may add to the counter meanwhile (none takes it): the sum
        // holds at least this test's waits.
        add(Duration::from_millis(3));
        let value = timed(|| {
            std::thread::sleep(Duration::from_millis(2));
            7
        });
        assert_eq!(value, 7);
        let got = take();
        assert!(got >= Duration::from_millis(5), "{got:?}");
    }
}
