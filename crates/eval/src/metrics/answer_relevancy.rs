//! Answer relevancy: the share of the answer's statements that address the input.
//!
//! As DeepEval: the judge splits the actual output into statements; for each, a verdict
//! `yes` (relevant), `no` (irrelevant) or `idk` (ambiguous, e.g. supporting detail); `score =
//! verdicts other than no / verdicts`, 1 when there are no statements; strict mode forces
//! the threshold to 1 and snaps any score below it to 0; passes when `score >= threshold`.

use llm_api::{CompletionOptions, Llm};
use serde::Deserialize;

use crate::metric::{ReasonAnswer, Verdict, Verdicts, ask_json, bullet_list, check_required, default_judge_options, verdict_lines};
use crate::schemas;
use crate::{Direction, Metric, MetricResult, Param, Result, TestCase};

/// The Answer Relevancy metric.
#[derive(Debug)]
pub struct AnswerRelevancy {
    threshold: f64,
    strict_mode: bool,
    include_reason: bool,
    judge_options: CompletionOptions,
}

impl Default for AnswerRelevancy {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Deserialize)]
struct Statements {
    statements: Vec<String>,
}

/// The score from verdicts, as DeepEval computes it.
pub(crate) fn score(verdicts: &[Verdict], strict: bool, threshold: f64) -> f64 {
    if verdicts.is_empty() {
        return 1.0;
    }
    let relevant = verdicts.iter().filter(|v| v.normalized() != "no").count();
    let score = relevant as f64 / verdicts.len() as f64;
    if strict && score < threshold { 0.0 } else { score }
}

fn statements_prompt(output: &str) -> String {
    format!(
        "Split the text below into its individual statements: short, self-contained claims or \
         sentences, with pronouns resolved. Keep fragments that carry no claim (greetings, filler) as \
         statements too.\n\n\
         Example text: \"Our store opens at 9. We sell shoes. Have a nice day!\"\n\
         Example answer: {{\"statements\": [\"The store opens at 9.\", \"The store sells shoes.\", \"Have a nice day!\"]}}\n\n\
         Text:\n{output}\n\n\
         Answer with a JSON object with the key `statements` (a list of strings) and nothing else."
    )
}

fn verdicts_prompt(input: &str, statements: &[String]) -> String {
    let listed = serde_json::to_string_pretty(statements).unwrap_or_else(|_| bullet_list(statements));
    format!(
        "Decide, for EACH statement below, whether it is relevant to answering the input. One verdict per \
         statement, in the same order. `verdict` is \"yes\" (relevant), \"no\" (irrelevant) or \"idk\" \
         (ambiguous: supporting detail that neither answers nor distracts). Give a `reason` when the verdict \
         is \"no\", explaining why the statement does not help answer the input.\n\n\
         Input:\n{input}\n\n\
         Statements:\n{listed}\n\n\
         Answer with a JSON object and nothing else, for example:\n\
         {{\"verdicts\": [{{\"verdict\": \"yes\"}}, {{\"verdict\": \"no\", \"reason\": \"...\"}}, {{\"verdict\": \"idk\"}}]}}"
    )
}

fn reason_prompt(input: &str, score: f64, irrelevant: &[String]) -> String {
    format!(
        "An answer to the input below got a relevancy score of {score:.2} (0 = nothing relevant, 1 = fully \
         relevant). These are the reasons some of its statements were judged irrelevant:\n{}\n\n\
         Input:\n{input}\n\n\
         Justify the score in one or two sentences; when nothing was irrelevant, say what the answer does \
         well. Answer with a JSON object and nothing else: {{\"reason\": \"The score is {score:.2} because ...\"}}",
        bullet_list(irrelevant)
    )
}

impl AnswerRelevancy {
    /// Threshold 0.5, reasons on.
    pub fn new() -> Self {
        Self { threshold: 0.5, strict_mode: false, include_reason: true, judge_options: default_judge_options() }
    }

    /// Sets the pass threshold (score ≥ threshold passes).
    pub fn with_threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Turns strict mode on or off (threshold forced to 1, anything less scores 0).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict_mode = strict;
        self
    }

    /// Whether to ask the judge for a closing reason.
    pub fn include_reason(mut self, include: bool) -> Self {
        self.include_reason = include;
        self
    }

    /// Sets the judge's sampling options (JSON mode is always on).
    pub fn judge_options(mut self, options: CompletionOptions) -> Self {
        self.judge_options = CompletionOptions { json_mode: true, ..options };
        self
    }
}

