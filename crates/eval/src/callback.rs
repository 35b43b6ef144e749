//! Judging a model on goldens: the seam a trainer calls every N steps, and the first half of
//! `xtask eval` (answer the goldens, then judge the answers).

use std::collections::BTreeMap;
use std::sync::Arc;

use llm_api::{CompletionOptions, Llm, Message};
use serde::{Deserialize, Serialize};

use crate::{Error, EvalOptions, EvalRun, Golden, Metric, Result, TestCase, evaluate};

/// Answers each golden with `model` (its input as the user turn, after an optional system
/// prompt). A golden that already has an `actual_output` is answered again.
///
/// # Errors
/// [`Error::Model`] naming the first golden the model failed on.
pub fn generate_answers(
    goldens: &[Golden],
    model: &dyn Llm,
    options: &CompletionOptions,
    system_prompt: Option<&str>,
) -> Result<Vec<TestCase>> {
    goldens
        .iter()
        .enumerate()
        .map(|(i, golden)| {
            let mut messages = Vec::with_capacity(2);
            if let Some(system) = system_prompt {
                messages.push(Message::system(system));
            }
            messages.push(Message::user(golden.input.clone()));
            let completion = model
                .complete(&messages, options)
                .map_err(|source| Error::Model { case: golden.name.clone().unwrap_or_else(|| format!("golden {}", i + 1)), source })?;
            Ok(golden.to_test_case(completion.text.trim().to_string()))
        })
        .collect()
}

/// What one judging round concluded, keyed by metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeScores {
    /// Mean score per metric (metrics whose every job failed are absent).
    pub mean_scores: BTreeMap<String, f64>,
    /// Pass rate per metric.
    pub pass_rates: BTreeMap<String, f64>,
    /// Cases passing every metric / cases.
    pub overall_pass_rate: f64,
    /// Jobs that failed with an error.
    pub errors: usize,
    /// The full run, for reports.
    pub run: EvalRun,
}

/// Judges a model under training on a fixed set of goldens.
///
/// ```
/// use std::sync::Arc;
/// use eval::{GoldenJudge, Golden, testing::ScriptedLlm, metrics::OpinionMetric};
/// let judge = Arc::new(ScriptedLlm::texts([r#"{"opinions": []}"#, r#"{"reason": "No opinions."}"#]));
/// let seam = GoldenJudge::new(vec![Golden::new("Hi?")], vec![Box::new(OpinionMetric::bias())], judge);
/// let model = ScriptedLlm::texts(["Hello."]);
/// let scores = seam.judge(&model).unwrap();
/// assert_eq!(scores.mean_scores["Bias"], 0.0);
/// ```
pub struct GoldenJudge {
    goldens: Vec<Golden>,
    metrics: Vec<Box<dyn Metric>>,
    judge: Arc<dyn Llm>,
    /// Sampling for the model's answers (default: greedy, 256 tokens).
    pub generation: CompletionOptions,
    /// A system prompt for the model's answers.
    pub system_prompt: Option<String>,
    /// How to run the metrics (default: 4 at a time, no journal).
    pub options: EvalOptions,
}

impl GoldenJudge {
    /// A seam over `goldens`, scored by `metrics` with `judge`.
    pub fn new(goldens: Vec<Golden>, metrics: Vec<Box<dyn Metric>>, judge: Arc<dyn Llm>) -> Self {
        Self { goldens, metrics, judge, generation: CompletionOptions::default(), system_prompt: None, options: EvalOptions::default() }
    }

    /// Answers every golden with `model`, judges the answers, and sums up.
    ///
    /// # Errors
    /// [`Error::Model`] when `model` fails to answer; [`Error::Config`] when there are no
    /// metrics. Judge failures are counted in [`JudgeScores::errors`], not returned.
    pub fn judge(&self, model: &dyn Llm) -> Result<JudgeScores> {
        let cases = generate_answers(&self.goldens, model, &self.generation, self.system_prompt.as_deref())?;
        let run = evaluate(&cases, &self.metrics, self.judge.as_ref(), &self.options)?;
        let summary = run.summary();
        let mean_scores = summary.metrics.iter().filter_map(|m| m.mean_score.map(|s| (m.metric.clone(), s))).collect();
        let pass_rates = summary.metrics.iter().map(|m| (m.metric.clone(), m.pass_rate)).collect();
        tracing::info!(pass_rate = summary.pass_rate, errors = summary.errors, "judged goldens");
        Ok(JudgeScores { mean_scores, pass_rates, overall_pass_rate: summary.pass_rate, errors: summary.errors, run })
    }
}
