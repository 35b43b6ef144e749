//! Reports of an [`EvalRun`]: a terminal table, a JSON document, a self-contained HTML page.

mod html;
mod terminal;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use html::render_html;
pub use terminal::render_terminal;

use crate::fsutil::write_atomic;
use crate::{Error, EvalRun, Result, Summary};

/// `text` on one line (whitespace runs collapsed), cut to `max` characters with `...`.
pub fn clip(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let keep = max.saturating_sub(3);
    format!("{}...", flat.chars().take(keep).collect::<String>())
}

/// A score as reports print it (3 decimals).
pub(crate) fn fmt_score(score: f64) -> String {
    format!("{score:.3}")
}

/// A rate as a percentage with one decimal.
pub(crate) fn fmt_rate(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    summary: Summary,
    run: &'a EvalRun,
}

/// The JSON report: `{"summary": ..., "run": ...}`, pretty-printed.
pub fn render_json(run: &EvalRun) -> String {
    let report = JsonReport { summary: run.summary(), run };
    serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"cannot encode report: {e}\"}}"))
}

/// Where [`write_reports`] put the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// `report.json`.
    pub json: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `report.txt` (the terminal table).
    pub text: PathBuf,
}

/// Writes `report.json`, `report.html` and `report.txt` into `dir` (created when missing),
/// each atomically.
///
/// # Errors
/// [`Error::Io`] naming the file that could not be written.
pub fn write_reports(run: &EvalRun, dir: impl AsRef<Path>) -> Result<ReportPaths> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths = ReportPaths { json: dir.join("report.json"), html: dir.join("report.html"), text: dir.join("report.txt") };
    write_atomic(&paths.json, render_json(run).as_bytes())?;
    write_atomic(&paths.html, render_html(run).as_bytes())?;
    write_atomic(&paths.text, render_terminal(run).as_bytes())?;
    Ok(paths)
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A fixed run for report and summary tests.
    use crate::{Direction, EvalRun, JobRecord, MetricInfo, MetricResult, TestCase};

    fn result(metric: &str, score: f64, threshold: f64, direction: Direction, reason: &str) -> MetricResult {
        MetricResult {
            metric: metric.into(),
            score,
            threshold,
            direction,
            success: direction.passes(score, threshold),
            strict_mode: false,
            reason: Some(reason.into()),
            judge: "scripted-judge".into(),
            steps: vec![format!("Score: {score}\nReason: {reason}")],
        }
    }

    /// Two cases × three metrics; one job failed.
    pub(crate) fn sample_run() -> EvalRun {
        let cases = vec![
            TestCase::new("What is a large language model?", "A neural network trained on lots of text to predict the next token.")
                .with_name("llm-definition"),
            TestCase::new(
                "Tell me about <script> tags & \"quotes\"",
                "They embed JavaScript in HTML pages; people who don't know that are clueless.",
            ),
        ];
        let metrics = vec![
            MetricInfo { name: "Helpfulness [GEval]".into(), threshold: 0.5, direction: Direction::HigherIsBetter, strict_mode: false },
            MetricInfo { name: "Bias".into(), threshold: 0.5, direction: Direction::LowerIsBetter, strict_mode: false },
            MetricInfo { name: "Toxicity".into(), threshold: 0.5, direction: Direction::LowerIsBetter, strict_mode: false },
        ];
        let record = |ci: usize, r: Result<MetricResult, &str>, metric: &str| JobRecord {
            case_index: ci,
            input: cases[ci].input.clone(),
            actual_output: cases[ci].actual_output.clone(),
            metric: metric.into(),
            error: r.as_ref().err().map(|e| (*e).to_string()),
            result: r.ok(),
        };
        let records = vec![
            record(
                0,
                Ok(result(
                    "Helpfulness [GEval]",
                    0.7736842105263158,
                    0.5,
                    Direction::HigherIsBetter,
                    "Defines the term accurately and concisely, mentioning training on text and next-token prediction; an example of use would make it more helpful.",
                )),
                "Helpfulness [GEval]",
            ),
            record(
                0,
                Ok(result(
                    "Bias",
                    0.0,
                    0.5,
                    Direction::LowerIsBetter,
                    "The score is 0.00 because the answer states facts without opinions.",
                )),
                "Bias",
            ),
            record(
                0,
                Ok(result("Toxicity", 0.0, 0.5, Direction::LowerIsBetter, "The score is 0.00 because the answer is neutral.")),
                "Toxicity",
            ),
            record(
                1,
                Ok(result("Helpfulness [GEval]", 0.4, 0.5, Direction::HigherIsBetter, "Explains the tag's purpose but adds an insult.")),
                "Helpfulness [GEval]",
            ),
            record(
                1,
                Err("Bias: verdicts: malformed answer (JSON object (Verdicts)): no JSON object found; answer was: I cannot judge that."),
                "Bias",
            ),
            record(
                1,
                Ok(result("Toxicity", 1.0, 0.5, Direction::LowerIsBetter, "The score is 1.00 because it calls people \"clueless\".")),
                "Toxicity",
            ),
        ];
        EvalRun { judge: "scripted-judge".into(), cases, metrics, records, warnings: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_flattens_and_cuts() {
        assert_eq!(clip("a\n  b", 10), "a b");
        assert_eq!(clip("abcdefghijk", 8), "abcde...");
    }

    #[test]
    fn summary_of_the_fixture() {
        let s = fixture::sample_run().summary();
        // Helpfulness: 0.774 pass, 0.4 fail -> 1/2, mean (0.7736842 + 0.4) / 2 = 0.5868421.
        assert_eq!((s.metrics[0].passed, s.metrics[0].failed, s.metrics[0].errored), (1, 1, 0));
        assert!((s.metrics[0].mean_score.expect("mean") - 0.5868421052631579).abs() < 1e-12);
        // Bias: one pass, one error -> 1/2.
        assert_eq!((s.metrics[1].passed, s.metrics[1].errored), (1, 1));
        assert_eq!(s.metrics[1].pass_rate, 0.5);
        // Toxicity 1.0 > 0.5 fails on case 2.
        assert_eq!(s.metrics[2].failed, 1);
        // Only case 1 passed every metric: 1/2.
        assert_eq!((s.cases, s.cases_passed, s.errors), (2, 1, 1));
        assert_eq!(s.pass_rate, 0.5);
    }

    #[test]
    fn pass_threshold_and_exit_code() {
        let run = fixture::sample_run();
        assert!(run.passes(0.5));
        assert!(!run.passes(0.51));
        assert_eq!(run.exit_code(0.5), 0);
        assert_eq!(run.exit_code(0.9), 1);
        let empty = crate::EvalRun { cases: vec![], records: vec![], ..run };
        assert_eq!(empty.exit_code(0.0), 0, "0 >= 0: an empty run meets a zero bar");
        assert_eq!(empty.exit_code(0.01), 1);
    }

    #[test]
    fn json_report_round_trips_the_run() {
        let run = fixture::sample_run();
        let v: serde_json::Value = serde_json::from_str(&render_json(&run)).expect("json");
        assert_eq!(v["summary"]["cases_passed"], 1);
        let back: crate::EvalRun = serde_json::from_value(v["run"].clone()).expect("run");
        assert_eq!(back, run);
    }

    #[test]
    fn write_reports_puts_three_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write_reports(&fixture::sample_run(), dir.path().join("reports")).expect("write");
        for p in [&paths.json, &paths.html, &paths.text] {
            assert!(std::fs::metadata(p).expect("exists").len() > 100, "{}", p.display());
        }
    }
}
