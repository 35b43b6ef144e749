//! Parity with trl's `SFTTrainer` dataset preparation and collator, and with transformers'
//! length grouping, on real rows and the real Llama-2 and SmolLM2 tokenizers. The expected
//! values come from `fixtures/data/make_fixture.py` (trl 1.16, transformers 5.24).

use std::path::{Path, PathBuf};

use llama_model::Tokenizer;
use serde_json::Value;
use sft_trainer::data::{DatasetConfig, Example, LoadOptions, RowFormat, collate, length_grouped_indices, load_dataset};

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/trl_parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

fn case<'a>(fixture: &'a Value, name: &str) -> &'a Value {
    fixture["cases"].as_array().expect("cases").iter().find(|c| c["name"] == name).expect("case")
}

fn tokenizer(asset: &str) -> Tokenizer {
    let path = assets::require(asset).expect("run scripts/fetch-assets.sh");
    // Both tokenizers use id 1 as BOS (`<s>`, `<|im_start|>`) and 2 as EOS (`</s>`, `<|im_end|>`).
    Tokenizer::from_file(&path, Some(1), vec![2]).expect("tokenizer")
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("list").iter().map(|x| x.as_i64().expect("int")).collect()
}

fn flat(v: &Value) -> Vec<i64> {
    v.as_array().expect("rows").iter().flat_map(ints).collect()
}

fn labels(example: &Example) -> Vec<i64> {
    example.input_ids.iter().zip(&example.loss_mask).map(|(&id, &m)| if m { i64::from(id) } else { -100 }).collect()
}

fn ids(example: &Example) -> Vec<i64> {
    example.input_ids.iter().map(|&id| i64::from(id)).collect()
}

fn write_jsonl(dir: &Path, rows: &Value) -> PathBuf {
    let path = dir.join("rows.jsonl");
    let lines: Vec<String> = rows.as_array().expect("rows").iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n")).expect("write rows");
    path
}

fn options(case: &Value) -> LoadOptions {
    let mut options = LoadOptions::new(case["max_length"].as_u64().expect("max_length") as usize);
    options.add_bos_token = case["add_bos_token"].as_bool().expect("flag");
    options
}

fn assert_prepared(examples: &[Example], case: &Value) {
    let expected = case["prepared"].as_array().expect("prepared");
    assert_eq!(examples.len(), expected.len(), "{}: example count", case["name"]);
    for (i, (ours, theirs)) in examples.iter().zip(expected).enumerate() {
        assert_eq!(ids(ours), ints(&theirs["input_ids"]), "{} example {i}: input_ids", case["name"]);
        assert_eq!(labels(ours), ints(&theirs["labels"]), "{} example {i}: labels", case["name"]);
    }
}

fn assert_batch(examples: &[Example], case: &Value) {
    let refs: Vec<&Example> = examples.iter().take(4).collect();
    let batch = collate(&refs, 2);
    let expected = &case["batch"];
    assert_eq!(batch.input_ids, flat(&expected["input_ids"]), "{}: batch input_ids", case["name"]);
    assert_eq!(batch.labels, flat(&expected["labels"]), "{}: batch labels", case["name"]);
    assert_eq!(batch.attention_mask, flat(&expected["attention_mask"]), "{}: batch attention_mask", case["name"]);
    assert_eq!(batch.seq_len, expected["input_ids"][0].as_array().expect("row").len());
}

fn text_case(name: &str, asset: &str) {
    let fixture = fixture();
    let case = case(&fixture, name);
    let dir = tempfile::tempdir().expect("tmp");
    let path = write_jsonl(dir.path(), &case["rows"]);
    let config = DatasetConfig { format: RowFormat::Text, ..DatasetConfig::new(path.display().to_string()) };
    let loaded = load_dataset(&config, &tokenizer(asset), &options(case)).expect("load");
    assert_prepared(&loaded.train, case);
    assert_batch(&loaded.train, case);
    assert!(loaded.report.truncated > 0, "the long rows were truncated: {}", loaded.report);
}

#[test]
fn llama2_text_rows_match_trl() {
    // Includes the double BOS trl produces for `<s>[INST] ...` rows with a Llama tokenizer.
    text_case("llama2_text", assets::known::LLAMA2_TOKENIZER);
}

#[test]
fn smollm2_text_rows_match_trl() {
    text_case("smollm2_text", assets::known::SMOLLM2_TOKENIZER);
}

