//! Gradients through LoRA-wrapped projections: on a dense base they equal HF+peft's (fixture
//! `llama-model/tests/fixtures/peft/make_fixture.py`); on an NF4 base they equal the dense
//! computation over the dequantized weights; the base never receives a gradient.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use llama_model::weights::safetensors::SafetensorsSource;
use llama_model::weights::{self, WeightSource};
use llama_model::{Llama, LlamaConfig, LoadOptions, adapters, load_quantized};
use lora::{BaseLinear, DenseLinear, Projection};
use nf4_quant::QuantConfig;
use sft_trainer::loss::causal_lm_loss;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llama-model/tests/fixtures")
}

fn model(device: &Device, quant: Option<&QuantConfig>) -> Llama {
    let dir = fixtures().join("hf_parity/gqa");
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let source = weights::open(&dir).expect("weights");
    let m = load_quantized(source.as_ref(), &config, &LoadOptions::f32(device), quant).expect("model").no_grad();
    let mut m = m;
    adapters::apply_peft_adapter(&mut m, &fixtures().join("peft/peft_saved")).expect("adapter");
    m
}

fn input_ids(device: &Device) -> Tensor<2, Int> {
    let expected = SafetensorsSource::open_file(&fixtures().join("hf_parity/gqa/expected.safetensors")).expect("ids");
    let (_, shape, bytes) = expected.read_raw("input_ids").expect("input_ids");
    let ids: Vec<i64> = bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect();
    Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), device)
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

/// `(loss, [(module, grad A, grad B)])` for the two modules the fixture recorded.
fn grads(model: &Llama, device: &Device) -> (f32, Vec<(String, Vec<f32>, Vec<f32>)>) {
    let ids = input_ids(device);
    let loss = causal_lm_loss(model.forward(ids.clone(), None), ids);
    let value: f32 = loss.clone().into_scalar();
    let g = loss.backward();
    let mut out = Vec::new();
    for (path, p) in model.projections() {
        if path == "model.layers.1.self_attn.v_proj" || path == "model.layers.0.mlp.down_proj" {
            let l = p.lora.as_ref().expect("adapter");
            out.push((path.clone(), host(l.a.val().grad(&g).expect("grad A")), host(l.b.val().grad(&g).expect("grad B"))));
        }
        match &p.base {
            BaseLinear::Dense(d) => assert!(d.weight.val().grad(&g).is_none(), "{path}: the base got a gradient"),
            BaseLinear::Nf4(n) => assert_eq!(n.num_params(), 0, "{path}: the NF4 base has no parameters"),
        }
    }
    (value, out)
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn dense_base_gradients_equal_peft() {
    let device = Device::flex().autodiff();
    let (loss, got) = grads(&model(&device, None), &device);
    let expected = SafetensorsSource::open_file(&fixtures().join("peft/expected_peft.safetensors")).expect("fixture");
    let want_loss = expected.read_f32("loss").expect("loss")[0];
    assert!((loss - want_loss).abs() < 1e-4 * want_loss.abs(), "loss {loss} vs peft {want_loss}");
    for (path, ga, gb) in got {
        for (which, ours) in [("lora_A", ga), ("lora_B", gb)] {
            let theirs = expected.read_f32(&format!("grad.{path}.{which}.weight")).expect("grad");
            let r = rel(&ours, &theirs);
            assert!(r < 1e-4, "{path}.{which}: relative error {r:.2e}");
        }
    }
}

#[test]
fn nf4_base_gradients_equal_the_dense_computation_over_dequantized_weights() {
    let device = Device::flex().autodiff();
    let nf4 = model(&device, Some(&QuantConfig::nf4().with_double_quant(true)));
    // The same network with every packed base replaced by its dequantized dense weight.
    let mut dense = nf4.clone();
    for (_, p) in dense.projections_mut() {
        if let BaseLinear::Nf4(n) = &p.base {
            let w = n.dequantize_weight().detach();
            let lora = p.lora.take();
            *p = Projection { base: BaseLinear::Dense(DenseLinear::new(w, None)), lora };
        }
    }
    let dense = dense.no_grad();
    let mut dense = dense;
    adapters::apply_peft_adapter(&mut dense, &fixtures().join("peft/peft_saved")).expect("adapter");
    let (l1, g1) = grads(&nf4, &device);
    let (l2, g2) = grads(&dense, &device);
    assert!((l1 - l2).abs() <= 1e-6 * l2.abs(), "loss {l1} vs {l2}");
    for ((p, a1, b1), (_, a2, b2)) in g1.iter().zip(&g2) {
        assert!(rel(a1, a2) < 1e-6 && rel(b1, b2) < 1e-6, "{p}: NF4 and dense gradients differ");
    }
}
