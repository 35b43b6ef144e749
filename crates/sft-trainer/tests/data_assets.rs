//! The real datasets the project ships with: the 999-row Alpaca parquet (a `text` column in the
//! Llama-2 `<s>[INST]` layout, as `mlabonne/guanaco-llama2-1k`) with the Llama-2 and SmolLM2
//! tokenizers, and the unformatted Alpaca JSON through the ChatML template.

use llama_model::Tokenizer;
use prompt_templates::{AlpacaRow, ChatTemplate, RenderOptions};
use sft_trainer::data::{DatasetConfig, Example, LoadOptions, RowFormat, collate, epoch_batches, load_dataset};

fn tokenizer(asset: &str) -> Tokenizer {
    let path = assets::require(asset).expect("run scripts/fetch-assets.sh");
    Tokenizer::from_file(&path, Some(1), vec![2]).expect("tokenizer")
}

fn parquet_config() -> DatasetConfig {
    assets::require(assets::known::ALPACA_PARQUET).expect("run scripts/fetch-assets.sh");
    DatasetConfig::new(format!("asset:{}", assets::known::ALPACA_PARQUET))
}

/// Checks what holds for text rows whatever the tokenizer: sizes, the EOS at the end of every
/// row that fits, and the truncation count.
fn check_text_rows(examples: &[Example], truncated: usize, max: usize) {
    assert_eq!(examples.len(), 999);
    assert!(examples.iter().all(|e| e.len() <= max && e.num_loss_tokens() == e.len()));
    let full: Vec<&Example> = examples.iter().filter(|e| e.len() < max).collect();
    assert!(full.iter().all(|e| e.input_ids.last() == Some(&2)), "every untruncated row ends with EOS");
    assert!(examples.iter().filter(|e| e.len() == max).count() >= truncated, "every truncated row fills the window");
}

#[test]
fn alpaca_parquet_with_the_llama2_tokenizer() {
    let tok = tokenizer(assets::known::LLAMA2_TOKENIZER);
    let loaded = load_dataset(&parquet_config(), &tok, &LoadOptions::new(256)).expect("load");
    assert_eq!(loaded.format, RowFormat::Text);
    assert_eq!((loaded.report.rows_read, loaded.report.rows_kept), (999, 999));
    assert_eq!(loaded.report.total_skipped(), 0, "{}", loaded.report);
    assert!(loaded.report.truncated > 0, "some rows are longer than 256 tokens");
    check_text_rows(&loaded.train, loaded.report.truncated, 256);
    // `<s>[INST]`: the literal `<s>` is the BOS token; the text already ends with `</s>`.
    assert!(loaded.train.iter().all(|e| e.input_ids.starts_with(&[1, 518, 25580, 29962])));
    let text = tok.decode(&loaded.train[1].input_ids, true).expect("decode");
    assert!(text.starts_with("[INST] ") && text.contains(" [/INST] "), "{text}");
    assert!(
        loaded.train.iter().filter(|e| e.len() < 256).all(|e| e.input_ids.iter().filter(|&&t| t == 2).count() == 1),
        "no EOS added twice"
    );

    // HF's Llama tokenizer adds its own BOS in front of the text's `<s>`, as trl sees it.
    let mut options = LoadOptions::new(256);
    options.add_bos_token = true;
    let doubled = load_dataset(&parquet_config(), &tok, &options).expect("load");
    assert!(doubled.train.iter().all(|e| e.input_ids.starts_with(&[1, 1, 518])));

    // Every example appears exactly once per epoch, the longest first; the batches collate.
    let batches = epoch_batches(&loaded.train, 4, true, 42, 0);
    let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..999).collect::<Vec<_>>());
    let longest = loaded.train.iter().map(Example::len).max().expect("examples");
    assert_eq!(loaded.train[batches[0][0]].len(), longest);
    let refs: Vec<&Example> = batches[0].iter().map(|&i| &loaded.train[i]).collect();
    let batch = collate(&refs, tok.pad_id().expect("pad"));
    assert_eq!((batch.batch, batch.seq_len), (4, longest));
}

#[test]
fn alpaca_parquet_with_the_smollm2_tokenizer() {
    let tok = tokenizer(assets::known::SMOLLM2_TOKENIZER);
    let config = DatasetConfig { eval_fraction: 0.1, ..parquet_config() };
    let loaded = load_dataset(&config, &tok, &LoadOptions::new(1024)).expect("load");
    assert_eq!((loaded.train.len(), loaded.eval.len()), (899, 100));
    let all: Vec<Example> = loaded.train.iter().chain(&loaded.eval).cloned().collect();
    check_text_rows(&all, loaded.report.truncated, 1024);
    // SmolLM2's EOS is `<|im_end|>`, so it is appended after the text's literal `</s>`.
    let short = loaded.train.iter().find(|e| e.len() < 1024).expect("a short row");
    let text = tok.decode(&short.input_ids, false).expect("decode");
    assert!(text.starts_with("<s>[INST] ") && text.ends_with(" </s><|im_end|>"), "{text}");
}

#[test]
fn alpaca_json_through_the_chatml_template() {
    let json = assets::require(assets::known::ALPACA_JSON).expect("run scripts/fetch-assets.sh");
    let tok = tokenizer(assets::known::SMOLLM2_TOKENIZER);
    let config = DatasetConfig { template: "chatml".into(), ..DatasetConfig::new(json.display().to_string()) };
    let loaded = load_dataset(&config, &tok, &LoadOptions::new(2048)).expect("load");
    assert_eq!(loaded.format, RowFormat::Alpaca);
    assert_eq!(loaded.train.len(), 999, "{}", loaded.report);

    let rows: Vec<AlpacaRow> = serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("rows");
    let renderer = ChatTemplate::ChatMl.prepare().expect("chatml");
    for (row, example) in rows.iter().zip(&loaded.train).take(50) {
        let pair = renderer.render_alpaca(row, &RenderOptions::new()).expect("render");
        assert!(pair.prompt.starts_with("<|im_start|>user\n") && pair.completion.ends_with("<|im_end|>\n"));
        let prompt_len = example.loss_mask.iter().take_while(|m| !**m).count();
        assert!(example.loss_mask[prompt_len..].iter().all(|m| *m), "one masked prefix, then the completion");
        assert_eq!(tok.decode(&example.input_ids[..prompt_len], false).expect("decode"), pair.prompt);
        assert_eq!(tok.decode(&example.input_ids[prompt_len..], false).expect("decode"), pair.completion);
    }

    let whole = DatasetConfig { completion_only_loss: Some(false), max_rows: Some(10), ..config };
    let loaded = load_dataset(&whole, &tok, &LoadOptions::new(2048)).expect("load");
    assert_eq!(loaded.train.len(), 10);
    assert!(loaded.train.iter().all(|e| e.num_loss_tokens() == e.len()));
}
