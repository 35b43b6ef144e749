//! How the fused batch-1 NF4 products ([`crate::nf4_gemv_fused`] on CUDA) divide their work
//! among the GPU's warps. Speed only: every tuning computes the same products, each row's sum
//! over its 32-value vectors in the same per-lane order, so the results are equal bit for bit.
//!
//! The tuning in force is, in order: the one set by [`set_gemv_tuning`] (benchmarks comparing
//! tunings in one process), else the environment read once (`KINDLING_GEMV_ROWS`,
//! `KINDLING_GEMV_IN_FLIGHT`, `KINDLING_GEMV_PREFETCH` (0 or 1); an unset variable keeps the default),
//! else [`GemvTuning::DEFAULT`].

use std::sync::{OnceLock, RwLock};

/// The work division of one fused product launch (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemvTuning {
    /// Output rows of each weight a plane (32 lanes) computes, sharing each load of `x`: 1, 2
    /// or 4. SwiGLU planes compute this many rows of gate and of up.
    pub rows: usize,
    /// 16-byte weight vectors a lane loads before using any (over all its rows): 4 or 8.
    pub in_flight: usize,
    /// Whether a lane loads its next batch of vectors (and their scales) before computing the
    /// products of the current one, so that two batches are in flight instead of one.
    pub prefetch: bool,
}

impl GemvTuning {
    /// The tuning measured fastest over Llama-3-8B's decode shapes on the H200 (see
    /// `docs/benchmarks.md`).
    pub const DEFAULT: Self = Self { rows: 2, in_flight: 4, prefetch: true };

    /// Checks the fields' ranges.
    ///
    /// # Errors
    /// A message naming the field and the values it takes.
    pub fn validate(self) -> Result<Self, String> {
        if ![1, 2, 4].contains(&self.rows) {
            return Err(format!("rows must be 1, 2 or 4, got {}", self.rows));
        }
        if ![4, 8].contains(&self.in_flight) {
            return Err(format!("in_flight must be 4 or 8, got {}", self.in_flight));
        }
        Ok(self)
    }

    /// The default with the environment's overrides applied.
    ///
    /// # Errors
    /// A variable that is not a number of the field's range, named in the message.
    pub fn from_env() -> Result<Self, String> {
        let read = |name: &str, default: usize| -> Result<usize, String> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().map_err(|_| format!("{name}={v:?} is not a number")),
                Err(_) => Ok(default),
            }
        };
        let d = Self::DEFAULT;
        let t = Self {
            rows: read("KINDLING_GEMV_ROWS", d.rows)?,
            in_flight: read("KINDLING_GEMV_IN_FLIGHT", d.in_flight)?,
            prefetch: match read("KINDLING_GEMV_PREFETCH", usize::from(d.prefetch))? {
                0 => false,
                1 => true,
                v => return Err(format!("KINDLING_GEMV_PREFETCH={v} is not 0 or 1")),
            },
        };
        t.validate().map_err(|e| format!("KINDLING_GEMV_*: {e}"))
    }
}

static OVERRIDE: RwLock<Option<GemvTuning>> = RwLock::new(None);
static FROM_ENV: OnceLock<GemvTuning> = OnceLock::new();

/// Sets (or with `None` clears) the tuning for every later launch in this process.
///
/// # Panics
/// If the tuning is out of range ([`GemvTuning::validate`]).
pub fn set_gemv_tuning(tuning: Option<GemvTuning>) {
    if let Some(t) = tuning {
        t.validate().unwrap_or_else(|e| panic!("set_gemv_tuning: {e}"));
    }
    *OVERRIDE.write().unwrap_or_else(|e| e.into_inner()) = tuning;
}

/// The tuning in force (see the module docs).
///
/// # Panics
/// On the first call, if a `KINDLING_GEMV_*` variable is set to a value out of range.
pub fn gemv_tuning() -> GemvTuning {
    if let Some(t) = *OVERRIDE.read().unwrap_or_else(|e| e.into_inner()) {
        return t;
    }
    *FROM_ENV.get_or_init(|| GemvTuning::from_env().unwrap_or_else(|e| panic!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_fields_are_named() {
        assert_eq!(GemvTuning::DEFAULT.validate(), Ok(GemvTuning::DEFAULT));
        let bad = GemvTuning { rows: 3, ..GemvTuning::DEFAULT };
        assert!(bad.validate().expect_err("rows 3").contains("rows"));
        let bad = GemvTuning { in_flight: 2, ..GemvTuning::DEFAULT };
        assert!(bad.validate().expect_err("in_flight 2").contains("in_flight"));
    }

    #[test]
    fn an_override_wins_until_cleared() {
        let t = GemvTuning { rows: 4, in_flight: 8, prefetch: true };
        set_gemv_tuning(Some(t));
        assert_eq!(gemv_tuning(), t);
        set_gemv_tuning(None);
        assert_eq!(gemv_tuning(), GemvTuning::from_env().expect("the test environment sets no KINDLING_GEMV_*"));
    }
}
