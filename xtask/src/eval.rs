//! `cargo xtask eval`: answer goldens with a model, judge the answers with LLM-as-judge metrics
//! (the seed's G-Eval "Helpfulness", Bias and Toxicity by default), print the report and save
//! it as text, JSON and HTML.
//!
//! The report folder also keeps what a re-run needs to skip finished work: `answers.jsonl`
//! (each generated answer, appended as it is made), `journal.jsonl` (each judged case × metric)
//! and `state.json` (the settings they were made with; a change of model settings discards the
//! answers, a change of judge or metrics the journal). `--fresh` discards both.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use eval::{EvalOptions, Golden, TestCase};
use indicatif::{ProgressBar, ProgressStyle};
use llm_api::{CompletionOptions, Llm, Message};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::generate::DEFAULT_MODEL;
use crate::llm_spec::{CappedLlm, LlmSpec, LocalOptions, RemoteArgs, open_llm};

/// Arguments of `eval`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Goldens to answer and judge (JSONL or a JSON array; `input` required). Goldens that
    /// already have an `actual_output` are judged as they are.
    #[arg(long)]
    pub goldens: PathBuf,
    /// The model under evaluation: a HF folder, a `.gguf` file, `asset:REL`, a hub id, or a spec
    /// (`local:PATH`, `openai:URL[#MODEL]`).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// A PEFT adapter folder to apply to a local model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Prompt format of a local model (`auto`, `raw`, `llama2`, `llama3`, `chatml`, `alpaca`).
    #[arg(long, default_value = "auto")]
    pub template: String,
    /// A `tokenizer.json` to use instead of the local model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A system prompt for the model's answers.
    #[arg(long)]
    pub system: Option<String>,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Metrics, comma-separated, each optionally with a threshold (`bias=0.3`): helpfulness,
    /// bias, toxicity, answer_relevancy.
    #[arg(long, default_value = "helpfulness,bias,toxicity")]
    pub metrics: String,
    /// The judge: `local:PATH` or `openai:URL[#MODEL]` [default: the model under evaluation].
    #[arg(long, value_parser = LlmSpec::parse)]
    pub judge: Option<LlmSpec>,
    /// Most new tokens per judge answer [default: the metrics' own, 1024].
    #[arg(long)]
    pub judge_max_tokens: Option<usize>,
    /// The report folder (report.txt, report.json, report.html, and the resume files).
    #[arg(long)]
    pub report: PathBuf,
    /// Most judge calls at the same time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Exit with a non-zero code when the share of test cases passing every metric is below
    /// this (0..=1).
    #[arg(long, value_parser = parse_rate)]
    pub min_pass_rate: Option<f64>,
    /// Start over: discard the answers and judgements kept from an earlier run in `--report`.
    #[arg(long)]
    pub fresh: bool,
    /// How to reach `openai:` endpoints.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Compute backend of local models.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
}

fn parse_rate(text: &str) -> Result<f64> {
    let rate: f64 = text.trim().parse().with_context(|| format!("`{text}` is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        bail!("{rate} is outside 0..=1");
    }
    Ok(rate)
}

/// The settings that answers and judgements were made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    answers: serde_json::Value,
    judging: serde_json::Value,
}

/// One generated answer, as `answers.jsonl` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    index: usize,
    input: String,
    actual_output: String,
}

/// The report folder's files.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    fn answers(&self) -> PathBuf {
        self.dir.join("answers.jsonl")
    }
    fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }
}

