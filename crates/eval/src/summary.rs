//! Pass rates per metric and overall, and the CI verdict built on them.
//!
//! A metric's pass rate is passed / judged jobs, a failed job (error) counting as not passed.
//! A test case passes when every metric passed on it; the overall pass rate is passed cases /
//! cases (DeepEval's test pass rate). An empty run has a pass rate of 0.

use serde::{Deserialize, Serialize};

use crate::{Direction, EvalRun};

/// The figures of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// The metric's name.
    pub metric: String,
    /// Its threshold.
    pub threshold: f64,
    /// Which side passes.
    pub direction: Direction,
    /// Jobs with a passing result.
    pub passed: usize,
    /// Jobs with a failing result.
    pub failed: usize,
    /// Jobs that ended in an error.
    pub errored: usize,
    /// `passed / (passed + failed + errored)`, 0 when there were none.
    pub pass_rate: f64,
    /// Mean score over the jobs with a result, when any.
    pub mean_score: Option<f64>,
}

/// The figures of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Per metric, in the run's order.
    pub metrics: Vec<MetricSummary>,
    /// Number of test cases.
    pub cases: usize,
    /// Cases on which every metric passed.
    pub cases_passed: usize,
    /// `cases_passed / cases`, 0 for an empty run.
    pub pass_rate: f64,
    /// Jobs that ended in an error.
    pub errors: usize,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl EvalRun {
    /// The pass rates and mean scores of this run.
    pub fn summary(&self) -> Summary {
        let metrics = self
            .metrics
            .iter()
            .map(|m| {
                let records: Vec<_> = self.records.iter().filter(|r| r.metric == m.name).collect();
                let scores: Vec<f64> = records.iter().filter_map(|r| r.result.as_ref().map(|x| x.score)).collect();
                let passed = records.iter().filter(|r| r.passed()).count();
                let errored = records.iter().filter(|r| r.result.is_none()).count();
                let failed = records.len() - passed - errored;
                MetricSummary {
                    metric: m.name.clone(),
                    threshold: m.threshold,
                    direction: m.direction,
                    passed,
                    failed,
                    errored,
                    pass_rate: ratio(passed, records.len()),
                    mean_score: (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64),
                }
            })
            .collect();
        let cases_passed = (0..self.cases.len())
            .filter(|&i| {
                let mut records = self.case_records(i).peekable();
                records.peek().is_some() && records.all(|r| r.passed())
            })
            .count();
        Summary {
            metrics,
            cases: self.cases.len(),
            cases_passed,
            pass_rate: ratio(cases_passed, self.cases.len()),
            errors: self.records.iter().filter(|r| r.result.is_none()).count(),
        }
    }

    /// Whether the overall pass rate reaches `min_pass_rate` (in `[0, 1]`).
    pub fn passes(&self, min_pass_rate: f64) -> bool {
        self.summary().pass_rate >= min_pass_rate
    }

    /// A process exit code: 0 when [`EvalRun::passes`], 1 otherwise.
    pub fn exit_code(&self, min_pass_rate: f64) -> i32 {
        if self.passes(min_pass_rate) { 0 } else { 1 }
    }
}
