//! Learning-rate schedules with HF transformers' semantics.
//!
//! With `W` warmup steps and `T` total steps, at step `t` (0-based, the rate used for the
//! update that makes step `t + 1`):
//! - `constant`: `lr` (HF's `constant` ignores warmup),
//! - `constant_with_warmup`: `lr · min(1, t/W)`,
//! - `linear`: `lr · t/W` during warmup, then `lr · max(0, (T − t)/(T − W))`,
//! - `cosine`: warmup, then `lr · ½(1 + cos(π · (t − W)/(T − W)))`.
//!
//! `W = ⌈warmup_ratio · T⌉` unless `warmup_steps` is given.

use serde::{Deserialize, Serialize};

/// A schedule name as in `TrainingArguments.lr_scheduler_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant rate (warmup ignored, as HF does).
    Constant,
    /// Linear warmup, then constant.
    ConstantWithWarmup,
    /// Linear warmup, linear decay to 0.
    Linear,
    /// Linear warmup, cosine decay to 0.
    Cosine,
}

/// A schedule resolved for a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Shape.
    pub kind: ScheduleKind,
    /// Peak rate.
    pub lr: f64,
    /// Warmup steps `W`.
    pub warmup: usize,
    /// Total steps `T`.
    pub total: usize,
}

impl Schedule {
    /// `W = warmup_steps` if given, else `⌈warmup_ratio · T⌉`.
    pub fn new(kind: ScheduleKind, lr: f64, total: usize, warmup_ratio: f64, warmup_steps: Option<usize>) -> Self {
        let warmup = warmup_steps.unwrap_or_else(|| (warmup_ratio * total as f64).ceil() as usize);
        Self { kind, lr, warmup, total }
    }

    /// The rate for the update made at step `t` (0-based).
    pub fn lr_at(&self, t: usize) -> f64 {
        let (t, w, total) = (t as f64, self.warmup as f64, self.total as f64);
        let warm = if self.warmup > 0 && t < w { Some(t / w) } else { None };
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::ConstantWithWarmup => warm.unwrap_or(1.0),
            ScheduleKind::Linear => warm.unwrap_or_else(|| ((total - t) / (total - w).max(1.0)).max(0.0)),
            ScheduleKind::Cosine => warm.unwrap_or_else(|| {
                let progress = (t - w) / (total - w).max(1.0);
                0.5 * (1.0 + (std::f64::consts::PI * progress).cos()).max(0.0)
            }),
        };
        self.lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_ignores_warmup_like_hf() {
        let s = Schedule::new(ScheduleKind::Constant, 2e-4, 100, 0.03, None);
        assert_eq!(s.warmup, 3);
        assert_eq!(s.lr_at(0), 2e-4);
    }

    #[test]
    fn linear_and_cosine_shapes() {
        let s = Schedule::new(ScheduleKind::Linear, 1.0, 10, 0.2, None);
        assert_eq!((s.lr_at(0), s.lr_at(1), s.lr_at(2), s.lr_at(6), s.lr_at(10)), (0.0, 0.5, 1.0, 0.5, 0.0));
        let c = Schedule::new(ScheduleKind::Cosine, 1.0, 10, 0.0, Some(2));
        assert_eq!(c.lr_at(2), 1.0);
        assert!((c.lr_at(6) - 0.5).abs() < 1e-12);
        assert!(c.lr_at(10).abs() < 1e-12);
        let w = Schedule::new(ScheduleKind::ConstantWithWarmup, 1.0, 10, 0.0, Some(4));
        assert_eq!((w.lr_at(1), w.lr_at(4), w.lr_at(9)), (0.25, 1.0, 1.0));
    }
}
