//! Running every metric on every test case, concurrently, without losing finished work.
//!
//! Each (case, metric) pair is one job. Up to `max_concurrency` std threads take jobs from a
//! shared counter; a job that fails (judge error, malformed answer, even a panic) is recorded
//! with its error and the others go on. With a journal, each finished job is appended to a
//! JSONL file the moment it completes (one `write` per line, flushed), so a crash keeps
//! everything finished so far, and `resume` skips the jobs that the journal already holds.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use llm_api::Llm;
use serde::{Deserialize, Serialize};

use crate::{Direction, Error, Metric, MetricResult, Result, TestCase};

/// How to run an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Most jobs judged at the same time (at least 1).
    pub max_concurrency: usize,
    /// Append each finished job to this JSONL file as it completes.
    pub journal: Option<PathBuf>,
    /// Skip jobs whose successful result is already in the journal (same case index, input,
    /// actual output and metric).
    pub resume: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { max_concurrency: 4, journal: None, resume: false }
    }
}

/// A metric as the run saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// Its name.
    pub name: String,
    /// The threshold in force.
    pub threshold: f64,
    /// Which side passes.
    pub direction: Direction,
    /// Whether strict mode was on.
    pub strict_mode: bool,
}

/// One finished job: a result, or the error that stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The case's position in the run.
    pub case_index: usize,
    /// The case's input (identifies it when resuming).
    pub input: String,
    /// The case's actual output (identifies it when resuming).
    pub actual_output: String,
    /// The metric's name.
    pub metric: String,
    /// The result, when the job succeeded.
    pub result: Option<MetricResult>,
    /// The error, when it failed.
    pub error: Option<String>,
}

impl JobRecord {
    /// Whether the job produced a result that passed.
    pub fn passed(&self) -> bool {
        self.result.as_ref().is_some_and(|r| r.success)
    }
}

/// Everything an evaluation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    /// The judge's name.
    pub judge: String,
    /// The test cases, in order.
    pub cases: Vec<TestCase>,
    /// The metrics, in order.
    pub metrics: Vec<MetricInfo>,
    /// One record per (case, metric), ordered by case then metric.
    pub records: Vec<JobRecord>,
    /// Problems that did not stop the run (e.g. a journal write that failed).
    pub warnings: Vec<String>,
}

impl EvalRun {
    /// The records of case `index`, in metric order.
    pub fn case_records(&self, index: usize) -> impl Iterator<Item = &JobRecord> {
        self.records.iter().filter(move |r| r.case_index == index)
    }
}

/// Runs every metric on every case with `judge`; see the module docs.
///
/// # Errors
/// Only for setup: [`Error::Config`] for no metrics, [`Error::Io`]/[`Error::Dataset`] when
/// the journal cannot be opened or read for resuming. Job failures are recorded, not returned.
pub fn evaluate(cases: &[TestCase], metrics: &[Box<dyn Metric>], judge: &dyn Llm, options: &EvalOptions) -> Result<EvalRun> {
    evaluate_with_progress(cases, metrics, judge, options, &mut |_, _, _| {})
}

/// [`evaluate`], calling `on_record(record, finished, total)` as each job finishes (from the
/// calling thread).
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_with_progress(
    cases: &[TestCase],
    metrics: &[Box<dyn Metric>],
    judge: &dyn Llm,
    options: &EvalOptions,
    on_record: &mut dyn FnMut(&JobRecord, usize, usize),
) -> Result<EvalRun> {
    if metrics.is_empty() {
        return Err(Error::Config("no metrics to evaluate".into()));
    }
    let previous = match (&options.journal, options.resume) {
        (Some(path), true) if path.exists() => crate::journal::read(path)?,
        _ => Vec::new(),
    };
    let mut journal = match &options.journal {
        Some(path) => Some(crate::journal::open(path)?),
        None => None,
    };
    let mut slots: Vec<Option<JobRecord>> = Vec::with_capacity(cases.len() * metrics.len());
    let mut pending: Vec<(usize, usize, usize)> = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        for (mi, metric) in metrics.iter().enumerate() {
            let name = metric.name();
            let done = previous
                .iter()
                .rev()
                .find(|r| r.case_index == ci && r.metric == name && r.input == case.input && r.actual_output == case.actual_output);
            match done {
                Some(r) if r.result.is_some() => slots.push(Some(r.clone())),
                _ => {
                    pending.push((slots.len(), ci, mi));
                    slots.push(None);
                }
            }
        }
    }
    let total = slots.len();
    let mut finished = total - pending.len();
    let mut warnings = Vec::new();
    let workers = options.max_concurrency.max(1).min(pending.len());
    tracing::info!(cases = cases.len(), metrics = metrics.len(), jobs = pending.len(), workers, "evaluating");
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, JobRecord)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, pending) = (&next, &pending);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(slot, ci, mi)) = pending.get(i) else {
                        break;
                    };
                    let record = run_job(ci, &cases[ci], metrics[mi].as_ref(), judge);
                    if tx.send((slot, record)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (slot, record) in rx {
            if let Some(file) = journal.as_mut()
                && let Err(e) = crate::journal::append(file, &record)
            {
                let path = options.journal.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                tracing::error!(%path, %e, "journal write failed");
                warnings.push(format!("{path}: journal write failed: {e}"));
            }
            finished += 1;
            on_record(&record, finished, total);
            slots[slot] = Some(record);
        }
    });
    let records = slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.unwrap_or_else(|| {
                let (ci, mi) = (i / metrics.len(), i % metrics.len());
                lost(ci, &cases[ci], metrics[mi].as_ref())
            })
        })
        .collect();
    Ok(EvalRun {
        judge: judge.name(),
        cases: cases.to_vec(),
        metrics: metrics
            .iter()
            .map(|m| MetricInfo { name: m.name(), threshold: m.threshold(), direction: m.direction(), strict_mode: m.strict_mode() })
            .collect(),
        records,
        warnings,
    })
}

