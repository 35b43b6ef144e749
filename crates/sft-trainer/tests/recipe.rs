//! The recipe on a tiny random model (the `gqa` fixture of llama-model): a fixed-seed run whose
//! losses are snapshotted, and an interrupted-then-resumed run that repeats it exactly.

mod common;

use std::path::Path;

use burn::tensor::{DType, Device};
use lora::{LoraConfig, TargetModules};
use sft_trainer::data::Example;
use sft_trainer::{OptimizerKind, RunSetup, ScheduleKind, Trainer, TrainingArgs};

use common::tiny_model;

/// 24 sequences of 5..=16 tokens that count up from a start token by a stride of 1, 2 or 3 (a
/// rule the model can learn and apply to held-out rows); the last third of each is the
/// completion.
fn examples() -> Vec<Example> {
    (0..24)
        .map(|i| {
            let len = 5 + (i * 7) % 12;
            let (start, stride) = ((i * 13) % 90, 1 + i % 3);
            let ids: Vec<u32> = (0..len).map(|t| 3 + ((start + t * stride) % 90) as u32).collect();
            let cut = len * 2 / 3;
            Example { loss_mask: (0..len).map(|t| t >= cut).collect(), input_ids: ids, seq_lengths: Vec::new() }
        })
        .collect()
}

fn setup(out: &Path, resume: bool, stop_after: Option<usize>) -> RunSetup {
    let ex = examples();
    RunSetup {
        args: TrainingArgs {
            max_steps: Some(8),
            per_device_train_batch_size: 4,
            gradient_accumulation_steps: 2,
            learning_rate: 5e-3,
            lr_scheduler_type: ScheduleKind::Cosine,
            warmup_steps: Some(2),
            logging_steps: 2,
            save_steps: 2,
            eval_steps: Some(4),
            ..TrainingArgs::default()
        },
        lora: LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.1,
            target_modules: TargetModules::parse("all-linear").expect("targets"),
            ..LoraConfig::default()
        },
        base_model_name: "kindling/tiny-gqa".into(),
        output_dir: out.to_path_buf(),
        pad_id: 2,
        train: ex[..20].to_vec(),
        eval: ex[20..].to_vec(),
        resume,
        stop_after,
    }
}

fn run(out: &Path, resume: bool, stop_after: Option<usize>) -> sft_trainer::RunSummary {
    run_with(out, resume, stop_after, TrainingArgs::default().optim)
}

fn run_with(out: &Path, resume: bool, stop_after: Option<usize>, optim: OptimizerKind) -> sft_trainer::RunSummary {
    let device = Device::flex().autodiff();
    let mut setup = setup(out, resume, stop_after);
    setup.args.optim = optim;
    let mut trainer = Trainer::new(tiny_model(&device, DType::F32), setup).expect("trainer");
    trainer.train(|_, _, _| {}).expect("train")
}

#[test]
fn fixed_seed_losses_are_stable_and_resume_is_exact() {
    let full_dir = tempfile::tempdir().expect("tmp");
    let full = run(full_dir.path(), false, None);
    assert_eq!(full.steps, 8);
    let rounded: Vec<String> = full.losses.iter().map(|(s, l)| format!("{s}: {l:.5}")).collect();
    insta::assert_yaml_snapshot!("tiny_recipe_losses", rounded);
    let (before, after) = (full.eval_loss_before.expect("eval"), full.eval_loss_after.expect("eval"));
    assert!(after < before, "held-out loss {before} → {after}");

    // Interrupted after 3 steps (checkpoint at step 2), then resumed from step 2.
    let dir = tempfile::tempdir().expect("tmp");
    let first = run(dir.path(), false, Some(3));
    assert_eq!(first.steps, 3);
    let resumed = run(dir.path(), true, None);
    assert_eq!(resumed.resumed_from, Some(2));
    for ((s1, a), (s2, b)) in full.losses.iter().zip(&resumed.losses) {
        assert_eq!(s1, s2);
        assert!((a - b).abs() <= 1e-5, "step {s1}: {a} vs {b}");
    }
    let a = std::fs::read(full_dir.path().join("checkpoints/step-8/adapter_model.safetensors")).expect("full");
    let b = std::fs::read(dir.path().join("checkpoints/step-8/adapter_model.safetensors")).expect("resumed");
    assert_eq!(a, b, "the final adapters are identical");
}

/// bf16 AdamW states: checkpoints hold them exactly (bf16 → f32 → bf16) and the stochastic
/// rounding draws depend only on the step and the tensor, so a resumed run ends on the same
/// adapter; its losses stay near the f32 states' run.
#[test]
fn bf16_optimizer_states_resume_exactly_and_follow_f32_states() {
    let full_dir = tempfile::tempdir().expect("tmp");
    let full = run_with(full_dir.path(), false, None, OptimizerKind::AdamwBf16);
    let f32_dir = tempfile::tempdir().expect("tmp");
    let f32_states = run_with(f32_dir.path(), false, None, OptimizerKind::Adamw32bit);
    for ((step, a), (_, b)) in full.losses.iter().zip(&f32_states.losses) {
        assert!((a - b).abs() <= 1e-2 * b, "step {step}: bf16 states {a}, f32 states {b}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    run_with(dir.path(), false, Some(3), OptimizerKind::AdamwBf16);
    let resumed = run_with(dir.path(), true, None, OptimizerKind::AdamwBf16);
    assert_eq!(resumed.resumed_from, Some(2));
    let a = std::fs::read(full_dir.path().join("checkpoints/step-8/adapter_model.safetensors")).expect("full");
    let b = std::fs::read(dir.path().join("checkpoints/step-8/adapter_model.safetensors")).expect("resumed");
    assert_eq!(a, b, "the final adapters are identical");
}

/// `tf32` reaches the process's f32 product precision when set (and is left alone when unset).
#[test]
fn the_tf32_argument_sets_the_f32_product_precision() {
    use gpu_kernels::F32MatmulPrecision::{Highest, Tf32};
    let dir = tempfile::tempdir().expect("tmp");
    let device = Device::flex().autodiff();
    for (tf32, want) in [(Some(true), Tf32), (None, Tf32), (Some(false), Highest), (None, Highest)] {
        let mut setup = setup(dir.path(), false, None);
        setup.args.tf32 = tf32;
        Trainer::new(tiny_model(&device, DType::F32), setup).expect("trainer");
        assert_eq!(gpu_kernels::f32_matmul_precision(), want, "after tf32 = {tf32:?}");
    }
}

#[test]
fn non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = setup(dir.path(), false, None);
    // A rate this large makes the weights overflow within a few steps.
    s.args.learning_rate = 1e30;
    s.args.max_grad_norm = 0.0;
    s.args.lr_scheduler_type = ScheduleKind::Constant;
    s.args.save_steps = 1;
    let device = Device::flex().autodiff();
    let mut trainer = Trainer::new(tiny_model(&device, DType::F32), s).expect("trainer");
    let err = trainer.train(|_, _, _| {}).expect_err("the loss must blow up");
    let sft_trainer::Error::NonFinite { step, loss } = err else { panic!("expected NonFinite, got {err}") };
    assert!(!loss.is_finite());
    let steps = sft_trainer::checkpoint::all_steps(dir.path());
    assert_eq!(steps.last().copied(), Some(step - 1), "checkpoints stop at the last good step");
    for s in steps {
        sft_trainer::checkpoint::load(&sft_trainer::checkpoint::step_dir(dir.path(), s)).expect("complete checkpoint");
    }
}
