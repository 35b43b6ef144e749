//! Test cases (what a metric judges) and goldens (test cases still waiting for an answer).

use serde::{Deserialize, Serialize};

/// One interaction to judge, with DeepEval's `LLMTestCase` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// What the user asked.
    pub input: String,
    /// What the model under evaluation answered.
    pub actual_output: String,
    /// The ideal answer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// Ground-truth background the answer should agree with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    /// What a retriever handed the model, for RAG metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_context: Option<Vec<String>>,
    /// A label for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl TestCase {
    /// A case with only the required fields.
    pub fn new(input: impl Into<String>, actual_output: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            actual_output: actual_output.into(),
            expected_output: None,
            context: None,
            retrieval_context: None,
            name: None,
        }
    }

    /// Sets the expected output.
    pub fn with_expected_output(mut self, expected: impl Into<String>) -> Self {
        self.expected_output = Some(expected.into());
        self
    }

    /// Sets the context.
    pub fn with_context(mut self, context: Vec<String>) -> Self {
        self.context = Some(context);
        self
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The name, or the input's first 60 characters.
    pub fn display_label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => crate::report::clip(&self.input, 60),
        }
    }

    /// The name, or `case N` (1-based) from the case's position.
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("case {}", index + 1))
    }
}

/// A test case without an answer yet: what `synth` produces and a model then answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Golden {
    /// The question.
    pub input: String,
    /// An answer already given (kept when present, e.g. a previous run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_output: Option<String>,
    /// The ideal answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// Ground-truth background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    /// Retrieved background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_context: Option<Vec<String>>,
    /// A label for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The document the golden was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
}

impl Golden {
    /// A golden with only an input.
    pub fn new(input: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            actual_output: None,
            expected_output: None,
            context: None,
            retrieval_context: None,
            name: None,
            source_file: None,
        }
    }

    /// The test case made of this golden and an answer to it.
    pub fn to_test_case(&self, actual_output: impl Into<String>) -> TestCase {
        TestCase {
            input: self.input.clone(),
            actual_output: actual_output.into(),
            expected_output: self.expected_output.clone(),
            context: self.context.clone(),
            retrieval_context: self.retrieval_context.clone(),
            name: self.name.clone(),
        }
    }
}

/// A test-case field that a metric can read (DeepEval's `LLMTestCaseParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    /// [`TestCase::input`].
    Input,
    /// [`TestCase::actual_output`].
    ActualOutput,
    /// [`TestCase::expected_output`].
    ExpectedOutput,
    /// [`TestCase::context`].
    Context,
    /// [`TestCase::retrieval_context`].
    RetrievalContext,
}

impl Param {
    /// The field name in datasets (`actual_output`).
    pub fn field(self) -> &'static str {
        match self {
            Param::Input => "input",
            Param::ActualOutput => "actual_output",
            Param::ExpectedOutput => "expected_output",
            Param::Context => "context",
            Param::RetrievalContext => "retrieval_context",
        }
    }

    /// The heading used in judge prompts (`Actual Output`).
    pub fn title(self) -> &'static str {
        match self {
            Param::Input => "Input",
            Param::ActualOutput => "Actual Output",
            Param::ExpectedOutput => "Expected Output",
            Param::Context => "Context",
            Param::RetrievalContext => "Retrieval Context",
        }
    }

    /// Parses a field name (`input`, `actual_output`, `expected_output`, `context`,
    /// `retrieval_context`; `-` may replace `_`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "input" => Some(Param::Input),
            "actual_output" => Some(Param::ActualOutput),
            "expected_output" => Some(Param::ExpectedOutput),
            "context" => Some(Param::Context),
            "retrieval_context" => Some(Param::RetrievalContext),
            _ => None,
        }
    }

    /// The field's text in `case`, lists rendered one item per line; `None` when absent.
    pub fn text(self, case: &TestCase) -> Option<String> {
        let list = |items: &Option<Vec<String>>| items.as_ref().map(|v| v.iter().map(|s| format!("- {s}")).collect::<Vec<_>>().join("\n"));
        match self {
            Param::Input => Some(case.input.clone()),
            Param::ActualOutput => Some(case.actual_output.clone()),
            Param::ExpectedOutput => case.expected_output.clone(),
            Param::Context => list(&case.context),
            Param::RetrievalContext => list(&case.retrieval_context),
        }
    }
}

/// `A`, `A and B`, `A, B, and C` of the params' titles, as judge prompts name them.
pub(crate) fn join_titles(params: &[Param]) -> String {
    let titles: Vec<&str> = params.iter().map(|p| p.title()).collect();
    match titles.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_render() {
        assert_eq!(Param::parse("Expected-Output"), Some(Param::ExpectedOutput));
        assert_eq!(Param::parse("nope"), None);
        let case = TestCase::new("q", "a").with_context(vec!["x".into(), "y".into()]);
        assert_eq!(Param::Context.text(&case).as_deref(), Some("- x\n- y"));
        assert_eq!(Param::ExpectedOutput.text(&case), None);
    }

    #[test]
    fn titles_join_like_prose() {
        assert_eq!(join_titles(&[Param::Input]), "Input");
        assert_eq!(join_titles(&[Param::Input, Param::ActualOutput]), "Input and Actual Output");
        assert_eq!(join_titles(&[Param::Input, Param::ActualOutput, Param::Context]), "Input, Actual Output, and Context");
    }

    #[test]
    fn golden_becomes_a_case() {
        let mut g = Golden::new("q");
        g.expected_output = Some("e".into());
        let case = g.to_test_case("a");
        assert_eq!(case.actual_output, "a");
        assert_eq!(case.expected_output.as_deref(), Some("e"));
        assert_eq!(case.label(2), "case 3");
    }
}
