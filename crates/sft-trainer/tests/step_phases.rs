//! `KINDLING_STEP_PHASES=1` marks every phase of a step (layer-recomputing or not), in order, each
//! with a host time no longer than its wall time; and the step's blocking reads are counted as host
//! waits. (Its own test binary: the switch is read once per process.)

mod common;

use burn::tensor::{DType, Device};
use sft_trainer::Trainer;
use sft_trainer::data::Example;
use sft_trainer::{host_wait, step_phases};

use common::{tiny_model, tiny_setup};

/// Trains two steps and returns each step's phases and counted host waits.
fn phases_of_two_steps(checkpointing: bool) -> Vec<(Vec<step_phases::Phase>, std::time::Duration)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let train: Vec<Example> = (0..2).map(|i| Example::all_learned((0..7).map(|t| 3 + ((i * 11 + t * 5) % 90) as u32).collect())).collect();
    let mut setup = tiny_setup(dir.path(), train);
    setup.args.max_steps = Some(2);
    setup.args.gradient_checkpointing = checkpointing;
    setup.args.max_grad_norm = 1.0;
    let device = Device::flex().autodiff();
    let mut trainer = Trainer::new(tiny_model(&device, DType::F32), setup).expect("trainer").without_checkpoints();
    let _ = (step_phases::take(), host_wait::take());
    let mut per_step = Vec::new();
    trainer
        .train(|_, _, _| {
            per_step.push((step_phases::take(), host_wait::take()));
        })
        .expect("train");
    per_step
}

#[test]
fn each_step_is_marked_phase_by_phase() {
    // SAFETY: the only test of this binary sets it before anything reads it.
    unsafe { std::env::set_var("KINDLING_STEP_PHASES", "1") };
    assert!(step_phases::enabled());
    let tail = ["gradient norm", "adamw", "new parameters"];
    let recomputing = [&["embed", "blocks", "head", "head backward", "blocks backward"][..], &tail].concat();
    let whole = [&["forward and backward"][..], &tail].concat();
    for (checkpointing, want) in [(true, recomputing), (false, whole)] {
        let per_step = phases_of_two_steps(checkpointing);
        assert_eq!(per_step.len(), 2);
        for (step, (phases, waited)) in per_step.iter().enumerate() {
            let case = format!("checkpointing {checkpointing}, step {step}");
            let names: Vec<&str> = phases.iter().map(|p| p.name).collect();
            assert_eq!(names, want, "{case}");
            for p in phases {
                assert!(p.host_s >= 0.0 && p.host_s <= p.wall_s, "{case}, {}: host {} s, wall {} s", p.name, p.host_s, p.wall_s);
            }
            assert!(!waited.is_zero(), "{case}: the loss and norm reads were not counted");
        }
    }
}
