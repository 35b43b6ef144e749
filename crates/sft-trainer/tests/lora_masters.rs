//! A bf16 model's f32 LoRA factors. `lora_autocast` with f32 masters in the optimizer and bf16
//! copies in the model (the default) against the factors cast at each use
//! (`Trainer::with_factors_cast_per_use`): the same losses and the same saved adapter, bit for
//! bit, with and without gradient accumulation. And an interrupted, resumed run ends on the
//! uninterrupted run's adapter, with and without `lora_autocast` (the factors come back f32).

mod common;

use std::path::Path;

use burn::tensor::{DType, Device};
use lora::TargetModules;
use sft_trainer::data::Example;
use sft_trainer::{OptimizerKind, RunSetup, Trainer};

use common::{tiny_model, tiny_setup};

/// `lora_autocast` is a process-wide setting (each trainer sets it): one test at a time.
static AUTOCAST: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn examples() -> Vec<Example> {
    (0..6).map(|i| Example::all_learned((0..6 + 2 * i).map(|t| 3 + ((i * 11 + t * 5) % 90) as u32).collect())).collect()
}

fn setup(out: &Path, accumulation: usize, autocast: bool, resume: bool, stop_after: Option<usize>) -> RunSetup {
    let mut setup = tiny_setup(out, examples());
    setup.args.max_steps = Some(3);
    setup.args.per_device_train_batch_size = 2;
    setup.args.gradient_accumulation_steps = accumulation;
    setup.args.learning_rate = 1e-2;
    setup.args.optim = OptimizerKind::AdamwBf16;
    setup.args.max_grad_norm = 0.3;
    setup.args.save_steps = 1;
    setup.args.bf16 = true;
    setup.args.lora_autocast = autocast;
    setup.lora.dropout = 0.1;
    setup.lora.target_modules = TargetModules::parse("all-linear").expect("targets");
    setup.resume = resume;
    setup.stop_after = stop_after;
    setup
}

/// The losses, the final checkpoint's adapter bytes, and the dtype of the model's first factor
/// during training.
fn run(
    out: &Path,
    accumulation: usize,
    autocast: bool,
    cast_per_use: bool,
    resume: bool,
    stop_after: Option<usize>,
) -> (Vec<(usize, f64)>, Vec<u8>, DType) {
    let device = Device::flex().autodiff().gradient_checkpointing();
    let trainer = Trainer::new(tiny_model(&device, DType::BF16), setup(out, accumulation, autocast, resume, stop_after)).expect("trainer");
    let mut trainer = if cast_per_use { trainer.with_factors_cast_per_use() } else { trainer };
    let summary = trainer.train(|_, _, _| {}).expect("train");
    let factor =
        trainer.model().projections().into_iter().find_map(|(_, p)| p.lora.as_ref().map(|l| l.a.val().dtype())).expect("an adapter");
    let adapter = std::fs::read(sft_trainer::checkpoint::step_dir(out, 3).join("adapter_model.safetensors")).unwrap_or_default();
    (summary.losses, adapter, factor)
}

#[test]
fn bf16_copies_of_f32_masters_train_as_casting_each_use() {
    let _one = AUTOCAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().expect("tmp");
    for accumulation in [1, 2] {
        let at = |name: &str| dir.path().join(format!("{name}-{accumulation}"));
        let (masters, adapter, dtype) = run(&at("masters"), accumulation, true, false, false, None);
        let (cast, adapter_cast, dtype_cast) = run(&at("cast"), accumulation, true, true, false, None);
        assert_eq!((dtype, dtype_cast), (DType::BF16, DType::F32), "the model holds bf16 copies only with masters");
        assert_eq!(masters.len(), 3);
        assert_eq!(masters, cast, "accumulation {accumulation}: losses");
        assert!(!adapter.is_empty(), "a checkpoint at step 3");
        assert!(adapter == adapter_cast, "accumulation {accumulation}: the saved adapters differ");
    }
}

#[test]
fn a_resumed_bf16_run_ends_on_the_uninterrupted_runs_adapter() {
    let _one = AUTOCAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().expect("tmp");
    for autocast in [true, false] {
        let at = |name: &str| dir.path().join(format!("{name}-{autocast}"));
        let (full, adapter, _) = run(&at("full"), 2, autocast, false, false, None);
        let (first, _, _) = run(&at("resumed"), 2, autocast, false, false, Some(2));
        let (rest, adapter_resumed, dtype) = run(&at("resumed"), 2, autocast, false, true, None);
        assert_eq!(dtype, if autocast { DType::BF16 } else { DType::F32 }, "autocast {autocast}: the resumed model's factors");
        assert_eq!(first.len(), 2);
        assert_eq!(rest, full, "autocast {autocast}: losses");
        assert!(!adapter.is_empty() && adapter_resumed == adapter, "autocast {autocast}: the resumed run's adapter differs");
    }
}
