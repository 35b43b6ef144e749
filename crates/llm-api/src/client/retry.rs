//! When and how long to wait before trying an HTTP call again.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Bounded retries with exponential backoff and jitter.
///
/// Attempt `n` (0-based) that fails with a retryable status (429, 5xx), a timeout or a dropped
/// connection waits `min(max_backoff, initial_backoff * 2^n) * (1 + jitter * u)` with `u`
/// uniform in `[0, 1)`, capped again at `max_backoff`; a server's `Retry-After` (seconds)
/// replaces the computed delay, capped the same way. Other 4xx statuses are never retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`0` = try once).
    pub max_retries: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Relative random extra wait in `[0, 1]` (spreads out clients that failed together).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 3, initial_backoff: Duration::from_millis(500), max_backoff: Duration::from_secs(30), jitter: 0.25 }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }

    /// The wait before retry number `attempt + 1`, given a uniform sample `u` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, u: f64) -> Duration {
        let exp = 2f64.powi(attempt.min(62) as i32);
        let base = (self.initial_backoff.as_secs_f64() * exp).min(self.max_backoff.as_secs_f64());
        let jittered = base * (1.0 + self.jitter.clamp(0.0, 1.0) * u.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.min(self.max_backoff.as_secs_f64()))
    }

    /// The wait before retry number `attempt + 1` with fresh randomness, or the server's
    /// `Retry-After` when it gave one.
    pub(crate) fn next_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.max_backoff),
            None => self.delay(attempt, uniform_sample()),
        }
    }
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || (500..=599).contains(&status)
}

/// A uniform sample in `[0, 1)` from the process's hash randomness (good enough for jitter).
fn uniform_sample() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_retries: 5, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_millis(1000), jitter: 0.5 }
    }

    #[test]
    fn delay_doubles_then_caps() {
        let p = policy();
        // u = 0: no jitter, 100 ms * 2^n capped at 1000 ms.
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(200));
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(800));
        assert_eq!(p.delay(4, 0.0), Duration::from_millis(1000));
        assert_eq!(p.delay(40, 0.0), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_adds_at_most_its_fraction_and_respects_the_cap() {
        let p = policy();
        // u = 0.5, jitter 0.5: 200 ms * (1 + 0.25) = 250 ms.
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(250));
        // 800 ms * 1.5 = 1200 ms, capped at 1000 ms.
        assert_eq!(p.delay(3, 0.999), Duration::from_millis(1000));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = policy();
        assert_eq!(p.next_delay(0, Some(Duration::from_millis(300))), Duration::from_millis(300));
        assert_eq!(p.next_delay(0, Some(Duration::from_secs(60))), Duration::from_millis(1000));
        let d = p.next_delay(2, None);
        assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(600), "{d:?}");
    }

    #[test]
    fn which_statuses_are_retried() {
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
