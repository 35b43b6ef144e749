//! The HF bitsandbytes 4-bit layout against what transformers 5 + bitsandbytes 0.50.2 saved for a
//! tiny Llama (`tests/fixtures/hf_llama_tiny`, made on CPU and on an H200): reading their tensors,
//! writing them back byte for byte, and producing the same tensors from the dense bf16 weights.

mod common;

use common::{hf_lookup, parse, raw, read, u16s};
use half::bf16;
use nf4_quant::{BnbKernel, BnbQuantizationConfig, HfDType, Nf4Tensor, SourceDType};

const WEIGHTS: [&str; 2] = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"];

fn file(kernel: BnbKernel) -> String {
    match kernel {
        BnbKernel::Cpu => "hf_llama_tiny/bnb_cpu.safetensors".into(),
        BnbKernel::Cuda => "hf_llama_tiny/bnb_cuda.safetensors".into(),
    }
}

fn check_against(kernel: BnbKernel) {
    let bytes = read(&file(kernel));
    let st = parse(&bytes);
    let dense_bytes = read("hf_llama_tiny/dense.safetensors");
    let dense = parse(&dense_bytes);
    let config_json: serde_json::Value = serde_json::from_slice(&read("hf_llama_tiny/quantization_config.json")).expect("json");
    let qcfg = BnbQuantizationConfig::from_json(&config_json).expect("quantization_config");
    for name in WEIGHTS {
        // Read transformers' tensors and write them back.
        let loaded = Nf4Tensor::from_hf_tensors(name, hf_lookup(&st)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.dtype(), SourceDType::Bf16);
        assert!(loaded.is_double_quant());
        let written = loaded.to_hf_tensors(name);
        let in_file: Vec<&str> = st.names().into_iter().filter(|n| n.starts_with(name)).collect();
        assert_eq!(written.len(), in_file.len(), "{name}: tensor count");
        for t in &written {
            let view = st.tensor(&t.name).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert_eq!(t.shape, view.shape(), "{}: shape", t.name);
            let dtype = match view.dtype() {
                safetensors::Dtype::U8 => HfDType::U8,
                safetensors::Dtype::F32 => HfDType::F32,
                other => panic!("{}: unexpected dtype {other:?}", t.name),
            };
            assert_eq!(t.dtype, dtype, "{}: dtype", t.name);
            assert!(t.data == view.data(), "{}: bytes differ", t.name);
        }

        // Quantize the dense bf16 weight ourselves: the same tensors, byte for byte.
        let shape = dense.tensor(name).expect("dense weight").shape().to_vec();
        let values: Vec<bf16> = u16s(&dense, name).into_iter().map(bf16::from_bits).collect();
        let ours = Nf4Tensor::quantize_bf16(&values, &shape, &qcfg.quant_config(kernel)).expect("quantize");
        for t in ours.to_hf_tensors(name) {
            assert!(t.data == raw(&st, &t.name), "{kernel:?} {}: our quantization differs from transformers'", t.name);
        }
    }
}

#[test]
fn transformers_cpu_checkpoint_reads_writes_and_requantizes_exactly() {
    check_against(BnbKernel::Cpu);
}

#[test]
fn transformers_cuda_checkpoint_reads_writes_and_requantizes_exactly() {
    check_against(BnbKernel::Cuda);
}

#[test]
fn quantization_config_round_trips() {
    let config_json: serde_json::Value = serde_json::from_slice(&read("hf_llama_tiny/quantization_config.json")).expect("json");
    let qcfg = BnbQuantizationConfig::from_json(&config_json).expect("parse");
    assert_eq!(qcfg.to_json(), config_json);
}
