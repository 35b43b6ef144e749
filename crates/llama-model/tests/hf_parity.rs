//! Logits and greedy tokens against HF transformers for tiny random models
//! (fixtures: `tests/fixtures/hf_parity/make_fixture.py`), on the CPU and, with the `wgpu`
//! feature, on the first wgpu adapter (CI: Mesa's software Vulkan, lavapipe).

mod common;

use burn::tensor::Device;
use llama_model::weights::{self, WeightSource};
use llama_model::{GenerateOptions, LlamaConfig, LoadOptions, generate, load};

use common::{expected, expected_i64, fixture, input_ids, relative_error};

fn check_case(case: &str) {
    check_case_on(case, &Device::flex());
}

fn check_case_on(case: &str, device: &Device) {
    let device = device.clone();
    let dir = fixture(case);
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let source = weights::open(&dir).expect("weights");
    let model = load(source.as_ref(), &config, &LoadOptions::f32(&device)).expect("model");
    let expected = expected(case);

    let ours = model.forward(input_ids(case, &device), None).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    let theirs = expected.read_f32("logits").expect("logits");
    let rel = relative_error(&ours, &theirs);
    let max_err = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{case}: relative error {rel:.2e}, max |Δlogit| {max_err:.2e}");
    assert!(rel < 1e-4, "{case}: relative error {rel:.2e} (max |Δlogit| {max_err:.2e})");

    // The same logits one position at a time through the KV cache (decoding's route: one query
    // row per step, the query heads of each K/V head attending together).
    let ids = input_ids(case, &device);
    let [batch, len] = ids.dims();
    let vocab = config.vocab_size;
    let mut cache = model.new_cache();
    for p in 0..len {
        let step = model.forward(ids.clone().slice([0..batch, p..p + 1]), Some(&mut cache));
        let step = step.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        for row in 0..batch {
            let full = &ours[(row * len + p) * vocab..(row * len + p + 1) * vocab];
            let rel = relative_error(&step[row * vocab..(row + 1) * vocab], full);
            assert!(rel < 1e-5, "{case}: cached position {p} of row {row}: relative error {rel:.2e} against the whole sequence");
        }
    }

    let (_, prompt) = expected_i64(&expected, "prompt");
    let prompt: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    for (key, use_cache) in [("greedy", true), ("greedy_nocache", false)] {
        let (_, want) = expected_i64(&expected, key);
        let options = GenerateOptions { max_new_tokens: 20, use_cache, ..GenerateOptions::default() };
        let got = generate(&model, &prompt, &options, |_| true).expect("generate").tokens;
        let want: Vec<u32> = want.iter().map(|&t| t as u32).collect();
        assert_eq!(got, want, "{case}: {key}");
    }
    check_greedy_routes(case, &model, &prompt);
}

/// Greedy decoding with the cache chooses on the device (ids read back in batches); asking for
/// logprobs takes the host route; `StepIssue::DevicePosition` holds the position in a device
/// buffer that each step advances (the step a CUDA graph records). All give the same tokens,
/// stop before the same stop token and after the same callback refusal, mid-batch included.
fn check_greedy_routes(case: &str, model: &llama_model::Llama, prompt: &[u32]) {
    use llama_model::{Finish, StepIssue};
    let options = GenerateOptions { max_new_tokens: 20, steps: StepIssue::Launched, ..GenerateOptions::default() };
    let host_route = GenerateOptions { top_logprobs: Some(1), ..options.clone() };
    let at_device = GenerateOptions { steps: StepIssue::DevicePosition, ..options.clone() };
    let device = generate(model, prompt, &options, |_| true).expect("device route");
    let host = generate(model, prompt, &host_route, |_| true).expect("host route");
    let positioned = generate(model, prompt, &at_device, |_| true).expect("device-position route");
    assert_eq!(device.tokens, host.tokens, "{case}: device vs host choice");
    assert_eq!(positioned.tokens, device.tokens, "{case}: device-position steps vs launched steps");
    assert_eq!((device.finish, host.finish, positioned.finish), (Finish::Length, Finish::Length, Finish::Length));
    // One decoder kept across calls (one cache capacity: its step reused each time): the
    // tokens of fresh generations, for a shorter prompt after a longer one and back, and a
    // shorter run between.
    let mut decoder = llama_model::Decoder::new(model);
    let short = &prompt[..prompt.len() - 2];
    let fresh_short = generate(model, short, &at_device, |_| true).expect("short prompt");
    let brief = GenerateOptions { max_new_tokens: 7, ..at_device.clone() };
    let runs = [
        (prompt, &at_device, &device.tokens[..]),
        (short, &at_device, &fresh_short.tokens[..]),
        (short, &brief, &fresh_short.tokens[..7]),
        (prompt, &at_device, &device.tokens[..]),
    ];
    for (i, (p, opts, want)) in runs.into_iter().enumerate() {
        let kept = decoder.generate(p, opts, |_| true).expect("kept decoder");
        assert_eq!(kept.tokens, want, "{case}: decoder call {i}");
    }
    // These devices are not CUDA: a recorded graph is refused, and says why.
    let graph = generate(model, prompt, &GenerateOptions { steps: StepIssue::Graph, ..options.clone() }, |_| true);
    let error = graph.expect_err("a graph off CUDA").to_string();
    assert!(error.contains("needs a CUDA device"), "{case}: {error}");
    // A stop token first produced at step 6 (inside the third read-back batch: steps 3..7).
    let stop = device.tokens[6];
    let first = device.tokens.iter().position(|&t| t == stop).expect("present");
    for opts in [&options, &host_route, &at_device] {
        let stopped = generate(model, prompt, &GenerateOptions { stop_tokens: vec![stop], ..opts.clone() }, |_| true).expect("stop");
        assert_eq!(stopped.tokens, device.tokens[..first], "{case}: stop token");
        assert_eq!(stopped.finish, Finish::Stop);
        let mut seen = Vec::new();
        let refused = generate(model, prompt, opts, |t| {
            seen.push(t);
            seen.len() < 5
        })
        .expect("callback stop");
        assert_eq!(refused.tokens, device.tokens[..5], "{case}: callback stop");
        assert_eq!((seen.len(), refused.finish), (5, Finish::Stop));
    }
}

#[test]
fn gqa_matches_transformers() {
    check_case("gqa");
}

#[test]
fn llama3_rope_scaling_sharded_matches_transformers() {
    check_case("llama3_rope");
}

#[test]
fn tied_embeddings_with_bias_match_transformers() {
    check_case("tied");
}

/// The same checks on wgpu (f32: WGSL has no bf16).
#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    fn device() -> Device {
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
    }

    #[test]
    fn gqa_matches_transformers_on_wgpu() {
        check_case_on("gqa", &device());
    }

    #[test]
    fn llama3_rope_scaling_matches_transformers_on_wgpu() {
        check_case_on("llama3_rope", &device());
    }

    #[test]
    fn tied_embeddings_match_transformers_on_wgpu() {
        check_case_on("tied", &device());
    }
}