#[test]
fn chatml_alpaca_pairs_match_trl_completion_only_loss() {
    let fixture = fixture();
    let case = case(&fixture, "chatml_alpaca_pairs");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("alpaca.json");
    std::fs::write(&path, case["alpaca_rows"].to_string()).expect("write");
    let config = DatasetConfig { template: "chatml".into(), ..DatasetConfig::new(path.display().to_string()) };
    let loaded = load_dataset(&config, &tokenizer(assets::known::SMOLLM2_TOKENIZER), &options(case)).expect("load");
    assert_eq!(loaded.format, RowFormat::Alpaca);
    assert_prepared(&loaded.train, case);
    assert_batch(&loaded.train, case);
    // trl drops the row whose prompt alone fills max_length; we report it.
    assert_eq!(loaded.report.skipped.values().sum::<usize>(), 1, "{}", loaded.report);
    assert_eq!(loaded.report.examples[0].row, 5);
}

fn messages_case(name: &str, completion_only_loss: Option<bool>) {
    let fixture = fixture();
    let case = case(&fixture, name);
    let dir = tempfile::tempdir().expect("tmp");
    let path = write_jsonl(dir.path(), &case["rows"]);
    let config = DatasetConfig { template: "chatml".into(), completion_only_loss, ..DatasetConfig::new(path.display().to_string()) };
    let loaded = load_dataset(&config, &tokenizer(assets::known::SMOLLM2_TOKENIZER), &options(case)).expect("load");
    assert_eq!(loaded.format, RowFormat::Messages);
    assert_prepared(&loaded.train, case);
    assert_batch(&loaded.train, case);
}

#[test]
fn chatml_messages_match_trl_whole_conversations() {
    messages_case("chatml_messages", None);
}

#[test]
fn chatml_messages_with_completion_only_loss_match_trl_prompt_completion() {
    messages_case("chatml_messages_pairs", Some(true));
}

#[test]
fn bfd_packing_matches_trl() {
    let fixture = fixture();
    let case = case(&fixture, "smollm2_packing_bfd");
    let dir = tempfile::tempdir().expect("tmp");
    let path = write_jsonl(dir.path(), &case["rows"]);
    let config = DatasetConfig { packing: true, ..DatasetConfig::new(path.display().to_string()) };
    let loaded = load_dataset(&config, &tokenizer(assets::known::SMOLLM2_TOKENIZER), &options(case)).expect("load");
    assert_prepared(&loaded.train, case);
    for (ours, theirs) in loaded.train.iter().zip(case["prepared"].as_array().expect("prepared")) {
        let lengths: Vec<i64> = ours.seq_lengths.iter().map(|&n| n as i64).collect();
        assert_eq!(lengths, ints(&theirs["seq_lengths"]));
    }
    // trl flattens the padding-free batch into one row; we keep a row per block. The real
    // tokens of our rows, in order, are trl's row.
    let bins: Vec<usize> = ints(&case["flat_batch_bins"]).into_iter().map(|i| i as usize).collect();
    let refs: Vec<&Example> = bins.iter().map(|&i| &loaded.train[i]).collect();
    let batch = collate(&refs, 2);
    let real =
        |values: &[i64]| -> Vec<i64> { values.iter().zip(&batch.attention_mask).filter(|(_, m)| **m == 1).map(|(v, _)| *v).collect() };
    let expected = &case["flat_batch"];
    assert_eq!(real(&batch.input_ids), flat(&expected["input_ids"]));
    assert_eq!(real(&batch.labels), flat(&expected["labels"]));
    assert_eq!(real(&batch.position_ids), flat(&expected["position_ids"]));
}

#[test]
fn length_grouping_matches_transformers() {
    let fixture = fixture();
    for case in fixture["length_grouped"].as_array().expect("cases") {
        let lengths: Vec<usize> = ints(&case["lengths"]).into_iter().map(|x| x as usize).collect();
        let perm: Vec<usize> = ints(&case["permutation"]).into_iter().map(|x| x as usize).collect();
        let group = case["batch_size"].as_u64().expect("batch") as usize;
        let order: Vec<i64> = length_grouped_indices(&lengths, group, &perm).into_iter().map(|x| x as i64).collect();
        assert_eq!(order, ints(&case["order"]), "lengths {lengths:?}, group {group}");
    }
}
