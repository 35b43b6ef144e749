//! `cargo xtask finetune` as users run it, on a tiny random model (QLoRA, CPU): a run killed
//! with SIGKILL and resumed repeats the uninterrupted run's losses, and bad inputs stop with a
//! message naming what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// A word-level tokenizer over `<unk> <s> </s> n3 … n95` (ids 0..96, the tiny model's vocab).
fn write_tokenizer(dir: &Path) -> PathBuf {
    write_tokenizer_at(dir, "tokenizer.json", 0)
}

/// The same words with their ids moved up by `offset` (`offset > 0`: not the tiny model's).
fn write_tokenizer_at(dir: &Path, name: &str, offset: u32) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for i in 3..96 {
        vocab.insert(format!("n{i}"), (i + offset).into());
    }
    let special = |id: u32, content: &str| serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": false},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    let path = dir.join(name);
    std::fs::write(&path, json.to_string()).expect("tokenizer");
    path
}

/// 40 rows counting up from a start by a stride (a rule the model can learn).
fn write_dataset(dir: &Path) -> PathBuf {
    let rows: Vec<String> = (0..40)
        .map(|i| {
            let (start, stride, len) = (3 + (i * 7) % 60, 1 + i % 3, 6 + i % 9);
            let words: Vec<String> = (0..len).map(|t| format!("n{}", 3 + (start + t * stride - 3) % 93)).collect();
            serde_json::json!({ "text": words.join(" ") }).to_string()
        })
        .collect();
    let path = dir.join("data.jsonl");
    std::fs::write(&path, rows.join("\n")).expect("dataset");
    path
}

fn write_config(dir: &Path, out: &Path, max_steps: usize) -> PathBuf {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/llama-model/tests/fixtures/hf_parity/gqa");
    let text = format!(
        r#"[run]
output_dir = "{out}"
backend = "cpu"
[quantization]
load_in_4bit = true
bnb_4bit_quant_type = "nf4"
bnb_4bit_compute_dtype = "float32"
[model]
name = "{model}"
[tokenizer]
path = "{tok}"
[dataset]
source = "{data}"
eval_count = 4
[lora]
r = 4
alpha = 8.0
dropout = 0.1
target_modules = "all-linear"
[training]
max_steps = {max_steps}
per_device_train_batch_size = 2
learning_rate = 5e-3
lr_scheduler_type = "cosine"
warmup_steps = 2
logging_steps = 1
save_steps = 1
eval_steps = 10
max_seq_length = 12
[try_model]
prompt = "n3 n4 n5"
template = "raw"
max_length = 10
"#,
        out = out.display(),
        model = model.display(),
        tok = write_tokenizer(dir).display(),
        data = write_dataset(dir).display(),
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some((v["step"].as_u64()?, v["loss"].as_f64()?))
        })
        .collect()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "xtask failed:\n{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn sigkill_then_resume_repeats_the_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let steps = 30;
    let full_out = dir.path().join("full");
    let config = write_config(dir.path(), &full_out, steps);
    ok(xtask().args(["finetune", "--config"]).arg(&config).output().expect("run"));
    let full = losses(&full_out);
    assert_eq!(full.len(), steps, "one logged loss per step");
    for f in
        ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.jsonl", "loss.png", "sample.txt", "finetune.toml"]
    {
        assert!(full_out.join(f).is_file(), "{f} written");
    }

    let out = dir.path().join("killed");
    let config = write_config(dir.path(), &out, steps);
    let mut child = xtask().args(["finetune", "--config"]).arg(&config).stderr(std::process::Stdio::null()).spawn().expect("spawn");
    let start = Instant::now();
    while !out.join("checkpoints/step-4").exists() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let killed_at = losses(&out).len();
    assert!(killed_at < steps, "the run was interrupted (it logged {killed_at} steps)");
    // Every checkpoint folder on disk is complete.
    for entry in std::fs::read_dir(out.join("checkpoints")).expect("checkpoints").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") {
            for f in ["adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "trainer_state.json"] {
                assert!(entry.path().join(f).is_file(), "{name}/{f} is missing: a half-written checkpoint");
            }
        }
    }
    let again = xtask().args(["finetune", "--config"]).arg(&config).output().expect("run");
    assert!(!again.status.success(), "refuses to overwrite checkpoints without --resume");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    ok(xtask().args(["finetune", "--resume", "--config"]).arg(&config).output().expect("resume"));
    let resumed = losses(&out);
    assert_eq!(resumed.len(), steps);
    for ((s1, a), (s2, b)) in full.iter().zip(&resumed) {
        assert_eq!(s1, s2);
        assert!((a - b).abs() <= 1e-5, "step {s1}: {a} (uninterrupted) vs {b} (resumed)");
    }
    let a = std::fs::read(full_out.join("adapter_model.safetensors")).expect("a");
    let b = std::fs::read(out.join("adapter_model.safetensors")).expect("b");
    assert_eq!(a, b, "identical final adapters");
}

