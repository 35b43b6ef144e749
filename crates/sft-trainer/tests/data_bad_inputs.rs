//! Bad datasets give errors or skip reports that name the file, the row (and line) and the
//! field, and `strict` turns the first bad row into an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use llama_model::Tokenizer;
use parquet::arrow::ArrowWriter;
use sft_trainer::data::{DatasetConfig, Error, LoadOptions, Loaded, RowFormat, SkipReason, load_dataset};

fn tokenizer() -> Tokenizer {
    let path = assets::require(assets::known::SMOLLM2_TOKENIZER).expect("run scripts/fetch-assets.sh");
    Tokenizer::from_file(&path, Some(1), vec![2]).expect("tokenizer")
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

fn load(config: &DatasetConfig, max: usize) -> sft_trainer::data::Result<Loaded> {
    load_dataset(config, &tokenizer(), &LoadOptions::new(max))
}

fn config(path: &Path) -> DatasetConfig {
    DatasetConfig::new(path.display().to_string())
}

#[test]
fn a_missing_path_is_named() {
    let err = load(&DatasetConfig::new("/no/such/dir/train.jsonl"), 64).expect_err("missing");
    assert!(matches!(err, Error::MissingSource { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/dir/train.jsonl") && err.to_string().contains("no such file"), "{err}");
    let err = load(&DatasetConfig::new("asset:data/no-such.parquet"), 64).expect_err("missing asset");
    assert!(err.to_string().contains("data/no-such.parquet") && err.to_string().contains("fetch-assets.sh"), "{err}");
}

#[test]
fn a_wrong_field_name_lists_the_fields() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(dir.path(), "rows.jsonl", b"{\"content\": \"a\", \"id\": 1}\n{\"content\": \"b\"}\n");
    let wrong = DatasetConfig { text_field: "body".into(), format: RowFormat::Text, ..config(&path) };
    match load(&wrong, 64).expect_err("no body") {
        Error::FieldNotFound { path: file, field, available } => {
            assert_eq!((file, field.as_str(), available.as_str()), (path.clone(), "body", "content, id"));
        }
        other => panic!("expected FieldNotFound, got {other}"),
    }
    let err = load(&config(&path), 64).expect_err("no known shape");
    assert!(matches!(&err, Error::UnknownShape { available, .. } if available == "content, id"), "{err}");

    let parquet = assets::require(assets::known::ALPACA_PARQUET).expect("run scripts/fetch-assets.sh");
    let wrong = DatasetConfig { text_field: "prompt".into(), format: RowFormat::Text, ..config(&parquet) };
    let err = load(&wrong, 64).expect_err("no prompt column");
    assert!(matches!(&err, Error::FieldNotFound { field, available, .. } if field == "prompt" && available == "text"), "{err}");
}

#[test]
fn empty_datasets_are_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, content) in [("empty.jsonl", &b"\n\n"[..]), ("empty.json", b"[]")] {
        let path = write(dir.path(), name, content);
        let err = load(&config(&path), 64).expect_err("empty");
        assert!(matches!(&err, Error::EmptyDataset { source_ref, .. } if source_ref.ends_with(name)), "{err}");
    }
    let path = write(dir.path(), "blank.jsonl", b"{\"text\": \"\"}\n{\"text\": \"  \"}\n");
    let err = load(&config(&path), 64).expect_err("all skipped");
    match err {
        Error::NoUsableRows { rows, summary, .. } => {
            assert_eq!(rows, 2);
            assert!(summary.contains("empty: 2") && summary.contains("row 1 (line 2)"), "{summary}");
        }
        other => panic!("expected NoUsableRows, got {other}"),
    }
}

#[test]
fn a_row_longer_than_max_seq_length_is_truncated_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let long = "word ".repeat(100);
    let content = format!("{{\"text\": \"short\"}}\n{{\"text\": \"{long}\"}}\n{{\"text\": \"also short\"}}\n");
    let path = write(dir.path(), "rows.jsonl", content.as_bytes());
    let loaded = load(&config(&path), 16).expect("load");
    assert_eq!(loaded.train.len(), 3);
    assert_eq!(loaded.report.truncated, 1);
    let cut = &loaded.report.truncated_examples[0];
    assert_eq!((cut.file.as_path(), cut.row), (path.as_path(), 1));
    assert!(cut.tokens > 100, "{} tokens", cut.tokens);
    assert_eq!(loaded.train[1].len(), 16);
    assert!(loaded.report.to_string().contains("1 truncated"), "{}", loaded.report);
}

