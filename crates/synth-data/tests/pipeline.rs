//! The whole `generate_goldens_from_docs` pipeline on the sample documents, driven by a
//! scripted deterministic model and a bag-of-words embedder.

use std::path::PathBuf;
use std::sync::Mutex;

use llm_api::{Completion, CompletionOptions, Embedder, FinishReason, Llm, Message, Usage};
use synth_data::prompts::{ANSWER_INPUT, EVOLVE_INPUT, RATE_CONTEXT, RATE_INPUT, REWRITE_INPUT, STYLE_INPUT, WRITE_INPUTS};
use synth_data::{Error, Evolution, Golden, Progress, StylingConfig, SynthConfig, Synthesizer, load_document};
use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;

fn docs(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/docs").join(rel)
}

fn sample_docs() -> Vec<PathBuf> {
    ["tides.txt", "sourdough.md", "beekeeping.pdf", "lighthouses.docx"].iter().map(|f| docs(f)).collect()
}

/// Words and punctuation runs as tokens.
fn word_tokenizer() -> Tokenizer {
    let vocab = [("[UNK]".to_string(), 0u32)].into_iter().collect();
    let model = WordLevel::builder().vocab(vocab).unk_token("[UNK]".into()).build().expect("model");
    let mut tok = Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok
}

/// FNV-1a, for answers that depend on the prompt only.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The text after a `label` line, up to the next blank line.
fn section<'a>(prompt: &'a str, label: &str) -> &'a str {
    let start = prompt.find(label).map_or(0, |i| i + label.len());
    prompt[start..].trim_start().split("\n\n").next().unwrap_or("").trim()
}

#[derive(Debug, Clone)]
struct Call {
    task: String,
    seed: Option<u64>,
    json_mode: bool,
    turns: usize,
}

/// Answers each stage's prompt from its content alone. Some context scores fall below the
/// threshold; every fresh input scores low until rewritten; some answers come in prose or
/// fences; the first answer to each input-rating prompt whose hash is divisible by 3 is not
/// JSON at all (the follow-up turn gets JSON).
#[derive(Default)]
struct ScriptedLlm {
    calls: Mutex<Vec<Call>>,
    garbage_for: Option<&'static str>,
}

impl ScriptedLlm {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    fn answer(&self, messages: &[Message]) -> String {
        let prompt = &messages[0].content;
        let task = prompt.lines().next().unwrap_or("");
        if Some(task) == self.garbage_for {
            return "I would rather not say.".into();
        }
        let h = fnv(prompt);
        match task {
            RATE_CONTEXT => {
                let base = (h % 60) as f64 / 100.0 + 0.2; // 0.2 ..= 0.79
                format!(
                    "Here you go:\n```json\n{{\"clarity\": {base:.2}, \"depth\": {:.2}, \"structure\": \"{base:.2}\", \"relevance\": 1,}}\n```",
                    base - 0.1
                )
            }
            WRITE_INPUTS => {
                let n: usize = prompt
                    .split("Write ")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse().ok())
                    .expect("count in prompt");
                let context = section(prompt, "Context:\n");
                let topic: Vec<&str> = context.split_whitespace().skip(1).take(4).collect();
                // One more than asked: the pipeline must keep only what it asked for.
                let items: Vec<String> =
                    (0..=n).map(|i| format!("{{\"input\": \"Question {i} about {}?\"}}", topic.join(" ").replace('"', ""))).collect();
                format!("{{\"data\": [{}]}}", items.join(", "))
            }
            RATE_INPUT => {
                if messages.len() == 1 && h.is_multiple_of(3) {
                    return "Looks fine to me.".into();
                }
                let input = section(prompt, "Input:\n");
                if input.ends_with("(rewritten)") {
                    "{\"feedback\": \"clear\", \"score\": 0.9}".into()
                } else {
                    "{\"feedback\": \"name the subject\", \"score\": 0.3}".into()
                }
            }
            REWRITE_INPUT => {
                let input = section(prompt, "Input:\n");
                format!("{{\"rewritten_input\": \"{input} (rewritten)\"}}")
            }
            EVOLVE_INPUT => {
                let method = section(prompt, "Method (").split(')').next().unwrap_or("").to_string();
                let input = section(prompt, "Input:\n");
                format!("Rewritten input: \"[{method}] {input}\"")
            }
            STYLE_INPUT => {
                let input = section(prompt, "Input:\n");
                format!("{{\"input\": \"Dear expert, {input}\"}}")
            }
            ANSWER_INPUT => format!("Answer to: {}", section(prompt, "Input:\n")),
            other => panic!("unexpected prompt: {other}"),
        }
    }
}

