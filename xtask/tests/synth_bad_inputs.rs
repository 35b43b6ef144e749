//! `xtask synth` refuses broken inputs before loading any model: a non-zero exit, a message
//! naming the file at fault, and no output written.

mod common;

use common::{run, temp_files, xtask};

/// Runs synth on `docs` (the sample documents first, so that a bad file later in the list
/// still stops the run) and returns its stderr after checking that it failed cleanly.
fn refused(docs: &[&std::path::Path], extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("goldens.jsonl");
    let finished = run(xtask().args(["synth", "--docs", "datasets/docs/tides.txt"]).args(docs).arg("--out").arg(&out).args(extra));
    assert_ne!(finished.code, Some(0), "synth must fail on {docs:?}");
    assert!(!out.exists(), "nothing is written");
    assert!(temp_files(dir.path()).is_empty());
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    finished.stderr
}

#[test]
fn broken_documents_are_named() {
    let bad = common::root().join("datasets/docs/bad");
    for (file, needle) in [
        ("corrupted.pdf", "not a readable PDF file"),
        ("encrypted.pdf", "encrypted or password protected"),
        ("empty.pdf", "file is empty (0 bytes)"),
        ("empty.txt", "file is empty (0 bytes)"),
        ("plain-zip.docx", "not a readable DOCX file"),
        ("truncated.docx", "not a readable DOCX file"),
    ] {
        let path = bad.join(file);
        let stderr = refused(&[&path], &[]);
        assert!(stderr.contains(&path.display().to_string()) && stderr.contains(needle), "{file}: {stderr}");
    }
}

#[test]
fn folders_missing_files_and_unknown_types_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("notes.txt");
    std::fs::create_dir(&empty).expect("mkdir");
    let stderr = refused(&[&empty], &[]);
    assert!(stderr.contains(&empty.display().to_string()) && stderr.contains("holds no documents"), "{stderr}");

    // A folder stands for its documents, so its broken ones are found and named too.
    let folder = common::root().join("datasets/docs/bad");
    let stderr = refused(&[&folder], &[]);
    assert!(stderr.contains("datasets/docs/bad/corrupted.pdf"), "{stderr}");

    let missing = dir.path().join("absent.md");
    let stderr = refused(&[&missing], &[]);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");

    let rtf = dir.path().join("notes.rtf");
    std::fs::write(&rtf, "{\\rtf1 hello}").expect("write");
    let stderr = refused(&[&rtf], &[]);
    assert!(stderr.contains(&rtf.display().to_string()) && stderr.contains("unsupported document type"), "{stderr}");
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("synth.toml");
    std::fs::write(&config, "[filtration]\nmax_quality_retry = 1\n").expect("write");
    let stderr = refused(&[], &["--config", &config.to_string_lossy()]);
    assert!(stderr.contains("unknown setting `filtration.max_quality_retry`"), "{stderr}");
    let stderr = refused(&[], &["--max-goldens-per-doc", "0"]);
    assert!(stderr.contains("max_goldens_per_document"), "{stderr}");
    let stderr = refused(&[], &["--llm", "smollm2"]);
    assert!(stderr.contains("expected local:PATH or openai:URL[#MODEL]"), "{stderr}");
}
