//! `xtask synth` end to end with the real SmolLM2-135M-Instruct generator and MiniLM embedder
//! on every sample document format.
//!
//! A 135M model does not follow the pipeline's JSON instructions: it already fails the first
//! stage, the critic's context-quality rating, on every retry. What is checked is the behaviour
//! the pipeline defines for that — a bounded number of attempts, then a non-zero exit with an
//! error naming the stage, the document, the JSON shape asked for and the answer given, and no
//! output written — and that it is deterministic: the same seed gives the same bytes. Should a
//! run succeed, its goldens are checked for structure and provenance instead.

mod common;

use common::{SAMPLE_DOCS, asset, check_goldens, run, temp_files, xtask};

#[test]
fn real_generator_on_every_format_is_deterministic_and_fails_cleanly() {
    asset(assets::known::SMOLLM2_GGUF);
    asset(assets::known::MINILM_DIR);
    let dir = tempfile::tempdir().expect("tempdir");
    // Small calls keep the test short on a CPU: short chunks, short answers, one retry.
    let config = dir.path().join("synth.toml");
    std::fs::write(&config, "max_tokens = 32\nmax_json_retries = 1\n[context]\nchunk_size = 128\n").expect("config");
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
    let (second, out2) = synth("b.jsonl");
    assert_eq!(first.code, second.code);
    if first.code == Some(0) {
        check_goldens(&out1, &SAMPLE_DOCS, 2);
        assert_eq!(std::fs::read(&out1).expect("first"), std::fs::read(&out2).expect("second"));
    } else {
        assert_eq!(first.stderr, second.stderr, "the same seed fails the same way");
        let stderr = &first.stderr;
        assert!(stderr.contains("synthesis stopped: a model's answer was not the JSON its stage asks for, even after 2 attempt(s)"), "{stderr}");
        // The first document's first stage, after 1 + 1 attempts, quoting the answer.
        assert!(stderr.contains("context quality of chunk ") && stderr.contains(&format!("of {} (after 2 attempts)", SAMPLE_DOCS[0])), "{stderr}");
        assert!(stderr.contains(r#"malformed answer (JSON {"clarity": number, "depth": number, "structure": number, "relevance": number})"#), "{stderr}");
        assert!(stderr.contains("; answer was: "), "{stderr}");
        assert!(!out1.exists() && !out2.exists(), "nothing is written");
    }
    assert!(temp_files(dir.path()).is_empty());
}