impl Llm for ScriptedLlm {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> llm_api::Result<Completion> {
        let task = messages[0].content.lines().next().unwrap_or("").to_string();
        self.calls.lock().expect("lock").push(Call { task, seed: options.seed, json_mode: options.json_mode, turns: messages.len() });
        Ok(Completion { text: self.answer(messages), logprobs: None, finish_reason: FinishReason::Stop, usage: Usage::default() })
    }
}

/// Hashed bag of lowercase words in 64 dimensions.
struct BagOfWords;

impl Embedder for BagOfWords {
    fn name(&self) -> String {
        "bag-of-words".into()
    }

    fn embed(&self, texts: &[String]) -> llm_api::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 64];
                for w in t.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 3) {
                    v[(fnv(&w.to_lowercase()) % 64) as usize] += 1.0;
                }
                v
            })
            .collect())
    }
}

fn config(seed: u64) -> SynthConfig {
    let mut cfg = SynthConfig { seed, max_goldens_per_document: Some(2), ..SynthConfig::default() };
    cfg.context.chunk_size = 64;
    cfg.context.chunk_overlap = 8;
    cfg.evolution.num_evolutions = 2;
    cfg
}

fn run(llm: &ScriptedLlm, cfg: SynthConfig, paths: &[PathBuf]) -> (synth_data::Result<Vec<Golden>>, Vec<Progress>) {
    let tokenizer = word_tokenizer();
    let synth = Synthesizer::new(llm, &BagOfWords, &tokenizer, cfg).expect("synthesizer");
    let mut seen = Vec::new();
    let goldens = synth.generate_goldens_from_docs(paths, &mut |p| seen.push(*p));
    (goldens, seen)
}

#[test]
fn goldens_have_structure_and_provenance() {
    let llm = ScriptedLlm::default();
    let paths = sample_docs();
    let (goldens, progress) = run(&llm, config(42), &paths);
    let goldens = goldens.unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(goldens.len(), 8, "two per document");
    for path in &paths {
        let doc = load_document(path).expect("doc");
        let mine: Vec<&Golden> = goldens.iter().filter(|g| g.source_file == path.display().to_string()).collect();
        assert_eq!(mine.len(), 2, "{}", path.display());
        for g in mine {
            assert!(!g.context.is_empty() && g.context.len() <= 3);
            assert_eq!(g.context.len(), g.context_chunks.len());
            assert_eq!(g.context.len(), g.context_similarities.len());
            assert_eq!(g.context_similarities[0], 1.0);
            for (text, at) in g.context.iter().zip(&g.context_chunks) {
                assert_eq!(text, doc.text[at.start..at.end].trim(), "provenance of chunk {}", at.index);
            }
            assert!((0.0..=1.0).contains(&g.context_quality));
            // Fresh inputs score 0.3, are rewritten once, then score 0.9.
            assert_eq!(g.synthetic_input_quality, 0.9);
            assert!(g.original_input.starts_with("Question "), "{}", g.original_input);
            assert_eq!(g.evolutions.len(), 2);
            let (first, second) = (g.evolutions[0].display_name(), g.evolutions[1].display_name());
            assert!(g.input.starts_with(&format!("[{second}] [{first}] Question ")), "{}", g.input);
            assert!(g.input.ends_with("(rewritten)"), "{}", g.input);
            assert_eq!(g.expected_output.as_deref(), Some(format!("Answer to: {}", g.input).as_str()));
        }
    }

    // Progress: starts at zero, never goes back, ends complete.
    assert_eq!(progress[0], Progress { documents_done: 0, documents_total: 4, goldens_made: 0, goldens_target: 8 });
    assert!(progress.windows(2).all(|w| w[1].goldens_made >= w[0].goldens_made && w[1].documents_done >= w[0].documents_done));
    let last = progress.last().expect("some progress");
    assert_eq!((last.documents_done, last.goldens_made), (4, 8));
    assert_eq!(progress.len(), 1 + 8 + 4);

    // Every call carried its document's seed; JSON stages asked for JSON; the unreadable
    // input ratings were asked again.
    let calls = llm.calls();
    assert!(calls.iter().all(|c| c.seed.is_some()));
    let seeds: std::collections::BTreeSet<u64> = calls.iter().filter(|c| c.turns == 1).filter_map(|c| c.seed).collect();
    assert_eq!(seeds.len(), 4, "one seed per document");
    for c in &calls {
        let json = [RATE_CONTEXT, WRITE_INPUTS, RATE_INPUT, REWRITE_INPUT].contains(&c.task.as_str());
        assert_eq!(c.json_mode, json, "{}", c.task);
    }
    assert!(calls.iter().any(|c| c.task == RATE_INPUT && c.turns == 3), "a JSON retry happened");
    let count = |t: &str| calls.iter().filter(|c| c.task == t && c.turns == 1).count();
    assert_eq!(count(WRITE_INPUTS), 4, "one context per document for two goldens");
    assert_eq!(count(EVOLVE_INPUT), 16);
    assert_eq!(count(ANSWER_INPUT), 8);
    assert_eq!(count(STYLE_INPUT), 0);
    assert!(count(RATE_CONTEXT) >= 4);
}

