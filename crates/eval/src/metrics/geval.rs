//! G-Eval: a judge follows evaluation steps (given, or generated once from criteria) and
//! scores a test case 0–10 with a reason; the score is probability-weighted when the judge
//! returns logprobs (see [`super::geval_score`]) and divided by 10.
//!
//! Strict mode asks the judge for a binary 0/1 verdict instead, ignores logprobs, and forces
//! the threshold to 1.

use std::sync::Mutex;

use llm_api::{CompletionOptions, Llm};
use serde::Deserialize;

use super::geval_score::weighted_score;
use crate::metric::{ask_json, bullet_list, check_required, default_judge_options, nonsense};
use crate::schemas;
use crate::test_case::join_titles;
use crate::{Direction, Error, Metric, MetricResult, Param, Result, TestCase};

/// The judge's score range.
const SCORE_MAX: f64 = 10.0;

/// A G-Eval metric.
#[derive(Debug)]
pub struct GEval {
    name: String,
    criteria: Option<String>,
    given_steps: Option<Vec<String>>,
    params: Vec<Param>,
    threshold: f64,
    strict_mode: bool,
    top_logprobs: usize,
    judge_options: CompletionOptions,
    generated_steps: Mutex<Option<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
struct Steps {
    steps: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ScoreReason {
    score: f64,
    reason: String,
}

impl GEval {
    /// A G-Eval metric judged by `criteria` over `params`; steps are generated from the
    /// criteria on first use and reused for every case. Threshold 0.5, 20 top logprobs.
    ///
    /// # Errors
    /// [`Error::Config`] when the name or criteria is blank or `params` is empty.
    pub fn new(name: impl Into<String>, criteria: impl Into<String>, params: Vec<Param>) -> Result<Self> {
        let criteria = criteria.into();
        if criteria.trim().is_empty() {
            return Err(Error::Config("G-Eval `criteria` must not be empty".into()));
        }
        Self::build(name.into(), Some(criteria), None, params)
    }

    /// A G-Eval metric that follows the given evaluation steps.
    ///
    /// # Errors
    /// [`Error::Config`] when the name is blank, `steps` is empty, or `params` is empty.
    pub fn with_steps(name: impl Into<String>, steps: Vec<String>, params: Vec<Param>) -> Result<Self> {
        if steps.is_empty() || steps.iter().any(|s| s.trim().is_empty()) {
            return Err(Error::Config("G-Eval `evaluation_steps` must be a non-empty list of non-empty steps".into()));
        }
        Self::build(name.into(), None, Some(steps), params)
    }

    fn build(name: String, criteria: Option<String>, steps: Option<Vec<String>>, params: Vec<Param>) -> Result<Self> {
        if name.trim().is_empty() {
            return Err(Error::Config("G-Eval `name` must not be empty".into()));
        }
        if params.is_empty() {
            return Err(Error::Config(format!("G-Eval `{name}`: `evaluation_params` must not be empty")));
        }
        Ok(Self {
            name,
            criteria,
            given_steps: steps,
            params,
            threshold: 0.5,
            strict_mode: false,
            top_logprobs: 20,
            judge_options: default_judge_options(),
            generated_steps: Mutex::new(None),
        })
    }

    /// Sets the pass threshold (score ≥ threshold passes).
    pub fn with_threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Turns strict (binary) mode on or off.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict_mode = strict;
        self
    }

    /// How many alternatives per token to ask the judge for (0..=20; 0 disables weighting).
    pub fn top_logprobs(mut self, n: usize) -> Self {
        self.top_logprobs = n.min(20);
        self
    }

    /// Sets the judge's sampling options (JSON mode is always on).
    pub fn judge_options(mut self, options: CompletionOptions) -> Self {
        self.judge_options = options;
        self
    }

