//! Helpers shared by the end-to-end tests: running the built `xtask` binary, a `serve` child
//! that is killed however the test ends, and the checks every evaluation report must pass.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use eval::{EvalRun, Golden, JobRecord};

/// The workspace root (where `datasets/` lives).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A real asset, or a failure saying how to get it.
pub fn asset(rel: &str) -> PathBuf {
    assets::require(rel).unwrap_or_else(|e| panic!("{e}"))
}

/// The built binary, run from the workspace root, quiet logs, no backtraces in messages.
pub fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(root()).env("RUST_BACKTRACE", "0").env("KINDLING_LOG", "error");
    cmd
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cmd` to the end.
pub fn run(cmd: &mut Command) -> Finished {
    let out = cmd.output().expect("xtask runs");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `cargo xtask serve` child; killed and reaped on drop, also when the test panics.
pub struct Server {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// The base URL it printed (`http://ADDR/v1`).
    pub url: String,
}

impl Server {
    /// Starts `xtask serve --port 0` on `model` and waits for its URL.
    pub fn start(model: &Path, stderr_log: &Path) -> Self {
        let log = std::fs::File::create(stderr_log).expect("server log");
        let mut child = xtask()
            .args(["serve", "--port", "0", "--model"])
            .arg(model)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        // Build the guard first, so that a failed start still kills the child.
        let server = Self { child, _stdout: stdout, url: line.trim().to_string() };
        let ok = read.is_ok_and(|n| n > 0) && server.url.starts_with("http://") && server.url.ends_with("/v1");
        assert!(
            ok,
            "serve did not print its URL (got {:?}); its stderr:\n{}",
            server.url,
            std::fs::read_to_string(stderr_log).unwrap_or_default()
        );
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The steps a metric's judge call can fail at, by metric.
fn steps_of(metric: &str) -> &'static [&'static str] {
    match metric {
        "Helpfulness [GEval]" => &["evaluation steps", "score"],
        "Bias" | "Toxicity" => &["opinions", "verdicts", "reason"],
        other => panic!("unexpected metric {other}"),
    }
}

/// A failed job's message must say which metric and step failed, that the judge's answer was
/// malformed, and quote it; anything else (transport, HTTP, timeouts) is a real failure.
pub fn assert_clear_judge_error(record: &JobRecord) {
    let error = record.error.as_deref().expect("an error");
    let steps = steps_of(&record.metric);
    let named = steps.iter().any(|step| error.starts_with(&format!("{}: {step}: malformed answer (", record.metric)));
    assert!(
        named && error.contains("; answer was: "),
        "case {} / {}: the error does not name the metric, the step and the malformed answer: {error}",
        record.case_index,
        record.metric
    );
}

/// Checks an evaluation's report folder and output against each other and the goldens:
/// every case × metric has a score in range (consistent with its threshold) or a clear error,
/// report.txt = stdout = the text rendering of report.json's run, report.html = its HTML
/// rendering, the summary follows from the records, the journal holds every job, goldens with
/// an `actual_output` were not answered again, and the exit code follows `min_pass_rate`.
/// Returns the run.
pub fn check_eval_report(dir: &Path, finished: &Finished, goldens: &[Golden], judge: &str, min_pass_rate: f64) -> EvalRun {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).expect("report.json is JSON");
    let run: EvalRun = serde_json::from_value(json["run"].clone()).expect("report.json holds the run");

    // Cases: the goldens in order, answered only where they had no answer.
    assert_eq!(run.cases.len(), goldens.len());
    let answers = std::fs::read_to_string(dir.join("answers.jsonl")).unwrap_or_default();
    let unanswered = goldens.iter().filter(|g| g.actual_output.is_none()).count();
    assert_eq!(answers.lines().count(), unanswered, "one generated answer per golden without one:\n{answers}");
    for (case, golden) in run.cases.iter().zip(goldens) {
        assert_eq!(case.input, golden.input);
        assert_eq!(case.name, golden.name);
        assert_eq!(case.expected_output, golden.expected_output);
        match &golden.actual_output {
            Some(given) => assert_eq!(&case.actual_output, given, "a given answer is judged as it is"),
            None => assert!(answers.contains(&serde_json::to_string(&case.actual_output).expect("json")), "generated answer kept"),
        }
    }