fn jsonl(seed: u64) -> Vec<u8> {
    let llm = ScriptedLlm::default();
    let goldens = run(&llm, config(seed), &sample_docs()).0.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("goldens.jsonl");
    synth_data::write_jsonl(&path, &goldens).expect("write");
    synth_data::write_csv(&dir.path().join("goldens.csv"), &goldens).expect("csv");
    std::fs::read(&path).expect("read")
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = jsonl(7);
    assert_eq!(a, jsonl(7));
    assert_ne!(a, jsonl(8));
    assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 8);
}

#[test]
fn without_a_per_document_cap_each_context_gives_its_goldens() {
    let llm = ScriptedLlm::default();
    let mut cfg = config(1);
    cfg.max_goldens_per_document = None;
    cfg.evolution.num_evolutions = 0;
    cfg.include_expected_output = false;
    let (goldens, _) = run(&llm, cfg, &[docs("tides.txt")]);
    let goldens = goldens.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(goldens.len(), 6, "3 contexts × 2 inputs");
    assert!(goldens.iter().all(|g| g.evolutions.is_empty() && g.expected_output.is_none()));
    let seeds: std::collections::BTreeSet<usize> = goldens.iter().map(|g| g.context_chunks[0].index).collect();
    assert_eq!(seeds.len(), 3, "three distinct seed chunks");
}

#[test]
fn styling_rewrites_inputs() {
    let llm = ScriptedLlm::default();
    let mut cfg = config(3);
    cfg.styling = StylingConfig { scenario: Some("a ship's navigator".into()), ..StylingConfig::default() };
    cfg.evolution.weights = [(Evolution::Comparative, 1.0)].into_iter().collect();
    let (goldens, _) = run(&llm, cfg, &[docs("lighthouses.docx")]);
    let goldens = goldens.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(goldens.len(), 2);
    for g in &goldens {
        assert!(g.input.starts_with("Dear expert, [Comparative] [Comparative] Question"), "{}", g.input);
        assert_eq!(g.evolutions, vec![Evolution::Comparative, Evolution::Comparative]);
    }
}

#[test]
fn answers_that_stay_malformed_fail_naming_stage_file_and_shape() {
    let llm = ScriptedLlm { garbage_for: Some(RATE_CONTEXT), ..ScriptedLlm::default() };
    let (result, _) = run(&llm, config(0), &[docs("beekeeping.pdf")]);
    let err = result.expect_err("critic never answers JSON");
    let text = err.to_string();
    assert!(matches!(&err, Error::Llm { source: llm_api::Error::Malformed { .. }, .. }), "{text}");
    assert!(text.contains("beekeeping.pdf") && text.contains("clarity") && text.contains("after 3 attempts"), "{text}");
    assert_eq!(llm.calls().len(), 3, "one call and two retries");
}

#[test]
fn a_bad_document_fails_before_any_model_call() {
    let llm = ScriptedLlm::default();
    let paths = vec![docs("tides.txt"), docs("bad/plain-zip.docx")];
    let (result, progress) = run(&llm, config(0), &paths);
    let err = result.expect_err("bad docx");
    assert!(err.to_string().contains("plain-zip.docx"), "{err}");
    assert!(llm.calls().is_empty() && progress.is_empty());
}

#[test]
fn too_few_chunks_is_an_error_naming_the_document() {
    let llm = ScriptedLlm::default();
    let mut cfg = config(0);
    cfg.context.chunk_size = 100_000;
    cfg.context.min_contexts_per_document = 2;
    cfg.context.max_contexts_per_document = 2;
    let (result, _) = run(&llm, cfg, &[docs("sourdough.md")]);
    let err = result.expect_err("one chunk");
    assert!(matches!(err, Error::TooFewChunks { .. }) && err.to_string().contains("sourdough.md"), "{err}");
}
