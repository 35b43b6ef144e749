//! `xtask synth` end to end with the real SmolLM2-135M-Instruct generator and MiniLM embedder
//! on every sample document format.
//!
//! Each stage's JSON shape is sent as a JSON Schema (structured outputs), so even a 135M model
//! can only answer in that shape: the run must produce goldens from every document, with the
//! structure and provenance the pipeline defines, and the same seed must give the same bytes.
//! (What a 135M model writes in those fields is not judged.)

mod common;

use common::{SAMPLE_DOCS, asset, check_goldens, run, temp_files, xtask};

#[test]
fn real_generator_makes_goldens_from_every_format_deterministically() {
    asset(assets::known::SMOLLM2_GGUF);
    asset(assets::known::MINILM_DIR);
    let dir = tempfile::tempdir().expect("tempdir");
    // Small calls keep the test short on a CPU: short chunks, short answers, one try at each
    // retried stage (JSON, context seed, critic).
    let config = dir.path().join("synth.toml");
    std::fs::write(
        &config,
        "max_tokens = 32\nmax_json_retries = 1\n[context]\nchunk_size = 128\nmax_retries = 1\n[filtration]\nmax_quality_retries = 1\n",
    )
    .expect("config");
    let synth = |name: &str| {
        let out = dir.path().join(name);
        let finished = run(xtask()
            .args(["synth", "--docs"])
            .args(SAMPLE_DOCS)
            .args(["--max-goldens-per-doc", "2", "--seed", "5", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out));
        (finished, out)
    };

    let (first, out1) = synth("a.jsonl");
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    check_goldens(&out1, &SAMPLE_DOCS, 2);
    let (second, out2) = synth("b.jsonl");
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(std::fs::read(&out1).expect("first"), std::fs::read(&out2).expect("second"), "the same seed gives the same goldens");
    assert!(temp_files(dir.path()).is_empty());
}
