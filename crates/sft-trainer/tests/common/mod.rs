//! The tiny model and run setup the trainer's integration tests share.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device};
use llama_model::{Llama, LlamaConfig, LoadOptions, load, weights};
use lora::{LoraConfig, TargetModules};
use sft_trainer::data::Example;
use sft_trainer::{RunSetup, ScheduleKind, TrainingArgs};

/// The tiny GQA model of the HF parity fixtures (2 layers, d 64), dense, in `dtype`.
pub fn tiny_model(device: &Device, dtype: DType) -> Llama {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llama-model/tests/fixtures/hf_parity/gqa");
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let options = LoadOptions::new(device, dtype);
    load(weights::open(&dir).expect("weights").as_ref(), &config, &options).expect("model")
}

/// A one-step run over `train` in one batch: constant lr 1e-3, LoRA r 4 / α 8 on q,v, no
/// dropout, a loss logged every step. Tests change the fields they are about.
pub fn tiny_setup(out: &Path, train: Vec<Example>) -> RunSetup {
    RunSetup {
        args: TrainingArgs {
            max_steps: Some(1),
            per_device_train_batch_size: train.len(),
            learning_rate: 1e-3,
            lr_scheduler_type: ScheduleKind::Constant,
            group_by_length: false,
            logging_steps: 1,
            save_steps: 100,
            ..TrainingArgs::default()
        },
        lora: LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: TargetModules::parse("q_proj,v_proj").expect("targets"),
            ..LoraConfig::default()
        },
        base_model_name: "tiny".into(),
        output_dir: out.to_path_buf(),
        pad_id: 2,
        train,
        eval: Vec::new(),
        resume: false,
        stop_after: None,
    }
}
