//! Training in bf16 (the GPU compute dtype) on the CPU backend: every op of a step sees one dtype
//! on both sides (burn's GPU kernels read the right operand in the left one's dtype; Flex asserts
//! it in debug builds), and the losses follow the f32 run's.

mod common;

use std::path::Path;

use burn::tensor::{DType, Device};
use lora::TargetModules;
use sft_trainer::data::Example;
use sft_trainer::{OptimizerKind, Trainer};

use common::{tiny_model, tiny_setup};

fn examples() -> Vec<Example> {
    let mut out: Vec<Example> =
        (0..6).map(|i| Example::all_learned((0..5 + 2 * i).map(|t| 3 + ((i * 13 + t * 7) % 90) as u32).collect())).collect();
    // One BFD block of two sequences: the packed (masked) path.
    let (a, b): (Vec<u32>, Vec<u32>) = ((10..16).collect(), (40..45).collect());
    out.push(Example {
        loss_mask: vec![true; a.len() + b.len()],
        input_ids: [a.clone(), b.clone()].concat(),
        seq_lengths: vec![a.len(), b.len()],
    });
    out.push(Example::all_learned((20..31).collect()));
    out
}

fn losses(out: &Path, dtype: DType, optim: OptimizerKind, checkpointing: bool) -> (Vec<(usize, f64)>, Option<f64>) {
    let mut setup = tiny_setup(out, examples());
    setup.args.max_steps = Some(3);
    setup.args.per_device_train_batch_size = 2;
    setup.args.gradient_accumulation_steps = 2;
    setup.args.learning_rate = 1e-2;
    setup.args.optim = optim;
    setup.args.max_grad_norm = 0.3;
    setup.lora.dropout = 0.1;
    setup.lora.target_modules = TargetModules::parse("all-linear").expect("targets");
    setup.eval = examples().into_iter().take(2).collect();
    let device = if checkpointing { Device::flex().autodiff().gradient_checkpointing() } else { Device::flex().autodiff() };
    let summary = Trainer::new(tiny_model(&device, dtype), setup).expect("trainer").train(|_, _, _| {}).expect("train");
    (summary.losses, summary.eval_loss_after)
}

#[test]
fn bf16_steps_run_in_one_dtype_and_follow_f32() {
    let dir = tempfile::tempdir().expect("tmp");
    for optim in [OptimizerKind::Adamw32bit, OptimizerKind::PagedAdamw32bit, OptimizerKind::AdamwBf16] {
        let name = format!("{optim:?}");
        let (bf16, eval_bf16) = losses(&dir.path().join(format!("bf16-{name}")), DType::BF16, optim, false);
        let (f32, eval_f32) = losses(&dir.path().join(format!("f32-{name}")), DType::F32, optim, false);
        eprintln!("{name}: bf16 {bf16:?} eval {eval_bf16:?}; f32 {f32:?} eval {eval_f32:?}");
        assert_eq!(bf16.len(), 3, "{name}");
        for ((step, b), (_, f)) in bf16.iter().zip(&f32) {
            assert!(b.is_finite(), "{name}: step {step} bf16 loss {b}");
            assert!((b - f).abs() <= 2e-2 * f, "{name}: step {step}: bf16 loss {b} vs f32 {f}");
        }
        let (eb, ef) = (eval_bf16.expect("eval"), eval_f32.expect("eval"));
        assert!((eb - ef).abs() <= 2e-2 * ef, "{name}: held-out loss bf16 {eb} vs f32 {ef}");
    }
}

/// burn's balanced checkpointing (memory-bound ops recomputed in the backward pass) through the
/// custom backward ops of the linears and attention: the same losses as without it.
#[test]
fn gradient_checkpointing_gives_the_same_losses() {
    let dir = tempfile::tempdir().expect("tmp");
    let (plain, eval_plain) = losses(&dir.path().join("plain"), DType::BF16, OptimizerKind::Adamw32bit, false);
    let (ckpt, eval_ckpt) = losses(&dir.path().join("ckpt"), DType::BF16, OptimizerKind::Adamw32bit, true);
    eprintln!("plain {plain:?} {eval_plain:?}; checkpointed {ckpt:?} {eval_ckpt:?}");
    for ((step, a), (_, b)) in plain.iter().zip(&ckpt) {
        assert!((a - b).abs() <= 1e-6 * a.abs(), "step {step}: {a} without checkpointing, {b} with");
    }
    assert_eq!(plain.len(), ckpt.len());
}