fn fails_with(dir: &Path, overrides: &[&str], needle: &str) {
    let config = write_config(dir, &dir.join("out"), 2);
    let mut cmd = xtask();
    cmd.args(["finetune", "--config"]).arg(&config);
    for o in overrides {
        cmd.args(["--set", o]);
    }
    let output = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{overrides:?} should fail");
    assert!(stderr.contains(needle), "{overrides:?}: expected {needle:?} in:\n{stderr}");
}

#[test]
fn bad_inputs_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    fails_with(dir.path(), &["dataset.source=/no/such/data.jsonl"], "/no/such/data.jsonl");
    fails_with(dir.path(), &["dataset.text_field=body"], "body");
    fails_with(dir.path(), &["training.learning_rat=1"], "learning_rat");
    fails_with(dir.path(), &["lora.target_modules=[\"qkv\"]"], "qkv");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").expect("empty");
    fails_with(dir.path(), &[&format!("dataset.source={}", empty.display())], "empty.jsonl");
    let foreign = write_tokenizer_at(dir.path(), "foreign-tokenizer.json", 100);
    fails_with(dir.path(), &[&format!("tokenizer.path={}", foreign.display())], "foreign-tokenizer.json gives token id");
}

#[test]
fn rows_longer_than_max_seq_length_are_truncated_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), &dir.path().join("out"), 1);
    let output =
        ok(xtask().args(["finetune", "--config"]).arg(&config).args(["--set", "training.max_seq_length=8"]).output().expect("run"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|l| l.starts_with("dataset:")).expect("dataset line");
    let truncated: usize = line.split(", ").find_map(|p| p.strip_suffix(" truncated to 8 tokens")?.parse().ok()).expect("count");
    // Rows have 6..=14 words; the tokenizer adds no BOS of its own, so the Llama default
    // (`add_bos_token`) prepends `<s>`, and an EOS is appended (as trl does). Those with more
    // than 8 tokens are truncated (36 train rows + 4 held out).
    let longer = (0..40).filter(|i| 1 + (6 + i % 9) + 1 > 8).count();
    assert_eq!(truncated, longer, "{line}");
}

#[test]
fn judge_section_scores_goldens_at_eval_steps() {
    use std::sync::Arc;
    // A scripted OpenAI-compatible judge: no opinions in any answer, so Bias is 0.
    let judge = eval::testing::ScriptedLlm::from_fn(|messages, _| {
        let prompt = &messages.last().expect("a message").content;
        let answer = if prompt.contains("opinion") && !prompt.contains("verdict") && !prompt.contains("reason") {
            r#"{"opinions": []}"#
        } else {
            r#"{"reason": "The answer states no opinions."}"#
        };
        Ok(eval::testing::text(answer))
    });
    let server =
        llm_api::server::spawn_server(llm_api::server::ServerConfig::new(Arc::new(judge), "judge"), "127.0.0.1:0".parse().expect("addr"))
            .expect("server");
    let dir = tempfile::tempdir().expect("tmp");
    let goldens = dir.path().join("goldens.jsonl");
    std::fs::write(&goldens, "{\"input\": \"n3 n4 n5\"}\n{\"input\": \"n10 n12\"}\n").expect("goldens");
    let out = dir.path().join("out");
    let config = write_config(dir.path(), &out, 2);
    let output = xtask()
        .args(["finetune", "--config"])
        .arg(&config)
        .args(["--set", &format!("judge.goldens={}", goldens.display())])
        .args(["--set", &format!("judge.judge=openai:{}#judge", server.base_url())])
        .args(["--set", "judge.metrics=bias", "--set", "judge.template=raw", "--set", "judge.max_new_tokens=4"])
        .args(["--set", "training.eval_steps=2"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let judged: Vec<serde_json::Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["extra"]["callback0"].is_object())
        .collect();
    assert_eq!(judged.len(), 1, "one judged evaluation at step 2:\n{metrics}");
    let scores = &judged[0]["extra"]["callback0"];
    assert_eq!(scores["judge_mean_scores"]["Bias"], 0.0, "{scores}");
    assert_eq!(scores["judge_errors"], 0, "{scores}");
    server.shutdown().expect("stop");
}
