//! The model in bf16 (the GPU compute dtype) on the CPU backend: logits of the tiny HF fixtures
//! against transformers' f32 logits within bf16's precision, dense and NF4 bases, cached decoding,
//! packed rows and LoRA gradients. Every binary op must see one dtype on both sides (burn's GPU
//! kernels read the right operand in the left one's dtype; Flex asserts it in debug builds).

mod common;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use llama_model::weights::{self, WeightSource};
use llama_model::{GenerateOptions, Llama, LlamaConfig, LoadOptions, adapters, generate, load_quantized};
use lora::{LoraConfig, TargetModules};
use nf4_quant::QuantConfig;

use common::{expected, fixture, input_ids, relative_error};

fn bf16_model(case: &str, quant: Option<&QuantConfig>, device: &Device) -> (Llama, LlamaConfig) {
    let dir = fixture(case);
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let source = weights::open(&dir).expect("weights");
    let options = LoadOptions::new(&device, DType::BF16);
    (load_quantized(source.as_ref(), &config, &options, quant).expect("model"), config)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.cast(DType::F32).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

#[test]
fn bf16_logits_match_transformers_within_bf16_precision() {
    let device = Device::flex();
    for case in ["gqa", "llama3_rope", "tied"] {
        let theirs = expected(case).read_f32("logits").expect("logits");
        let (model, _) = bf16_model(case, None, &device);
        let logits = model.forward(input_ids(case, &device), None);
        assert_eq!(logits.dtype(), DType::BF16, "{case}: activations stay in bf16");
        let rel = relative_error(&host(logits), &theirs);
        eprintln!("{case}: bf16 relative error {rel:.2e}");
        // bf16 keeps 8 bits of mantissa (2⁻⁹ ≈ 2e-3 per rounding); a few layers compound it.
        assert!(rel < 3e-2, "{case}: bf16 relative error {rel:.2e}");
        assert!(rel > 1e-6, "{case}: the forward did not run in bf16 (error {rel:.2e})");
    }
}

#[test]
fn bf16_nf4_base_matches_its_f32_forward() {
    let device = Device::flex();
    let quant = QuantConfig::nf4();
    let (model, config) = bf16_model("gqa", Some(&quant), &device);
    let source = weights::open(&fixture("gqa")).expect("weights");
    let f32_model = load_quantized(source.as_ref(), &config, &LoadOptions::f32(&device), Some(&quant)).expect("model");
    let ids = input_ids("gqa", &device);
    let rel = relative_error(&host(model.forward(ids.clone(), None)), &host(f32_model.forward(ids, None)));
    eprintln!("gqa nf4: bf16 vs f32 relative error {rel:.2e}");
    assert!(rel < 3e-2, "bf16 NF4 forward vs f32: {rel:.2e}");
}

#[test]
fn bf16_cached_decoding_and_packed_rows_run_in_one_dtype() {
    let device = Device::flex();
    let (model, config) = bf16_model("gqa", None, &device);
    let options = GenerateOptions { max_new_tokens: 6, ..GenerateOptions::default() };
    let got = generate(&model, &[5, 17, 9, 40], &options, |_| true).expect("generate").tokens;
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|&t| (t as usize) < config.vocab_size));

    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 17, 9, 40, 2, 33], [1, 6]), &device);
    let packed = model.forward_packed(ids.clone(), &[0, 1, 2, 0, 1, 2]);
    let first = model.forward(ids.slice([0..1, 0..3]), None);
    let rel = relative_error(&host(packed.slice([0..1, 0..3, 0..config.vocab_size])), &host(first));
    assert!(rel < 1e-2, "packed bf16 rows vs alone: {rel:.2e}");
}

#[test]
fn bf16_lora_gradients_are_finite_and_reach_both_factors() {
    let device = Device::flex().autodiff();
    let (mut model, _) = bf16_model("gqa", Some(&QuantConfig::nf4()), &device);
    let config = LoraConfig { r: 4, alpha: 8.0, target_modules: TargetModules::AllLinear("all-linear".into()), ..LoraConfig::default() };
    adapters::attach_lora(&mut model, &config).expect("attach");
    // B starts at zero: one plain SGD step on B makes A's gradient non-zero in the second pass.
    for pass in 0..2 {
        let logits = model.forward(input_ids("gqa", &device), None);
        let loss = logits.cast(DType::F32).powf_scalar(2.0).mean();
        let grads = loss.backward();
        let mut moved = Vec::new();
        for (path, p) in model.projections_mut() {
            let l = p.lora.as_mut().expect("adapter");
            let (ga, gb) = (l.a.val().grad(&grads).expect("grad A"), l.b.val().grad(&grads).expect("grad B"));
            let (ga, gb) = (host(ga), host(gb));
            assert!(ga.iter().chain(&gb).all(|v| v.is_finite()), "{path}: non-finite LoRA gradient");
            if pass == 1 {
                assert!(ga.iter().any(|v| *v != 0.0), "{path}: A got no gradient");
            }
            assert!(gb.iter().any(|v| *v != 0.0), "{path}: B got no gradient");
            moved.push(path.clone());
            let b = l.b.val();
            let stepped: Vec<f32> = host(b.clone()).iter().zip(&gb).map(|(w, g)| w - 1e-2 * g).collect();
            let stepped = Tensor::<2>::from_data(TensorData::new(stepped, b.dims()), &device).cast(b.dtype());
            l.b = burn::module::Param::from_tensor(stepped.require_grad());
        }
        assert!(!moved.is_empty());
    }
}