    /// The evaluation steps: the given ones, or those generated (once) from the criteria.
    fn steps(&self, judge: &dyn Llm) -> Result<Vec<String>> {
        if let Some(steps) = &self.given_steps {
            return Ok(steps.clone());
        }
        let mut cached = self.generated_steps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(steps) = cached.as_ref() {
            return Ok(steps.clone());
        }
        let criteria = self.criteria.as_deref().unwrap_or_default();
        let prompt = steps_prompt(criteria, &join_titles(&self.params));
        let (answer, completion) =
            ask_json::<Steps>(judge, &self.json_options(None), &self.name(), "evaluation steps", prompt, schemas::string_list("steps"))?;
        let steps: Vec<String> = answer.steps.into_iter().filter(|s| !s.trim().is_empty()).collect();
        if steps.is_empty() {
            return Err(nonsense(&self.name(), "evaluation steps", "the judge gave no steps".into(), &completion.text));
        }
        *cached = Some(steps.clone());
        Ok(steps)
    }

    fn json_options(&self, top_logprobs: Option<usize>) -> CompletionOptions {
        CompletionOptions { json_mode: true, top_logprobs, ..self.judge_options.clone() }
    }
}

fn steps_prompt(criteria: &str, params: &str) -> String {
    format!(
        "Write 3 or 4 short, concrete evaluation steps that a grader can follow to judge the {params} \
         against the criteria below. The steps must say how the {params} relate to each other.\n\n\
         Criteria:\n{criteria}\n\n\
         Answer with a JSON object of this shape and nothing else:\n\
         {{\"steps\": [\"first step\", \"second step\", \"third step\"]}}"
    )
}

fn numbered(steps: &[String]) -> String {
    steps.iter().enumerate().map(|(i, s)| format!("{}. {s}", i + 1)).collect::<Vec<_>>().join("\n")
}

fn case_text(params: &[Param], case: &TestCase) -> String {
    params.iter().map(|p| format!("{}:\n{}", p.title(), p.text(case).unwrap_or_default())).collect::<Vec<_>>().join("\n\n")
}

fn score_prompt(steps: &[String], case: &str, params: &str, strict: bool) -> String {
    let scale = if strict {
        "`score` must be 1 if the evaluation steps are fully satisfied and 0 otherwise (nothing in between)"
    } else {
        "`score` is an integer from 0 to 10: 10 when the evaluation steps are fully satisfied, 0 when they are not satisfied at all"
    };
    format!(
        "Grade the test case below by following the evaluation steps.\n\n\
         Evaluation steps:\n{}\n\n\
         Test case:\n{case}\n\n\
         Answer with a JSON object with two keys, `score` first: {scale}; `reason` explains the \
         score in one or two sentences, citing specifics of the {params}, without restating the number.\n\
         Example: {{\"score\": 4, \"reason\": \"The answer addresses the question but omits the requested example.\"}}",
        numbered(steps)
    )
}

impl Metric for GEval {
    fn name(&self) -> String {
        format!("{} [GEval]", self.name)
    }

    fn threshold(&self) -> f64 {
        if self.strict_mode { self.direction().strict_threshold() } else { self.threshold }
    }

    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }

    fn strict_mode(&self) -> bool {
        self.strict_mode
    }

    fn required_params(&self) -> Vec<Param> {
        self.params.clone()
    }

