//! `xtask synth` end to end on every sample document format, with the real MiniLM embedder and
//! SmolLM2 tokenizer and a scripted generator behind an OpenAI-compatible endpoint (a model
//! that always writes the JSON asked for): structure, provenance, the per-document cap, CSV,
//! and byte-identical output for the same seed.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{SAMPLE_DOCS, asset, check_goldens, run, temp_files, xtask};
use eval::testing::{ScriptedLlm, text};
use llm_api::{CompletionOptions, Embedder, Message, ServerConfig, ServerHandle};
use synth_data::prompts::{ANSWER_INPUT, EVOLVE_INPUT, RATE_CONTEXT, RATE_INPUT, REWRITE_INPUT, STYLE_INPUT, WRITE_INPUTS};

/// The text after `label` up to the next blank line.
fn section<'a>(prompt: &'a str, label: &str) -> &'a str {
    let start = prompt.find(label).map_or(prompt.len(), |i| i + label.len());
    prompt[start..].split("\n\n").next().unwrap_or("").trim()
}

/// The first words of a context's first paragraph, quotes dropped: what the scripted
/// generator asks about.
fn topic(context: &str) -> String {
    let paragraph = context.trim().split("\n\n").next().unwrap_or("");
    paragraph.split_whitespace().take(6).collect::<Vec<_>>().join(" ").replace(['"', '\\'], "")
}

/// The first numbered part of a prompt's context.
fn first_part(prompt: &str) -> &str {
    section(prompt, "Context:\n").trim_start_matches("[1]")
}

/// Answers each stage from its prompt (and the seed it was sent with) alone.
fn respond(messages: &[Message], options: &CompletionOptions) -> llm_api::Result<llm_api::Completion> {
    let prompt = messages.last().map(|m| m.content.as_str()).unwrap_or_default();
    let seed = options.seed.ok_or_else(|| llm_api::Error::Model("the pipeline always sends a seed".into()))?;
    let answer = match prompt.lines().next().unwrap_or("") {
        RATE_CONTEXT => "Scores:\n```json\n{\"clarity\": 0.9, \"depth\": 0.8, \"structure\": \"0.9\", \"relevance\": 1,}\n```".to_string(),
        WRITE_INPUTS => {
            let n: usize = section(prompt, "Write ").split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or(1);
            // One more than asked for: the pipeline keeps what it asked for.
            let items: Vec<String> =
                (0..=n).map(|k| format!("{{\"input\": \"Question {k} on: {}?\"}}", topic(first_part(prompt)))).collect();
            format!("{{\"data\": [{}]}}", items.join(", "))
        }
        RATE_INPUT => r#"{"feedback": "Clear and self-contained.", "score": 0.9}"#.to_string(),
        REWRITE_INPUT => format!("{{\"rewritten_input\": \"{}\"}}", section(prompt, "Input:\n")),
        EVOLVE_INPUT => format!("Rewritten input: \"{} Explain step by step.\"", section(prompt, "Input:\n")),
        STYLE_INPUT => format!("{{\"input\": \"{}\"}}", section(prompt, "Input:\n")),
        ANSWER_INPUT => format!("From the context: {} (seed {seed}).", topic(first_part(prompt))),
        other => return Err(llm_api::Error::Model(format!("unexpected stage: {other}"))),
    };
    Ok(text(answer))
}

/// Counts of a few letters, for the endpoint's `/embeddings`.
struct LetterEmbedder;

impl Embedder for LetterEmbedder {
    fn name(&self) -> String {
        "letters".into()
    }
    fn embed(&self, texts: &[String]) -> llm_api::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| "etaoinshr".chars().map(|c| t.matches(c).count() as f32 + 1.0).collect()).collect())
    }
}

fn serve() -> ServerHandle {
    let config = ServerConfig::new(Arc::new(ScriptedLlm::from_fn(respond)), "scripted").with_embedder(Arc::new(LetterEmbedder));
    llm_api::spawn_server(config, SocketAddr::from(([127, 0, 0, 1], 0))).expect("server")
}

