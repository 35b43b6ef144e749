//! Hooks into the training loop (logging, LLM-judged evaluation, saves).

use std::path::Path;

use llama_model::Llama;
use serde::{Deserialize, Serialize};

use crate::Result;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Optimizer step.
    pub step: usize,
    /// Epoch as a fraction (e.g. `0.4`).
    pub epoch: f64,
    /// Mean training loss since the previous record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Learning rate of the last update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Gradient norm before clipping, last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Trained (non-padding) tokens per second since the previous record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Peak resident memory of the process so far, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Held-out loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// Extra values from callbacks (e.g. judged scores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

impl LogRecord {
    /// An empty record for a step.
    pub fn at(step: usize, epoch: f64) -> Self {
        Self {
            step,
            epoch,
            loss: None,
            learning_rate: None,
            grad_norm: None,
            tokens_per_s: None,
            peak_rss_mib: None,
            eval_loss: None,
            extra: None,
        }
    }
}

/// Something that watches (and may evaluate) the run.
pub trait Callback {
    /// Called with every record written to `metrics.jsonl`.
    fn on_log(&mut self, _record: &LogRecord) {}

    /// Called at evaluation steps with the model in inference mode; the returned value is
    /// logged under `extra` (e.g. an LLM judge's scores on a golden set).
    ///
    /// # Errors
    /// Whatever the evaluation reports; the run logs it and continues.
    fn on_evaluate(&mut self, _step: usize, _model: &Llama) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// Called after a checkpoint is saved.
    fn on_save(&mut self, _step: usize, _dir: &Path) {}
}