    fn measure(&self, case: &TestCase, judge: &dyn Llm) -> Result<MetricResult> {
        let name = self.name();
        check_required(self, case)?;
        let steps = self.steps(judge)?;
        let params = join_titles(&self.params);
        let prompt = score_prompt(&steps, &case_text(&self.params, case), &params, self.strict_mode);
        let logprobs = (!self.strict_mode && self.top_logprobs > 0).then_some(self.top_logprobs);
        let (answer, completion) =
            ask_json::<ScoreReason>(judge, &self.json_options(logprobs), &name, "score", prompt, schemas::score_reason())?;
        let max = if self.strict_mode { 1.0 } else { SCORE_MAX };
        if !(0.0..=max).contains(&answer.score) {
            return Err(nonsense(&name, "score", format!("score {} is outside 0..={max}", answer.score), &completion.text));
        }
        let mut log = vec![
            format!("Criteria:\n{}", self.criteria.as_deref().unwrap_or("(given steps)")),
            format!("Evaluation Steps:\n{}", bullet_list(&steps)),
            format!("Judge score: {}", answer.score),
        ];
        let score = if self.strict_mode {
            // DeepEval takes int(score): anything below 1 is 0.
            if answer.score >= 1.0 { 1.0 } else { 0.0 }
        } else {
            let weighted = completion.logprobs.as_deref().and_then(|l| weighted_score(answer.score, l));
            match weighted {
                Some(w) => {
                    let kept = w.kept.iter().map(|(v, p)| format!("{v}: {p:.4}")).collect::<Vec<_>>().join(", ");
                    log.push(format!("Weighted score: {:.4} (token {}; kept {kept})", w.score, w.token_index));
                    w.score / SCORE_MAX
                }
                None => answer.score / SCORE_MAX,
            }
        };
        let threshold = self.threshold();
        log.push(format!("Score: {score}\nReason: {}", answer.reason));
        Ok(MetricResult {
            metric: name,
            score,
            threshold,
            direction: self.direction(),
            success: self.direction().passes(score, threshold),
            strict_mode: self.strict_mode,
            reason: Some(answer.reason),
            judge: judge.name(),
            steps: log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ScriptedLlm, text, with_logprobs};

    const STEPS: &str = r#"{"steps": ["Check the answer addresses the question.", "Check it is correct."]}"#;

    fn helpfulness() -> GEval {
        GEval::new("Helpfulness", "Is the answer helpful?", vec![Param::Input, Param::ActualOutput]).expect("valid")
    }

    fn case() -> TestCase {
        TestCase::new("What is Rust?", "A systems programming language.")
    }

    /// `{"score": 8, "reason": "Clear and correct."}` with alternatives at the score token.
    fn scored_answer() -> llm_api::Completion {
        with_logprobs(&[
            ("{\"score\": ", &[]),
            ("8", &[("8", 0.60), ("7", 0.30), (" 8", 0.02), ("9", 0.05), ("eight", 0.015), ("6", 0.005)]),
            (", \"reason\": \"Clear and correct.\"}", &[]),
        ])
    }

    #[test]
    fn generated_steps_and_logprob_weighted_score() {
        let judge = ScriptedLlm::new(vec![Ok(text(STEPS)), Ok(scored_answer())]);
        let result = helpfulness().measure(&case(), &judge).expect("measured");
        // Kept 8 (0.60), 7 (0.30), 9 (0.05); dropped " 8" and "eight" (not integers) and "6"
        // (0.5% < 1%). (8·0.60 + 7·0.30 + 9·0.05) / 0.95 = 7.35 / 0.95 = 7.7368421; / 10.
        assert!((result.score - 0.77368421).abs() < 1e-6, "{}", result.score);
        assert!(result.success);
        assert_eq!(result.threshold, 0.5);
        assert_eq!(result.reason.as_deref(), Some("Clear and correct."));
        assert_eq!(result.metric, "Helpfulness [GEval]");

        let calls = judge.calls();
        assert_eq!(calls.len(), 2);
        assert!(calls[0].1.json_mode && calls[0].1.top_logprobs.is_none());
        assert!(calls[0].0[1].content.contains("Input and Actual Output"));
        let (messages, options) = &calls[1];
        assert_eq!(options.top_logprobs, Some(20));
        assert!(options.json_mode);
        let prompt = &messages[1].content;
        assert!(prompt.contains("1. Check the answer addresses the question.\n2. Check it is correct."), "{prompt}");
        assert!(prompt.contains("Input:\nWhat is Rust?") && prompt.contains("Actual Output:\nA systems programming language."));
        assert!(result.verbose_logs().contains("Weighted score: 7.7368"), "{}", result.verbose_logs());
    }

    #[test]
    fn without_logprobs_the_raw_score_is_used() {
        let judge = ScriptedLlm::texts([STEPS, r#"{"score": 3, "reason": "Vague."}"#]);
        let result = helpfulness().measure(&case(), &judge).expect("measured");
        // 3 / 10 = 0.3 < 0.5.
        assert_eq!(result.score, 0.3);
        assert!(!result.success);
    }

    #[test]
    fn steps_are_generated_once_and_given_steps_never() {
        let judge = ScriptedLlm::texts([STEPS, r#"{"score": 10, "reason": "a"}"#, r#"{"score": 5, "reason": "b"}"#]);
        let metric = helpfulness();
        assert_eq!(metric.measure(&case(), &judge).expect("first").score, 1.0);
        assert_eq!(metric.measure(&case(), &judge).expect("second").score, 0.5);
        assert_eq!(judge.calls().len(), 3, "one steps call, two score calls");

        let given = GEval::with_steps("Brevity", vec!["Is it short?".into()], vec![Param::ActualOutput]).expect("valid");
        let judge = ScriptedLlm::texts([r#"{"score": 9, "reason": "Short."}"#]);
        assert_eq!(given.measure(&case(), &judge).expect("given").score, 0.9);
        assert_eq!(judge.calls().len(), 1);
        assert!(!judge.prompts()[0].contains("What is Rust?"), "only the selected params are shown");
    }

    #[test]
    fn strict_mode_is_binary_with_threshold_one() {
        let metric = helpfulness().with_threshold(0.3).strict(true);
        assert_eq!(metric.threshold(), 1.0);
        let judge = ScriptedLlm::new(vec![Ok(text(STEPS)), Ok(text(r#"{"score": 1, "reason": "Meets all steps."}"#))]);
        let result = metric.measure(&case(), &judge).expect("measured");
        assert_eq!((result.score, result.success, result.strict_mode), (1.0, true, true));
        assert_eq!(judge.calls()[1].1.top_logprobs, None, "strict mode ignores logprobs");
        assert!(judge.prompts()[1].contains("0 otherwise"));
        let judge = ScriptedLlm::texts([r#"{"score": 0, "reason": "Misses a step."}"#]);
        let result = metric.measure(&case(), &judge).expect("measured");
        assert_eq!((result.score, result.success), (0.0, false));
    }

    #[test]
    fn bad_judge_answers_are_errors_with_the_answer() {
        let judge = ScriptedLlm::texts([STEPS, "The answer deserves an eight."]);
        match helpfulness().measure(&case(), &judge) {
            Err(Error::Judge { step, source: llm_api::Error::Malformed { answer, .. }, .. }) => {
                assert_eq!(step, "score");
                assert_eq!(answer, "The answer deserves an eight.");
            }
            other => panic!("expected a malformed-score error, got {other:?}"),
        }
        let judge = ScriptedLlm::texts([STEPS, r#"{"score": 12, "reason": "Great."}"#]);
        let err = helpfulness().measure(&case(), &judge).expect_err("out of range").to_string();
        assert!(err.contains("score 12 is outside 0..=10"), "{err}");
        let judge = ScriptedLlm::texts([r#"{"steps": []}"#]);
        let err = helpfulness().measure(&case(), &judge).expect_err("no steps").to_string();
        assert!(err.contains("no steps"), "{err}");
    }

    #[test]
    fn missing_params_and_bad_configs_are_refused() {
        let metric =
            GEval::new("Correctness", "Matches the expected output?", vec![Param::ActualOutput, Param::ExpectedOutput]).expect("valid");
        let judge = ScriptedLlm::texts(Vec::<String>::new());
        match metric.measure(&case().with_name("rust"), &judge) {
            Err(Error::MissingParam { case, param, .. }) => {
                assert_eq!((case.as_str(), param.as_str()), ("rust", "expected_output"))
            }
            other => panic!("expected MissingParam, got {other:?}"),
        }
        assert!(judge.calls().is_empty());
        assert!(matches!(GEval::new("X", "  ", vec![Param::Input]), Err(Error::Config(_))));
        assert!(matches!(GEval::new("X", "c", vec![]), Err(Error::Config(_))));
        assert!(matches!(GEval::with_steps("X", vec![], vec![Param::Input]), Err(Error::Config(_))));
    }
}
