//! A BFD block trains on exactly what its sequences would give unpacked: the first step's loss
//! of one packed block equals that of the same sequences as a padded batch.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use llama_model::{Llama, LlamaConfig, LoadOptions, load, weights};
use lora::{LoraConfig, TargetModules};
use sft_trainer::data::Example;
use sft_trainer::{RunSetup, ScheduleKind, Trainer, TrainingArgs};

fn tiny_model(device: &Device) -> Llama {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llama-model/tests/fixtures/hf_parity/gqa");
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    load(weights::open(&dir).expect("weights").as_ref(), &config, &LoadOptions::f32(device)).expect("model")
}

fn first_loss(out: &Path, train: Vec<Example>) -> f64 {
    let batch = train.len();
    let setup = RunSetup {
        args: TrainingArgs {
            max_steps: Some(1),
            per_device_train_batch_size: batch,
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
            target_modules: TargetModules::parse("q_proj,v_proj").expect("t"),
            ..LoraConfig::default()
        },
        base_model_name: "tiny".into(),
        output_dir: out.to_path_buf(),
        pad_id: 2,
        train,
        eval: Vec::new(),
        resume: false,
        stop_after: None,
    };
    let device = Device::flex().autodiff();
    let mut trainer = Trainer::new(tiny_model(&device), setup).expect("trainer");
    trainer.train(|_, _, _| {}).expect("train").losses[0].1
}

#[test]
fn a_packed_block_has_the_loss_of_its_sequences() {
    let dir = tempfile::tempdir().expect("tmp");
    let seqs: Vec<Vec<u32>> = vec![vec![5, 17, 9, 44], vec![40, 3, 33, 8, 61, 7], vec![12, 13, 14]];
    let unpacked: Vec<Example> = seqs.iter().cloned().map(Example::all_learned).collect();
    let ids: Vec<u32> = seqs.concat();
    let block = Example { loss_mask: vec![true; ids.len()], input_ids: ids.clone(), seq_lengths: seqs.iter().map(Vec::len).collect() };
    let concatenated = Example::all_learned(ids);

    let separate = first_loss(&dir.path().join("separate"), unpacked);
    let packed = first_loss(&dir.path().join("packed"), vec![block]);
    assert!((packed - separate).abs() <= 1e-5 * separate, "packed {packed} vs separate {separate}");
    // Without boundaries the same tokens attend across sequences and count their starts.
    let plain = first_loss(&dir.path().join("plain"), vec![concatenated]);
    assert!((plain - separate).abs() > 1e-3, "concatenation without packing should differ: {plain} vs {separate}");
}