fn synth(url: &str, out: &Path, extra: &[&str]) -> common::Finished {
    let finished = run(xtask()
        .args(["synth", "--docs"])
        .args(SAMPLE_DOCS)
        .args(["--max-goldens-per-doc", "2", "--llm", &format!("openai:{url}")])
        .arg("--out")
        .arg(out)
        .args(extra));
    assert_eq!(finished.code, Some(0), "synth failed:\n{}", finished.stderr);
    finished
}

#[test]
fn goldens_from_every_format_with_provenance_and_fixed_bytes_per_seed() {
    asset(assets::known::MINILM_DIR);
    asset(assets::known::SMOLLM2_TOKENIZER);
    let server = serve();
    let url = server.base_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("synth.toml");
    std::fs::write(&config, "[context]\nchunk_size = 96\n").expect("config");
    let config = config.to_string_lossy().to_string();
    let out = |name: &str| dir.path().join("out").join(name);

    let first = synth(&url, &out("a.jsonl"), &["--seed", "11", "--config", &config, "--csv", &out("a.csv").to_string_lossy()]);
    assert!(first.stderr.contains("wrote 8 golden(s) from 4 document(s)"), "{}", first.stderr);
    let goldens = check_goldens(&out("a.jsonl"), &SAMPLE_DOCS, 2);
    assert_eq!(goldens.len(), 8, "two per document");
    for g in &goldens {
        // The scripted generator's answers, through every stage of the pipeline.
        assert!(g.original_input.starts_with("Question ") && g.original_input.contains(" on: "), "{}", g.original_input);
        let asked = (0..2).map(|k| format!("Question {k} on: {}?", topic(&g.context[0]))).collect::<Vec<_>>();
        assert!(asked.contains(&g.original_input), "asked from its own context: {g:?}");
        assert_eq!(g.input, format!("{} Explain step by step.", g.original_input));
        assert_eq!(g.evolutions.len(), 1);
        assert!((g.context_quality - 0.9).abs() < 1e-9 && (g.synthetic_input_quality - 0.9).abs() < 1e-9);
        assert!(g.expected_output.as_deref().is_some_and(|e| e.starts_with("From the context: ")));
    }

    // `xtask eval` reads what `xtask synth` writes.
    let for_eval = eval::load_goldens(out("a.jsonl")).expect("eval reads synth output");
    assert_eq!(for_eval.len(), goldens.len());
    for (e, g) in for_eval.iter().zip(&goldens) {
        assert_eq!(
            (e.input.as_str(), e.source_file.as_deref(), e.context.as_ref()),
            (g.input.as_str(), Some(g.source_file.as_str()), Some(&g.context))
        );
        assert_eq!(e.expected_output, g.expected_output);
    }

    // CSV: the header, then one row per golden.
    let mut reader = csv::Reader::from_path(out("a.csv")).expect("csv");
    let header: Vec<String> = reader.headers().expect("header").iter().map(String::from).collect();
    assert_eq!(header, synth_data::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), goldens.len());
    for (row, g) in rows.iter().zip(&goldens) {
        assert_eq!((&row[0], &row[3]), (g.input.as_str(), g.source_file.as_str()));
    }

    // The same seed gives the same bytes; another seed other bytes, the same shape.
    synth(&url, &out("b.jsonl"), &["--seed", "11", "--config", &config, "--csv", &out("b.csv").to_string_lossy()]);
    let read = |name: &str| std::fs::read(out(name)).expect("output");
    assert_eq!(read("a.jsonl"), read("b.jsonl"));
    assert_eq!(read("a.csv"), read("b.csv"));
    synth(&url, &out("c.jsonl"), &["--seed", "12", "--config", &config]);
    assert_ne!(read("a.jsonl"), read("c.jsonl"));
    assert_eq!(check_goldens(&out("c.jsonl"), &SAMPLE_DOCS, 2).len(), 8);
    assert!(temp_files(&dir.path().join("out")).is_empty());

    // The embedder can be an endpoint too.
    synth(&url, &out("d.jsonl"), &["--embedder", &format!("openai:{url}#letters")]);
    assert_eq!(check_goldens(&out("d.jsonl"), &SAMPLE_DOCS, 2).len(), 8);
    server.shutdown().expect("shutdown");
}