/// Measures one case with one metric, turning errors and panics into a failed record.
fn run_job(case_index: usize, case: &TestCase, metric: &dyn Metric, judge: &dyn Llm) -> JobRecord {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| metric.measure(case, judge)));
    let (result, error) = match outcome {
        Ok(Ok(result)) => (Some(result), None),
        Ok(Err(e)) => {
            tracing::warn!(metric = %metric.name(), case = case_index + 1, error = %e, "job failed");
            (None, Some(e.to_string()))
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (None, Some(format!("{}: panicked: {message}", metric.name())))
        }
    };
    JobRecord { case_index, input: case.input.clone(), actual_output: case.actual_output.clone(), metric: metric.name(), result, error }
}

/// A record for a job whose worker vanished (cannot happen unless a thread was killed).
fn lost(case_index: usize, case: &TestCase, metric: &dyn Metric) -> JobRecord {
    JobRecord {
        case_index,
        input: case.input.clone(),
        actual_output: case.actual_output.clone(),
        metric: metric.name(),
        result: None,
        error: Some("the job did not report back".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::OpinionMetric;
    use crate::testing::ScriptedLlm;
    use crate::{Param, read_journal};
    use std::sync::Arc;

    /// A metric that tracks how many measures run at once and fails or panics on request.
    #[derive(Default)]
    struct Probe {
        active: AtomicUsize,
        peak: AtomicUsize,
        fail_on: Option<String>,
        panic_on: Option<String>,
    }

    /// A shared handle, so the test can read the probe after the run.
    struct Shared(Arc<Probe>);

    impl Metric for Shared {
        fn name(&self) -> String {
            "Probe".into()
        }
        fn threshold(&self) -> f64 {
            0.5
        }
        fn direction(&self) -> Direction {
            Direction::HigherIsBetter
        }
        fn strict_mode(&self) -> bool {
            false
        }
        fn required_params(&self) -> Vec<Param> {
            vec![Param::Input]
        }
        fn measure(&self, case: &TestCase, judge: &dyn Llm) -> Result<MetricResult> {
            let probe = &self.0;
            let now = probe.active.fetch_add(1, Ordering::SeqCst) + 1;
            probe.peak.fetch_max(now, Ordering::SeqCst);
            // Give other workers a chance to overlap.
            std::thread::sleep(std::time::Duration::from_millis(15));
            probe.active.fetch_sub(1, Ordering::SeqCst);
            if probe.panic_on.as_deref() == Some(case.input.as_str()) {
                panic!("probe exploded");
            }
            if probe.fail_on.as_deref() == Some(case.input.as_str()) {
                return Err(Error::Config("probe refused".into()));
            }
            Ok(MetricResult {
                metric: self.name(),
                score: case.input.len() as f64 / 10.0,
                threshold: 0.5,
                direction: Direction::HigherIsBetter,
                success: true,
                strict_mode: false,
                reason: None,
                judge: judge.name(),
                steps: vec![],
            })
        }
    }

    fn cases(n: usize) -> Vec<TestCase> {
        (0..n).map(|i| TestCase::new("q".repeat(i + 1), "a")).collect()
    }

    fn no_judge() -> ScriptedLlm {
        ScriptedLlm::texts(Vec::<String>::new())
    }

    #[test]
    fn concurrency_is_bounded_and_order_is_kept() {
        let probe = Arc::new(Probe::default());
        let metrics: Vec<Box<dyn Metric>> = vec![Box::new(Shared(probe.clone()))];
        let options = EvalOptions { max_concurrency: 2, ..EvalOptions::default() };
        let run = evaluate(&cases(6), &metrics, &no_judge(), &options).expect("run");
        let peak = probe.peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "peak concurrency {peak} is outside 1..=2");
        let scores: Vec<f64> = run.records.iter().map(|r| r.result.as_ref().expect("result").score).collect();
        assert_eq!(scores, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    }

    #[test]
    fn failures_and_panics_are_recorded_next_to_the_results() {
        let probe = Probe { fail_on: Some("qq".into()), panic_on: Some("qqqq".into()), ..Probe::default() };
        let metrics: Vec<Box<dyn Metric>> = vec![Box::new(Shared(Arc::new(probe)))];
        let run = evaluate(&cases(5), &metrics, &no_judge(), &EvalOptions::default()).expect("run");
        let errors: Vec<Option<&str>> = run.records.iter().map(|r| r.error.as_deref()).collect();
        assert_eq!(errors, vec![None, Some("configuration: probe refused"), None, Some("Probe: panicked: probe exploded"), None]);
        assert_eq!(run.records.iter().filter(|r| r.result.is_some()).count(), 3);
    }

    #[test]
    fn a_malformed_judge_answer_fails_only_its_job() {
        // The judge answers garbage only for the second case's opinions.
        let judge = ScriptedLlm::from_fn(|messages, _| {
            let prompt = &messages[1].content;
            let answer = if prompt.contains("List the OPINIONS") {
                if prompt.contains("BROKEN") { "no idea" } else { r#"{"opinions": []}"# }
            } else {
                r#"{"reason": "Nothing to flag."}"#
            };
            Ok(crate::testing::text(answer))
        });
        let cases = vec![TestCase::new("q1", "fine"), TestCase::new("q2", "BROKEN"), TestCase::new("q3", "fine")];
        let metrics: Vec<Box<dyn Metric>> = vec![Box::new(OpinionMetric::bias())];
        let run = evaluate(&cases, &metrics, &judge, &EvalOptions { max_concurrency: 3, ..Default::default() }).expect("run");
        assert!(run.records[0].passed() && run.records[2].passed());
        let error = run.records[1].error.as_deref().expect("error kept");
        assert!(error.contains("Bias: opinions: malformed answer") && error.contains("no idea"), "{error}");
    }

    #[test]
    fn the_journal_keeps_every_job_and_resume_reruns_only_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("journal.jsonl");
        let failing = Probe { fail_on: Some("qq".into()), ..Probe::default() };
        let metrics: Vec<Box<dyn Metric>> = vec![Box::new(Shared(Arc::new(failing)))];
        let options = EvalOptions { max_concurrency: 2, journal: Some(journal.clone()), resume: true };
        let mut seen = Vec::new();
        let first = evaluate_with_progress(&cases(3), &metrics, &no_judge(), &options, &mut |r, done, total| {
            seen.push((r.case_index, done, total));
        })
        .expect("first run");
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.iter().map(|(_, d, t)| (*d, *t)).collect::<Vec<_>>(), vec![(1, 3), (2, 3), (3, 3)]);
        assert_eq!(read_journal(&journal).expect("journal").len(), 3);
        assert!(first.records[1].error.is_some());

        // Second run: the failure is fixed; only that job runs again.
        let healthy = Arc::new(Probe::default());
        let metrics: Vec<Box<dyn Metric>> = vec![Box::new(Shared(healthy.clone()))];
        let mut reran = Vec::new();
        let second = evaluate_with_progress(&cases(3), &metrics, &no_judge(), &options, &mut |r, _, _| {
            reran.push(r.case_index);
        })
        .expect("second run");
        assert_eq!(reran, vec![1]);
        assert!(second.records.iter().all(|r| r.result.is_some()));
        assert_eq!(second.records[0], first.records[0], "kept from the journal");
        assert_eq!(read_journal(&journal).expect("journal").len(), 4);
    }

    #[test]
    fn no_metrics_is_a_configuration_error() {
        let err = evaluate(&cases(1), &[], &no_judge(), &EvalOptions::default()).expect_err("no metrics");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
}
