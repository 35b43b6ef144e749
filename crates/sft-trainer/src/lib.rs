//! Supervised fine-tuning (SFT) of Llama models with LoRA or QLoRA, as trl's `SFTTrainer` does
//! it: datasets in the shapes users have, trl's collation, an AdamW loop with HF's defaults,
//! and checkpoints that resume exactly.
//!
//! # Invariant
//! Only adapter parameters are trained; a run is a pure function of its settings and seed, so a
//! run killed at any point and resumed from its latest checkpoint produces the same losses and
//! adapter as an uninterrupted one, and no checkpoint on disk is ever partial.
#![warn(missing_docs)]

pub mod args;
pub mod callback;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod host_wait;
pub mod loss;
pub mod memory;
pub mod optim;
pub mod parallel;
pub mod recompute;
pub mod schedule;
pub mod step_phases;
pub mod trainer;

pub use args::{OptimizerKind, TrainingArgs};
pub use callback::{Callback, LogRecord};
pub use error::{Error, Result};
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{RunSetup, RunSummary, Trainer};
