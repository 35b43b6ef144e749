//! Training arguments: the fields of HF `TrainingArguments` (+ trl's SFT options) that the
//! loop uses, with the seed recipe's values as defaults.

use serde::{Deserialize, Serialize};

use crate::schedule::ScheduleKind;
use crate::{Error, Result};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW, 32-bit states on the device.
    #[serde(rename = "adamw_32bit", alias = "adamw_torch", alias = "adamw_hf")]
    Adamw32bit,
    /// AdamW, 32-bit states in host memory streamed per update (bitsandbytes' paged AdamW).
    #[serde(rename = "paged_adamw_32bit")]
    PagedAdamw32bit,
    /// AdamW, bf16 states on the device written by stochastic rounding (half the states'
    /// memory; the update itself in f32).
    #[serde(rename = "adamw_bf16")]
    AdamwBf16,
}

impl OptimizerKind {
    /// The names the config accepts.
    pub const NAMES: [&'static str; 3] = ["adamw_32bit", "paged_adamw_32bit", "adamw_bf16"];

    /// Parses a config name (`adamw_32bit`, `paged_adamw_32bit`, `adamw_bf16`; `adamw_torch`
    /// and `adamw_hf` are `adamw_32bit`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the value and the accepted names.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "adamw_32bit" | "adamw_torch" | "adamw_hf" => Ok(Self::Adamw32bit),
            "paged_adamw_32bit" => Ok(Self::PagedAdamw32bit),
            "adamw_bf16" => Ok(Self::AdamwBf16),
            _ => Err(Error::Config(format!("`optim` `{name}` is not one of {}", Self::NAMES.join(", ")))),
        }
    }
}

/// The training loop's settings. Defaults are the seed recipe's `TrainingArguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingArgs {
    /// Passes over the training set (fractions allowed); ignored when `max_steps` is set.
    pub num_train_epochs: f64,
    /// Optimizer steps to run (overrides epochs).
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    pub per_device_train_batch_size: usize,
    /// Sequences per eval batch.
    pub per_device_eval_batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Optimizer.
    pub optim: OptimizerKind,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Adam β₁.
    pub adam_beta1: f64,
    /// Adam β₂.
    pub adam_beta2: f64,
    /// Adam ε.
    pub adam_epsilon: f64,
    /// Global gradient-norm clip (`0` = none).
    pub max_grad_norm: f64,
    /// Warmup as a fraction of the total steps.
    pub warmup_ratio: f64,
    /// Warmup steps (overrides the ratio).
    pub warmup_steps: Option<usize>,
    /// Schedule.
    pub lr_scheduler_type: ScheduleKind,
    /// Batch sequences of similar length (transformers' `LengthGroupedSampler`).
    pub group_by_length: bool,
    /// Log every N optimizer steps.
    pub logging_steps: usize,
    /// Save a checkpoint every N steps.
    pub save_steps: usize,
    /// Evaluate every N steps (`None` = at logging steps when there is an eval split).
    pub eval_steps: Option<usize>,
    /// Keep at most this many checkpoints (oldest removed).
    pub save_total_limit: Option<usize>,
    /// Seed of data order, adapter init and dropout.
    pub seed: u64,
    /// Compute in bf16 where the backend has it.
    pub bf16: bool,
    /// f32 products (the LoRA side path's) on TF32 tensor cores on CUDA (HF's `tf32`): `true`
    /// sets [`gpu_kernels::F32MatmulPrecision::Tf32`] for the process, `false` `Highest`, unset
    /// leaves the process's setting (`KINDLING_F32_MATMUL`, else `Highest`). Not written when
    /// unset, so runs from before the field keep their fingerprint (and resume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tf32: Option<bool>,
    /// The LoRA side path as bf16 autocast computes it (HF's Trainer with `bf16=True`): bf16
    /// copies of the f32 factors multiply the bf16 activations, and the bf16 result is added to
    /// the base's output; the optimizer updates f32 factors (see [`lora::autocast`]). The trainer
    /// keeps them as masters and gives the model bf16 copies written by the update (the values
    /// a cast at each use would give).
    /// Off: peft's f32 side path (the Python anchor's). Needs `bf16`. Not written when off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lora_autocast: bool,
    /// Recompute each decoder block in the backward instead of keeping every block's graph
    /// (HF's `gradient_checkpointing`; see [`crate::recompute`]): far less activation memory
    /// for one extra forward of each block.
    pub gradient_checkpointing: bool,
    /// Longest sequence (`None` = trl's default: the model's, capped at 1024).
    pub max_seq_length: Option<usize>,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        Self {
            num_train_epochs: 1.0,
            max_steps: None,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 4,
            gradient_accumulation_steps: 1,
            optim: OptimizerKind::PagedAdamw32bit,
            learning_rate: 2e-4,
            weight_decay: 0.001,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 0.3,
            warmup_ratio: 0.03,
            warmup_steps: None,
            lr_scheduler_type: ScheduleKind::Constant,
            group_by_length: true,
            logging_steps: 25,
            save_steps: 25,
            eval_steps: None,
            save_total_limit: None,
            seed: 42,
            bf16: false,
            tf32: None,
            lora_autocast: false,
            gradient_checkpointing: true,
            max_seq_length: None,
        }
    }
}