fn binary_parquet(path: &Path) {
    let column: ArrayRef = Arc::new(BinaryArray::from(vec![&b"hello"[..], b"bad \xff\xfe bytes", b"world"]));
    let batch = RecordBatch::try_from_iter([("text", column)]).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

#[test]
fn non_utf8_bytes_in_a_parquet_binary_column_are_reported_by_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bytes.parquet");
    binary_parquet(&path);
    let loaded = load(&config(&path), 64).expect("load");
    assert_eq!(loaded.train.len(), 2);
    assert_eq!(loaded.report.skipped.get(&SkipReason::NotUtf8), Some(&1));
    let issue = &loaded.report.examples[0];
    assert_eq!((issue.file.as_path(), issue.row, issue.reason), (path.as_path(), 1, SkipReason::NotUtf8));
    assert!(issue.detail.contains("offset 4"), "{}", issue.detail);

    let strict = DatasetConfig { strict: true, ..config(&path) };
    match load(&strict, 64).expect_err("strict") {
        Error::BadRow(issue) => assert_eq!((issue.row, issue.reason), (1, SkipReason::NotUtf8)),
        other => panic!("expected BadRow, got {other}"),
    }
}

#[test]
fn a_jsonl_line_that_is_not_json_is_reported_with_its_line_number() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(dir.path(), "rows.jsonl", b"{\"text\": \"a\"}\n\n{\"text\": oops}\n{\"text\": \"b\"}\n");
    let loaded = load(&config(&path), 64).expect("load");
    assert_eq!(loaded.train.len(), 2);
    let issue = &loaded.report.examples[0];
    assert_eq!((issue.row, issue.line, issue.reason), (1, Some(3), SkipReason::BadJson));

    let strict = DatasetConfig { strict: true, ..config(&path) };
    let err = load(&strict, 64).expect_err("strict");
    assert!(matches!(&err, Error::BadRow(issue) if issue.line == Some(3)), "{err}");
    assert!(err.to_string().contains("rows.jsonl: row 1 (line 3): bad_json"), "{err}");
}

#[test]
fn wrong_types_and_missing_values_are_counted_per_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = b"{\"text\": 5}\n{\"text\": \"\"}\n{\"text\": null}\n{\"other\": 1}\n{\"text\": \"fine\"}\n[1, 2]\n";
    let path = write(dir.path(), "rows.jsonl", rows);
    let loaded = load(&config(&path), 64).expect("load");
    assert_eq!(loaded.train.len(), 1);
    let count = |r| loaded.report.skipped.get(&r).copied().unwrap_or(0);
    assert_eq!((count(SkipReason::WrongType), count(SkipReason::Empty), count(SkipReason::MissingField)), (2, 1, 2), "{}", loaded.report);
    let rows: Vec<usize> = loaded.report.examples.iter().map(|i| i.row).collect();
    assert_eq!(rows, vec![0, 1, 2, 3, 5]);
    assert!(loaded.report.examples[0].detail.contains("`text` is a number"), "{}", loaded.report.examples[0].detail);
}

#[test]
fn conversations_the_template_cannot_split_are_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = concat!(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n",
        "{\"messages\": []}\n",
    );
    let path = write(dir.path(), "chat.jsonl", rows.as_bytes());
    // Whole conversations (trl's default for messages) need no final answer.
    let whole = DatasetConfig { template: "llama3".into(), ..config(&path) };
    let loaded = load(&whole, 64).expect("load");
    assert_eq!((loaded.format, loaded.train.len()), (RowFormat::Messages, 2));
    // Completion-only loss splits off the last message, which must be the assistant's.
    let chat = DatasetConfig { completion_only_loss: Some(true), ..whole };
    let loaded = load(&chat, 64).expect("load");
    assert_eq!(loaded.train.len(), 1);
    let reasons: Vec<(usize, SkipReason)> = loaded.report.examples.iter().map(|i| (i.row, i.reason)).collect();
    assert_eq!(reasons, vec![(1, SkipReason::Template), (2, SkipReason::Empty)]);
    assert!(loaded.report.examples[0].detail.contains("assistant"), "{}", loaded.report.examples[0].detail);

    let unknown = DatasetConfig { template: "vicuna".into(), ..config(&path) };
    assert!(matches!(load(&unknown, 64).expect_err("unknown template"), Error::Template(_)));
    let model = DatasetConfig { template: "model".into(), ..config(&path) };
    assert!(load(&model, 64).expect_err("no model template").to_string().contains("no chat template"));
}

#[test]
fn a_malformed_json_array_names_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(dir.path(), "rows.json", b"[\n {\"text\": \"a\"},\n {\"text\": }\n]");
    let err = load(&config(&path), 64).expect_err("bad json");
    assert!(matches!(&err, Error::Json { path: p, detail } if p == &path && detail.contains("line 3")), "{err}");
}