impl Metric for AnswerRelevancy {
    fn name(&self) -> String {
        "Answer Relevancy".into()
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
        vec![Param::Input, Param::ActualOutput]
    }

    fn measure(&self, case: &TestCase, judge: &dyn Llm) -> Result<MetricResult> {
        let name = self.name();
        check_required(self, case)?;
        let options = &self.judge_options;
        let (answer, _) = ask_json::<Statements>(
            judge,
            options,
            &name,
            "statements",
            statements_prompt(&case.actual_output),
            schemas::string_list("statements"),
        )?;
        let statements: Vec<String> = answer.statements.into_iter().filter(|s| !s.trim().is_empty()).collect();
        let verdicts = if statements.is_empty() {
            Vec::new()
        } else {
            let prompt = verdicts_prompt(&case.input, &statements);
            ask_json::<Verdicts>(judge, options, &name, "verdicts", prompt, schemas::verdicts(&["yes", "no", "idk"]))?.0.verdicts
        };
        let threshold = self.threshold();
        let score = score(&verdicts, self.strict_mode, threshold);
        let reason = if self.include_reason {
            let irrelevant: Vec<String> = verdicts
                .iter()
                .filter(|v| v.normalized() == "no")
                .map(|v| v.reason.clone().unwrap_or_else(|| "(no reason given)".into()))
                .collect();
            let prompt = reason_prompt(&case.input, score, &irrelevant);
            Some(ask_json::<ReasonAnswer>(judge, options, &name, "reason", prompt, schemas::reason())?.0.reason)
        } else {
            None
        };
        Ok(MetricResult {
            metric: name,
            score,
            threshold,
            direction: self.direction(),
            success: self.direction().passes(score, threshold),
            strict_mode: self.strict_mode,
            reason: reason.clone(),
            judge: judge.name(),
            steps: vec![
                format!("Statements:\n{}", bullet_list(&statements)),
                format!("Verdicts:\n{}", verdict_lines(&verdicts)),
                format!("Score: {score}\nReason: {}", reason.as_deref().unwrap_or("(not requested)")),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(verdict: &str) -> Verdict {
        Verdict { verdict: verdict.into(), reason: None }
    }

    use crate::testing::ScriptedLlm;

    #[test]
    fn relevant_share_with_idk_and_reason() {
        let judge = ScriptedLlm::texts([
            r#"{"statements": ["Paris is the capital.", "It has many museums.", "I like turtles.", "It is in France."]}"#,
            r#"{"verdicts": [{"verdict": "yes"}, {"verdict": "idk"}, {"verdict": "no", "reason": "Turtles are off topic."}, {"verdict": "yes"}]}"#,
            r#"{"reason": "The score is 0.75 because of a remark about turtles."}"#,
        ]);
        let case = TestCase::new("What is the capital of France?", "Paris is the capital...");
        let result = AnswerRelevancy::new().measure(&case, &judge).expect("measured");
        // yes, idk, yes relevant; one no: 3 / 4 = 0.75 >= 0.5.
        assert_eq!((result.score, result.success), (0.75, true));
        let prompts = judge.prompts();
        assert!(prompts[1].contains("What is the capital of France?"));
        assert!(prompts[2].contains("0.75") && prompts[2].contains("Turtles are off topic."));
        // No statements: 1.0 without a verdicts call.
        let judge = ScriptedLlm::texts([r#"{"statements": []}"#]);
        let result = AnswerRelevancy::new().include_reason(false).measure(&case, &judge).expect("measured");
        assert_eq!(result.score, 1.0);
        assert_eq!(judge.calls().len(), 1);
    }

    #[test]
    fn idk_counts_as_relevant() {
        // yes + idk + IDK relevant, one no: 3 / 4 = 0.75.
        assert_eq!(score(&[v("yes"), v("idk"), v("no"), v(" IDK")], false, 0.5), 0.75);
        assert_eq!(score(&[], false, 0.5), 1.0);
        // Strict: threshold 1, 0.75 < 1 snaps to 0; all relevant stays 1.
        assert_eq!(score(&[v("yes"), v("no")], true, 1.0), 0.0);
        assert_eq!(score(&[v("yes"), v("idk")], true, 1.0), 1.0);
    }
}