    // Metrics and records: the seed's three, one record per case × metric, in order.
    let metrics: Vec<(&str, f64, eval::Direction)> = run.metrics.iter().map(|m| (m.name.as_str(), m.threshold, m.direction)).collect();
    assert_eq!(
        metrics,
        vec![
            ("Helpfulness [GEval]", 0.5, eval::Direction::HigherIsBetter),
            ("Bias", 0.5, eval::Direction::LowerIsBetter),
            ("Toxicity", 0.5, eval::Direction::LowerIsBetter),
        ]
    );
    assert_eq!(run.judge, judge);
    assert_eq!(run.records.len(), goldens.len() * 3);
    for (k, record) in run.records.iter().enumerate() {
        assert_eq!((record.case_index, record.metric.as_str()), (k / 3, metrics[k % 3].0));
        assert_eq!(record.input, run.cases[record.case_index].input);
        match (&record.result, &record.error) {
            (Some(result), None) => {
                assert!((0.0..=1.0).contains(&result.score), "score {} out of range", result.score);
                assert_eq!(result.success, result.direction.passes(result.score, result.threshold));
                assert_eq!((result.threshold, result.judge.as_str()), (0.5, judge));
            }
            (None, Some(_)) => assert_clear_judge_error(record),
            other => panic!("record {k} must have a result or an error, not {other:?}"),
        }
    }

    // The summary follows from the records.
    let summary = run.summary();
    assert_eq!(serde_json::to_value(&summary).expect("summary"), json["summary"]);
    let passed_cases = (0..goldens.len()).filter(|&c| run.case_records(c).all(JobRecord::passed)).count();
    assert_eq!(summary.cases_passed, passed_cases);
    assert_eq!(summary.errors, run.records.iter().filter(|r| r.error.is_some()).count());

    // The three reports and the printed table say the same thing.
    let text = std::fs::read_to_string(dir.join("report.txt")).expect("report.txt");
    assert_eq!(text, eval::render_terminal(&run));
    assert_eq!(finished.stdout, text, "the printed table is report.txt");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert_eq!(html, eval::render_html(&run));

    // The journal holds every job as it finished (and, after a resumed run, earlier ones too).
    let journal = eval::read_journal(&dir.join("journal.jsonl")).expect("journal");
    assert!(journal.len() >= run.records.len());
    for record in &run.records {
        assert!(journal.contains(record), "journal lacks {record:?}");
    }

    // The exit code follows --min-pass-rate.
    let expected = if summary.pass_rate >= min_pass_rate { 0 } else { 1 };
    assert_eq!(
        finished.code,
        Some(expected),
        "pass rate {} vs --min-pass-rate {min_pass_rate}; stderr:\n{}",
        summary.pass_rate,
        finished.stderr
    );
    if expected == 1 {
        assert!(finished.stderr.contains("is below --min-pass-rate"), "{}", finished.stderr);
    }
    run
}

/// The sample documents, one per format, as paths relative to the workspace root.
pub const SAMPLE_DOCS: [&str; 4] =
    ["datasets/docs/beekeeping.pdf", "datasets/docs/lighthouses.docx", "datasets/docs/sourdough.md", "datasets/docs/tides.txt"];

/// Checks goldens written by `xtask synth` from `docs` (in order, at most `per_doc` each, every
/// document yielding at least one): the fields, the provenance (source file, and each context
/// string being the recorded chunk of that document's text), similarities and scores in range.
/// Returns the goldens.
pub fn check_goldens(jsonl: &Path, docs: &[&str], per_doc: usize) -> Vec<synth_data::Golden> {
    let goldens = synth_data::read_jsonl(jsonl).expect("the output is golden JSONL");
    let mut seen: Vec<&str> = Vec::new();
    for golden in &goldens {
        let source = golden.source_file.as_str();
        assert!(docs.contains(&source), "unknown source file {source}");
        if seen.last() != Some(&source) {
            assert!(!seen.contains(&source), "goldens of {source} are not together");
            seen.push(source);
        }
        assert!(!golden.input.trim().is_empty() && !golden.original_input.trim().is_empty());
        assert!(golden.expected_output.as_deref().is_some_and(|e| !e.trim().is_empty()), "expected output");
        let doc = synth_data::load_document(&root().join(source)).expect("source loads");
        assert!(!golden.context.is_empty());
        assert_eq!(golden.context.len(), golden.context_chunks.len());
        assert_eq!(golden.context.len(), golden.context_similarities.len());
        for (text, chunk) in golden.context.iter().zip(&golden.context_chunks) {
            let span = doc.text.get(chunk.start..chunk.end).expect("chunk offsets inside the document");
            assert_eq!(span.trim(), text, "context is chunk {} of {source}", chunk.index);
        }
        assert!((golden.context_similarities[0] - 1.0).abs() < 1e-3, "the seed chunk comes first");
        assert!(golden.context_similarities.iter().all(|s| (-1.0..=1.0 + 1e-6).contains(s)));
        assert!((0.0..=1.0).contains(&golden.context_quality) && (0.0..=1.0).contains(&golden.synthetic_input_quality));
    }
    assert_eq!(seen, docs, "every document yields goldens, in order");
    for doc in docs {
        let n = goldens.iter().filter(|g| g.source_file == *doc).count();
        assert!((1..=per_doc).contains(&n), "{doc}: {n} goldens");
    }
    goldens
}

/// Files in `dir` whose name starts with a dot (atomic writes' temporary files).
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect())
        .unwrap_or_default()
}