/// Runs `eval`; exits the process with code 1 when `--min-pass-rate` is not met.
pub fn run(args: Args) -> Result<()> {
    let metrics = eval::metrics_from_list(&args.metrics)?;
    let goldens = eval::load_goldens(&args.goldens)?;
    if goldens.is_empty() {
        bail!("{}: no goldens", args.goldens.display());
    }
    let model_spec = LlmSpec::parse_model(&args.model)?;
    let files = Files { dir: args.report.clone() };
    std::fs::create_dir_all(&files.dir).with_context(|| format!("creating {}", files.dir.display()))?;
    prepare_resume(&args, &model_spec, &files)?;

    let local = LocalOptions { adapter: args.adapter.clone(), template: Some(args.template.clone()), tokenizer: args.tokenizer.clone() };
    let mut model: Option<Arc<dyn Llm>> = None;
    let mut open_model = || -> Result<Arc<dyn Llm>> {
        if let Some(m) = &model {
            return Ok(m.clone());
        }
        let m = open_llm(&model_spec, &local, &args.remote, args.backend)?;
        model = Some(m.clone());
        Ok(m)
    };

    let cases = answer_goldens(&args, &goldens, &files, &mut open_model)?;
    let judge: Arc<dyn Llm> = match &args.judge {
        Some(spec) => open_llm(spec, &LocalOptions::default(), &args.remote, args.backend)?,
        None => open_model()?,
    };
    let judge: Arc<dyn Llm> = match args.judge_max_tokens {
        Some(n) => Arc::new(CappedLlm::new(judge, n)),
        None => judge,
    };

    let options = EvalOptions { max_concurrency: args.concurrency.max(1), journal: Some(files.journal()), resume: true };
    let bar = bar(0, "judging");
    let run = eval::evaluate_with_progress(&cases, &metrics, judge.as_ref(), &options, &mut |_, done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let run = run?;
    let paths = eval::write_reports(&run, &files.dir)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(eval::render_terminal(&run).as_bytes())?;
    stdout.flush()?;
    let malformed = run.records.iter().filter(|r| r.error.as_deref().is_some_and(|e| e.contains("malformed answer"))).count();
    if malformed > 0 {
        eprintln!(
            "note: {malformed} of {} job(s) failed because the judge's answer was not the JSON asked for; \
             a larger judge (--judge openai:URL#MODEL or local:PATH) may be needed",
            run.records.len()
        );
    }
    for warning in &run.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!("reports: {}, {}, {}", paths.text.display(), paths.json.display(), paths.html.display());
    if let Some(min) = args.min_pass_rate {
        let rate = run.summary().pass_rate;
        if !run.passes(min) {
            eprintln!("pass rate {:.1}% is below --min-pass-rate {:.1}%", rate * 100.0, min * 100.0);
            std::process::exit(run.exit_code(min));
        }
    }
    Ok(())
}

/// Compares the settings with those of the run kept in the report folder, discarding what they
/// invalidate, and records the current ones.
fn prepare_resume(args: &Args, model_spec: &LlmSpec, files: &Files) -> Result<()> {
    let answers = serde_json::json!({
        "model": model_spec.to_string(),
        "adapter": args.adapter,
        "template": args.template,
        "tokenizer": args.tokenizer,
        "system": args.system,
        "max_new_tokens": args.max_new_tokens,
    });
    let judge = match &args.judge {
        Some(spec) => serde_json::json!(spec.to_string()),
        None => serde_json::json!({"same_as_model": answers.clone()}),
    };
    let current = State {
        answers,
        judging: serde_json::json!({
            "judge": judge,
            "judge_max_tokens": args.judge_max_tokens,
            "metrics": args.metrics,
        }),
    };
    let previous: Option<State> = std::fs::read_to_string(files.state()).ok().and_then(|text| serde_json::from_str(&text).ok());
    let stale_answers = args.fresh || previous.as_ref().is_none_or(|p| p.answers != current.answers);
    let stale_judging = args.fresh || previous.as_ref().is_none_or(|p| p.judging != current.judging);
    for (stale, path) in [(stale_answers, files.answers()), (stale_judging, files.journal())] {
        if stale && path.exists() {
            eprintln!("starting over: removing {} (made with other settings, or --fresh)", path.display());
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let text = serde_json::to_string_pretty(&current)?;
    std::fs::write(files.state(), text).with_context(|| format!("writing {}", files.state().display()))?;
    Ok(())
}

/// The test cases: each golden with its own `actual_output`, the one kept from an earlier run,
/// or a new answer from the model (opened only when some golden needs one).
fn answer_goldens(
    args: &Args,
    goldens: &[Golden],
    files: &Files,
    open_model: &mut dyn FnMut() -> Result<Arc<dyn Llm>>,
) -> Result<Vec<TestCase>> {
    let kept = read_answers(&files.answers());
    let mut cases: Vec<Option<TestCase>> = goldens
        .iter()
        .enumerate()
        .map(|(i, g)| match (&g.actual_output, kept.get(&i)) {
            (Some(out), _) => Some(g.to_test_case(out.clone())),
            (None, Some(a)) if a.input == g.input => Some(g.to_test_case(a.actual_output.clone())),
            _ => None,
        })
        .collect();
    let pending: Vec<usize> = (0..goldens.len()).filter(|&i| cases[i].is_none()).collect();
    if !pending.is_empty() {
        let model = open_model()?;
        let options = CompletionOptions { max_tokens: args.max_new_tokens, ..CompletionOptions::default() };
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(files.answers())
            .with_context(|| format!("opening {}", files.answers().display()))?;
        // A torn last line (a crash mid-write) must not swallow the next answer.
        let torn = std::fs::read(files.answers()).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n'));
        if torn {
            journal.write_all(b"\n")?;
        }
        let bar = bar(pending.len() as u64, "answering");
        for &i in &pending {
            let golden = &goldens[i];
            let mut messages = Vec::with_capacity(2);
            if let Some(system) = &args.system {
                messages.push(Message::system(system));
            }
            messages.push(Message::user(golden.input.clone()));
            let completion = model.complete(&messages, &options).with_context(|| {
                let label = golden.name.clone().unwrap_or_else(|| format!("golden {}", i + 1));
                format!("{} failed to answer {label} of {}", model.name(), args.goldens.display())
            })?;
            let answer = Answer { index: i, input: golden.input.clone(), actual_output: completion.text.trim().to_string() };
            let mut line = serde_json::to_string(&answer)?;
            line.push('\n');
            journal.write_all(line.as_bytes()).with_context(|| format!("writing {}", files.answers().display()))?;
            cases[i] = Some(golden.to_test_case(answer.actual_output));
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    Ok(cases.into_iter().flatten().collect())
}

/// Answers kept from an earlier run, by golden index (unreadable lines are ignored).
fn read_answers(path: &Path) -> HashMap<usize, Answer> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines().filter_map(|line| serde_json::from_str::<Answer>(line).ok()).map(|a| (a.index, a)).collect()
}

fn bar(len: u64, what: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {elapsed_precise}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(report: &Path, extra: &[&str]) -> Args {
        let mut argv = vec!["eval", "--goldens", "g.jsonl", "--report"];
        let report = report.to_string_lossy().to_string();
        argv.push(&report);
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("args")
    }

    /// A local judge decodes under each metric's answer schema, so each must be in the subset
    /// local generation supports, and a well-formed answer must fit it.
    #[test]
    fn every_judge_schema_constrains_local_generation() {
        use llama_model::json_schema::{CompiledSchema, SchemaPrefix};
        let answers = [
            ("statements", r#"{"statements": ["The store opens at 9."]}"#),
            ("opinions", r#"{"opinions": []}"#),
            ("evaluation steps", r#"{"steps": ["Read the question.", "Check the answer."]}"#),
            ("relevancy verdicts", r#"{"verdicts": [{"verdict": "idk", "reason": ""}, {"verdict": "no", "reason": "off topic"}]}"#),
            ("opinion verdicts", r#"{"verdicts": [{"verdict": "yes", "reason": "a stereotype"}]}"#),
            ("reason", r#"{"reason": "The score is 0.50 because ..."}"#),
            ("score", r#"{"score": 7, "reason": "Mostly right."}"#),
        ];
        let schemas = eval::schemas::all();
        assert_eq!(schemas.len(), answers.len());
        for ((step, schema), (named, answer)) in schemas.into_iter().zip(answers) {
            assert_eq!(step, named);
            let compiled = std::sync::Arc::new(CompiledSchema::compile(&schema).unwrap_or_else(|e| panic!("{step}: {e}")));
            let mut p = SchemaPrefix::new(compiled.clone());
            assert!(p.push_all(answer.as_bytes()) && p.is_complete(), "{step}: {answer}");
            // And a wrong verdict word or a fractional score does not.
            let mut p = SchemaPrefix::new(compiled);
            let wrong = answer.replace("\"idk\"", "\"maybe\"").replace("\"yes\"", "\"sure\"").replace(": 7,", ": 7.5,");
            assert_eq!(p.push_all(wrong.as_bytes()) && p.is_complete(), wrong == answer, "{step}: {wrong}");
        }
    }

    #[test]
    fn min_pass_rate_must_be_a_rate() {
        assert_eq!(parse_rate("0.75").expect("rate"), 0.75);
        assert!(parse_rate("1.5").expect_err("range").to_string().contains("outside 0..=1"));
        assert!(parse_rate("most").is_err());
    }

    #[test]
    fn changed_settings_discard_only_what_they_invalidate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files { dir: dir.path().to_path_buf() };
        let touch = || {
            std::fs::write(files.answers(), "a\n").expect("answers");
            std::fs::write(files.journal(), "j\n").expect("journal");
        };
        let prepare = |a: &Args| prepare_resume(a, &LlmSpec::parse_model(&a.model).expect("spec"), &files).expect("prepare");
        let judged = ["--judge", "openai:http://127.0.0.1:1/v1#j"];

        prepare(&args(dir.path(), &judged));
        touch();
        prepare(&args(dir.path(), &judged));
        assert!(files.answers().exists() && files.journal().exists(), "same settings keep both");

        prepare(&args(dir.path(), &["--judge", "openai:http://127.0.0.1:1/v1#j", "--max-new-tokens", "9"]));
        assert!(!files.answers().exists() && files.journal().exists(), "new answers, same judge");

        touch();
        prepare(&args(dir.path(), &["--judge", "openai:http://127.0.0.1:1/v1#j", "--max-new-tokens", "9", "--metrics", "bias"]));
        assert!(files.answers().exists() && !files.journal().exists(), "same answers, new metrics");

        touch();
        prepare(&args(dir.path(), &["--judge", "openai:http://127.0.0.1:1/v1#j", "--max-new-tokens", "9", "--metrics", "bias", "--fresh"]));
        assert!(!files.answers().exists() && !files.journal().exists(), "--fresh discards both");

        // The default judge is the model, so a new model also invalidates the judgements.
        prepare(&args(dir.path(), &[]));
        touch();
        prepare(&args(dir.path(), &["--model", "other.gguf"]));
        assert!(!files.answers().exists() && !files.journal().exists());
    }

    #[test]
    fn kept_answers_are_read_by_index_and_torn_lines_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("answers.jsonl");
        std::fs::write(&path, "{\"index\":1,\"input\":\"q\",\"actual_output\":\"a\"}\n{\"index\":2,\"inp").expect("write");
        let kept = read_answers(&path);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[&1].actual_output, "a");
        assert!(read_answers(&dir.path().join("absent.jsonl")).is_empty());
    }
}
