//! The [`Metric`] trait, its result, and the judge calls every metric makes.

use llm_api::{Completion, CompletionOptions, Llm, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Param, Result, TestCase};

/// Which side of the threshold passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Passes when `score >= threshold` (G-Eval, answer relevancy).
    HigherIsBetter,
    /// Passes when `score <= threshold` (bias, toxicity).
    LowerIsBetter,
}

impl Direction {
    /// Whether `score` passes `threshold`.
    pub fn passes(self, score: f64, threshold: f64) -> bool {
        match self {
            Direction::HigherIsBetter => score >= threshold,
            Direction::LowerIsBetter => score <= threshold,
        }
    }

    /// `>=` or `<=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Direction::HigherIsBetter => ">=",
            Direction::LowerIsBetter => "<=",
        }
    }

    /// The threshold that strict mode forces: 1 for higher-is-better, 0 for lower-is-better.
    pub fn strict_threshold(self) -> f64 {
        match self {
            Direction::HigherIsBetter => 1.0,
            Direction::LowerIsBetter => 0.0,
        }
    }
}

/// What one metric concluded about one test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// The metric's name.
    pub metric: String,
    /// The score in `[0, 1]`.
    pub score: f64,
    /// The threshold in force (after strict mode).
    pub threshold: f64,
    /// Which side of the threshold passes.
    pub direction: Direction,
    /// Whether the score passes the threshold.
    pub success: bool,
    /// Whether strict mode was on.
    pub strict_mode: bool,
    /// The judge's explanation (absent when reasons were turned off).
    pub reason: Option<String>,
    /// The judge model's name.
    pub judge: String,
    /// Intermediate findings (steps, opinions, verdicts, raw scores), one titled block each.
    pub steps: Vec<String>,
}

impl MetricResult {
    /// All steps as one text, blocks separated by blank lines (DeepEval's `verbose_logs`).
    pub fn verbose_logs(&self) -> String {
        self.steps.join("\n\n")
    }
}

/// An LLM-judged metric.
pub trait Metric: Send + Sync {
    /// The name used in reports.
    fn name(&self) -> String;

    /// The threshold in force (strict mode forces it, see [`Direction::strict_threshold`]).
    fn threshold(&self) -> f64;

    /// Which side of the threshold passes.
    fn direction(&self) -> Direction;

    /// Whether strict mode is on.
    fn strict_mode(&self) -> bool;

    /// The test-case fields this metric reads (checked before any judge call).
    fn required_params(&self) -> Vec<Param>;

    /// Judges `case` with `judge`.
    ///
    /// # Errors
    /// [`Error::MissingParam`] when the case lacks a required field; [`Error::Judge`] when the
    /// judge fails or answers something unusable.
    fn measure(&self, case: &TestCase, judge: &dyn Llm) -> Result<MetricResult>;
}

/// Fails with [`Error::MissingParam`] when `case` lacks one of `metric`'s required fields.
pub fn check_required(metric: &dyn Metric, case: &TestCase) -> Result<()> {
    for param in metric.required_params() {
        if param.text(case).is_none() {
            return Err(Error::MissingParam { metric: metric.name(), case: case.display_label(), param: param.field().to_string() });
        }
    }
    Ok(())
}

/// Judge options every metric starts from: greedy, JSON mode, room for a reasoned answer.
pub fn default_judge_options() -> CompletionOptions {
    CompletionOptions { max_tokens: 1024, temperature: 0.0, json_mode: true, ..CompletionOptions::default() }
}

/// The framing every judge prompt gets.
const JUDGE_SYSTEM: &str = "You are a meticulous evaluator of AI assistant answers. You reply with a single JSON object and nothing else.";

/// Asks `judge` one question and parses its JSON answer; errors carry the metric and step.
///
/// The answer's `schema` goes with the question (structured outputs, see [`crate::schemas`]);
/// a judge whose endpoint refuses the request (HTTP 400/422, as servers without
/// `json_schema` support answer) is asked again in plain JSON mode.
pub(crate) fn ask_json<T: DeserializeOwned>(
    judge: &dyn Llm,
    options: &CompletionOptions,
    metric: &str,
    step: &str,
    prompt: String,
    schema: Value,
) -> Result<(T, Completion)> {
    let wrap = |source| Error::Judge { metric: metric.to_string(), step: step.to_string(), source };
    let messages = [Message::system(JUDGE_SYSTEM), Message::user(prompt)];
    let structured = CompletionOptions { json_mode: true, json_schema: Some(schema), ..options.clone() };
    let completion = match judge.complete(&messages, &structured) {
        Err(llm_api::Error::Http { status: 400 | 422, url, body }) => {
            tracing::warn!(metric, step, %url, %body, "the judge refused a JSON schema; asking again in JSON mode");
            judge.complete(&messages, &CompletionOptions { json_mode: true, json_schema: None, ..options.clone() })
        }
        other => other,
    }
    .map_err(wrap)?;
    tracing::debug!(metric, step, answer = %completion.text, "judge answered");
    let value = llm_api::parse_json_answer::<T>(&completion.text).map_err(wrap)?;
    Ok((value, completion))
}

