//! The Llama-2 SFT row layout against the real parquet: the first rows of `alpaca_en_demo.json`,
//! re-rendered, must equal the parquet's `text` column (extracted into
//! `tests/fixtures/alpaca_llama2/expected.json` by `make_fixture.py` in that folder).

use std::path::PathBuf;

use prompt_templates::{AlpacaRow, ChatTemplate, RenderOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    rows: Vec<ExpectedRow>,
}

#[derive(Deserialize)]
struct ExpectedRow {
    index: usize,
    text: String,
}

fn expected() -> Expected {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alpaca_llama2/expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn alpaca_rows() -> Vec<AlpacaRow> {
    let path = assets::require(assets::known::ALPACA_JSON).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn sft_layout_reproduces_the_parquet_text() {
    let rows = alpaca_rows();
    let expected = expected();
    assert!(expected.rows.len() >= 8, "fixture has {} rows", expected.rows.len());
    assert!(expected.rows.iter().any(|e| !rows[e.index].input.is_empty()), "the fixture must cover a row with an input");
    for want in &expected.rows {
        let row = &rows[want.index];
        assert_eq!(row.llama2_sft().text(), want.text, "row {}", want.index);
    }
}

#[test]
fn llama2_chat_format_gives_the_same_text_and_splits_after_inst() {
    let rows = alpaca_rows();
    let renderer = ChatTemplate::Llama2.prepare().expect("built-in");
    for want in expected().rows {
        let row = &rows[want.index];
        let pair = renderer.render_alpaca(row, &RenderOptions::new()).expect("render");
        assert_eq!(pair.text(), want.text, "row {}", want.index);
        assert_eq!(pair, row.llama2_sft(), "row {}", want.index);
        assert!(pair.prompt.ends_with(" [/INST]"), "row {}: {:?}", want.index, pair.prompt);
        assert!(pair.completion.ends_with(" </s>"), "row {}: {:?}", want.index, pair.completion);
    }
}