impl TrainingArgs {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, why: &str| Err(Error::Config(format!("`{k}` {why}")));
        if self.per_device_train_batch_size == 0 {
            return bad("per_device_train_batch_size", "must be positive");
        }
        if self.gradient_accumulation_steps == 0 {
            return bad("gradient_accumulation_steps", "must be positive");
        }
        if !(self.learning_rate > 0.0) {
            return bad("learning_rate", "must be positive");
        }
        if self.max_steps.is_none() && !(self.num_train_epochs > 0.0) {
            return bad("num_train_epochs", "must be positive when max_steps is not set");
        }
        if self.max_steps == Some(0) {
            return bad("max_steps", "must be positive");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", "must be in [0, 1)");
        }
        if self.logging_steps == 0 || self.save_steps == 0 {
            return bad("logging_steps/save_steps", "must be positive");
        }
        if self.lora_autocast && !self.bf16 {
            return bad("lora_autocast", "needs `bf16` (it sets the side path of bf16 activations)");
        }
        Ok(())
    }

    /// Total optimizer steps for a training set that yields `batches_per_epoch` micro-batches:
    /// `max_steps`, else `⌈epochs · ⌊batches / accumulation⌋⌉` (at least 1).
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        match self.max_steps {
            Some(n) => n,
            None => {
                let per_epoch = (batches_per_epoch / self.gradient_accumulation_steps).max(1);
                ((self.num_train_epochs * per_epoch as f64).ceil() as usize).max(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_is_read_when_given_and_left_out_of_the_written_args_when_unset() {
        let args: TrainingArgs = serde_json::from_str(r#"{"tf32": true}"#).expect("args");
        assert_eq!(args.tf32, Some(true));
        let unset = serde_json::to_value(TrainingArgs::default()).expect("json");
        assert!(unset.get("tf32").is_none(), "an unset tf32 keeps older runs' fingerprints: {unset}");
        let set = serde_json::to_value(TrainingArgs { tf32: Some(false), ..TrainingArgs::default() }).expect("json");
        assert_eq!(set["tf32"], serde_json::json!(false));
        let err = serde_json::from_str::<TrainingArgs>(r#"{"tf32": "yes"}"#).expect_err("a string is not a bool");
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn lora_autocast_is_written_only_when_on_and_needs_bf16() {
        let on: TrainingArgs = serde_json::from_str(r#"{"lora_autocast": true, "bf16": true}"#).expect("args");
        assert!(on.lora_autocast);
        on.validate().expect("valid with bf16");
        assert_eq!(serde_json::to_value(&on).expect("json")["lora_autocast"], serde_json::json!(true));
        let unset = serde_json::to_value(TrainingArgs::default()).expect("json");
        assert!(unset.get("lora_autocast").is_none(), "off keeps older runs' fingerprints: {unset}");
        let err = TrainingArgs { lora_autocast: true, bf16: false, ..TrainingArgs::default() }.validate().expect_err("no bf16");
        assert!(err.to_string().contains("`lora_autocast`") && err.to_string().contains("`bf16`"), "{err}");
    }
}