/// A malformed-answer error for a value that parsed but makes no sense.
pub(crate) fn nonsense(metric: &str, step: &str, detail: String, answer: &str) -> Error {
    Error::Judge {
        metric: metric.to_string(),
        step: step.to_string(),
        source: llm_api::Error::Malformed { what: step.to_string(), detail, answer: answer.to_string() },
    }
}

/// `- item` lines, or `(none)`.
pub(crate) fn bullet_list(items: &[String]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items.iter().map(|s| format!("- {s}")).collect::<Vec<_>>().join("\n")
}

/// A verdict on one opinion or statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    /// `yes`, `no` (or `idk` for relevancy), as the judge wrote it.
    pub verdict: String,
    /// Why, when given (an empty reason, as a schema-bound judge writes for verdicts that
    /// need none, counts as none).
    #[serde(default, deserialize_with = "non_blank")]
    pub reason: Option<String>,
}

fn non_blank<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|r| !r.trim().is_empty()))
}

impl Verdict {
    /// The verdict trimmed and lowercased.
    pub fn normalized(&self) -> String {
        self.verdict.trim().to_lowercase()
    }
}

/// `{"verdicts": [...]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Verdicts {
    pub verdicts: Vec<Verdict>,
}

/// `{"reason": "..."}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReasonAnswer {
    pub reason: String,
}

/// Verdicts rendered for the logs.
pub(crate) fn verdict_lines(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return "(none)".into();
    }
    verdicts
        .iter()
        .map(|v| match &v.reason {
            Some(r) => format!("- {}: {r}", v.normalized()),
            None => format!("- {}", v.normalized()),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_reasons_are_none() {
        let v: Verdicts = serde_json::from_str(
            r#"{"verdicts": [{"verdict": "yes", "reason": " "}, {"verdict": "no", "reason": "off topic"}, {"verdict": "idk"}]}"#,
        )
        .expect("parses");
        let reasons: Vec<Option<&str>> = v.verdicts.iter().map(|v| v.reason.as_deref()).collect();
        assert_eq!(reasons, [None, Some("off topic"), None]);
    }

    #[test]
    fn a_judge_refusing_the_schema_is_asked_again_in_json_mode() {
        use crate::testing::{ScriptedLlm, text};
        let judge = ScriptedLlm::from_fn(|_, o| match &o.json_schema {
            Some(_) => {
                Err(llm_api::Error::Http { url: "http://judge/v1/chat/completions".into(), status: 400, body: "response_format".into() })
            }
            None => Ok(text(r#"{"reason": "fine"}"#)),
        });
        let (r, _) = ask_json::<ReasonAnswer>(&judge, &default_judge_options(), "m", "reason", "why?".into(), crate::schemas::reason())
            .expect("answer");
        assert_eq!(r.reason, "fine");
        let calls = judge.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].1.json_schema, Some(crate::schemas::reason()));
        assert!(calls[1].1.json_schema.is_none() && calls[1].1.json_mode);

        // Other failures are not retried.
        let judge = ScriptedLlm::from_fn(|_, _| Err(llm_api::Error::Http { url: "u".into(), status: 500, body: String::new() }));
        assert!(
            ask_json::<ReasonAnswer>(&judge, &default_judge_options(), "m", "reason", "why?".into(), crate::schemas::reason()).is_err()
        );
        assert_eq!(judge.calls().len(), 1);
    }

    #[test]
    fn directions() {
        assert!(Direction::HigherIsBetter.passes(0.5, 0.5));
        assert!(!Direction::HigherIsBetter.passes(0.49, 0.5));
        assert!(Direction::LowerIsBetter.passes(0.5, 0.5));
        assert!(!Direction::LowerIsBetter.passes(0.51, 0.5));
        assert_eq!(Direction::HigherIsBetter.strict_threshold(), 1.0);
        assert_eq!(Direction::LowerIsBetter.strict_threshold(), 0.0);
    }
}
