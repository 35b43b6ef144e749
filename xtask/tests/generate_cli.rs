//! `cargo xtask generate` with the real SmolLM2-135M-Instruct GGUF answers with Paris.

use std::process::Command;

#[test]
fn gguf_chatml_greedy_answer_is_paris() {
    let gguf = assets::require(assets::known::SMOLLM2_GGUF).expect("run scripts/fetch-assets.sh");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["generate", "--model"])
        .arg(&gguf)
        .args(["--template", "chatml", "--prompt", "What is the capital of France?", "--max-new-tokens", "24"])
        .output()
        .expect("run xtask");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(answer.contains("Paris"), "{answer:?}");
}

#[test]
fn missing_model_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env("RUST_BACKTRACE", "0")
        .args(["generate", "--model", "/no/such/model.gguf", "--prompt", "hi"])
        .output()
        .expect("run xtask");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/model.gguf"));
}
