//! Trainable parameter counts equal peft's: on the Llama-3-8B shape (from the preset) for the
//! recipe's q/v r64 and for all seven projections, and on a real model the adapters actually
//! attached add exactly that many parameters.

use burn::module::Module;
use burn::tensor::Device;
use llama_model::{LlamaConfig, LoadOptions, adapters, load, presets, weights};
use lora::{LoraConfig, TargetModules};

#[test]
fn llama3_8b_counts_equal_peft() {
    let c = presets::llama3_8b();
    let shapes = c.projection_shapes();
    let seed = LoraConfig::default();
    assert_eq!(seed.trainable_params(&shapes, c.num_layers), 27_262_976);
    let all = LoraConfig { target_modules: TargetModules::parse("all-linear").expect("targets"), ..seed };
    assert_eq!(all.trainable_params(&shapes, c.num_layers), 167_772_160);
}

#[test]
fn attached_adapters_add_the_counted_parameters() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_parity/gqa");
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    for targets in ["q_proj,v_proj", "all-linear", "gate_proj,down_proj"] {
        let mut model = load(weights::open(&dir).expect("w").as_ref(), &config, &LoadOptions::f32(&Device::flex())).expect("model");
        let before = model.num_params();
        let lora = LoraConfig { r: 8, target_modules: TargetModules::parse(targets).expect("t"), ..LoraConfig::default() };
        let added = adapters::attach_lora(&mut model, &lora).expect("attach");
        assert_eq!(added, lora.trainable_params(&config.projection_shapes(), config.num_layers), "{targets}");
        assert_eq!(model.num_params() - before, added, "{targets}: counted by burn's module visitor");
    }
}
