//! The real SmolLM2-135M-Instruct GGUF: its tokenizer built from metadata, and a greedy answer.

use burn::tensor::Device;
use llama_model::{ChatModel, OpenOptions, Tokenizer, pretrained};
use llm_api::{CompletionOptions, Message};

fn gguf() -> String {
    assets::require(assets::known::SMOLLM2_GGUF).expect("run scripts/fetch-assets.sh").to_string_lossy().into_owned()
}

#[test]
fn tokenizer_from_gguf_metadata_matches_the_tokenizer_json() {
    let options = OpenOptions::new(&Device::flex());
    let files = pretrained::resolve(&gguf(), &options).expect("gguf");
    let ours = files.tokenizer;
    let json = assets::require(assets::known::SMOLLM2_TOKENIZER).expect("run scripts/fetch-assets.sh");
    let reference = Tokenizer::from_file(&json, Some(1), vec![2]).expect("tokenizer.json");
    let samples = [
        "What is the capital of France?",
        "<|im_start|>user\nHello 12345 world!<|im_end|>\n",
        "  leading spaces, tabs\tand\nnewlines\n\n",
        "Unicode: café, naïve, 東京, emoji 🚀, math ∑x²",
        "code: fn main() { println!(\"{}\", 3.14159); }",
        "",
    ];
    for s in samples {
        let a = ours.encode(s, true).expect("ours");
        let b = reference.encode(s, true).expect("reference");
        assert_eq!(a, b, "{s:?}");
        assert_eq!(ours.decode(&a, false).expect("decode"), reference.decode(&b, false).expect("decode"), "{s:?}");
    }
    assert_eq!(ours.vocab_size(), 49_152);
    assert_eq!(ours.pad_id(), Some(2));
}

#[test]
fn greedy_chatml_answer_is_paris() {
    let device = Device::flex();
    let model = pretrained::open(&gguf(), &OpenOptions::new(&device)).expect("load SmolLM2");
    assert_eq!(model.model.config.num_layers, 30);
    assert!(model.model.config.tie_word_embeddings);
    let chat = ChatModel::new(model, "chatml", "smollm2").expect("chat");
    let options = CompletionOptions { max_tokens: 24, top_logprobs: Some(3), ..CompletionOptions::default() };
    let mut streamed = String::new();
    let answer = chat
        .chat(&[Message::user("What is the capital of France?")], &options, &mut |piece| {
            streamed.push_str(piece);
            true
        })
        .expect("generate");
    assert!(answer.text.contains("Paris"), "{:?}", answer.text);
    assert_eq!(streamed, answer.text, "streamed pieces add up to the answer");
    let logprobs = answer.logprobs.expect("asked for logprobs");
    assert_eq!(logprobs.len(), answer.usage.completion_tokens);
    assert!(logprobs.iter().all(|t| t.top_logprobs.len() == 3 && t.top_logprobs[0].logprob >= t.logprob - 1e-6));
    // A stop string cuts the answer before it.
    let cut = chat
        .chat(
            &[Message::user("What is the capital of France?")],
            &CompletionOptions { stop: vec!["Paris".into()], ..options.clone() },
            &mut |_| true,
        )
        .expect("generate");
    assert!(!cut.text.contains("Paris") && answer.text.starts_with(&cut.text), "{:?}", cut.text);
}

#[test]
fn json_mode_answers_are_valid_json_objects() {
    let device = Device::flex();
    let model = pretrained::open(&gguf(), &OpenOptions::new(&device)).expect("load SmolLM2");
    let chat = ChatModel::new(model, "chatml", "smollm2").expect("chat");
    // A short budget: the constraint closes the object in time.
    let options = CompletionOptions { max_tokens: 40, json_mode: true, ..CompletionOptions::default() };
    let answer = chat
        .chat(&[Message::user("Return a JSON object with a key \"capital\" naming the capital of France.")], &options, &mut |_| true)
        .expect("generate");
    let value: serde_json::Value = serde_json::from_str(&answer.text).unwrap_or_else(|e| panic!("{e}: {:?}", answer.text));
    assert!(value.is_object(), "{value}");
    assert!(answer.usage.completion_tokens <= 40);
}
