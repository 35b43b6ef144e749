//! The prompts of each stage. Each starts with a line that names its task, so a reader of a
//! transcript (or a scripted test model) can tell the stages apart.

use crate::config::StylingConfig;
use crate::evolution::Evolution;

/// First line of the context-quality prompt.
pub const RATE_CONTEXT: &str = "Task: rate a passage as material for test questions.";
/// First line of the input-generation prompt.
pub const WRITE_INPUTS: &str = "Task: write test inputs answerable from a context.";
/// First line of the input-quality prompt.
pub const RATE_INPUT: &str = "Task: rate a test input for clarity and self-containment.";
/// First line of the input-rewrite prompt.
pub const REWRITE_INPUT: &str = "Task: improve a test input using a reviewer's feedback.";
/// First line of every evolution prompt.
pub const EVOLVE_INPUT: &str = "Task: rewrite a test input to make it harder.";
/// First line of the styling prompt.
pub const STYLE_INPUT: &str = "Task: restyle a test input.";
/// First line of the expected-output prompt.
pub const ANSWER_INPUT: &str = "Task: answer a test input from its context.";

fn numbered(context: &[String]) -> String {
    context.iter().enumerate().map(|(i, c)| format!("[{}] {}", i + 1, c.trim())).collect::<Vec<_>>().join("\n\n")
}

/// Scores a chunk on clarity, depth, structure and relevance, each in `[0, 1]`.
pub fn rate_context(chunk: &str) -> String {
    format!(
        "{RATE_CONTEXT}
Give four scores between 0 (poor) and 1 (excellent):
- clarity: is the passage easy to understand?
- depth: does it carry detail, facts or insight rather than generalities?
- structure: is it organized and does it follow a logical order?
- relevance: does it stay on one topic without digressions or leftover page furniture?
Reply with only a JSON object: {{\"clarity\": 0.0, \"depth\": 0.0, \"structure\": 0.0, \"relevance\": 0.0}}

Passage:
{chunk}"
    )
}

/// Asks for `n` inputs answerable from `context`.
pub fn write_inputs(context: &[String], n: usize, styling: &StylingConfig) -> String {
    let mut extra = String::new();
    if let Some(s) = &styling.scenario {
        extra.push_str(&format!("The inputs come from this scenario: {s}\n"));
    }
    if let Some(t) = &styling.task {
        extra.push_str(&format!("The system being tested must: {t}\n"));
    }
    if let Some(f) = &styling.input_format {
        extra.push_str(&format!("Each input has this format: {f}\n"));
    }
    format!(
        "{WRITE_INPUTS}
Write {n} different inputs (questions or instructions) that a user could send to an assistant and
that can be answered fully from the context below. Each input must make sense on its own,
without phrases such as \"the context\" or \"the passage\".
{extra}Reply with only a JSON object: {{\"data\": [{{\"input\": \"...\"}}]}}

Context:
{}",
        numbered(context)
    )
}

/// Scores an input for self-containment and a clear objective, with feedback.
pub fn rate_input(input: &str) -> String {
    format!(
        "{RATE_INPUT}
Score the input between 0 and 1:
- self-containment: can it be understood without documents, tables or earlier conversation
  that it does not include?
- clear objective: is it plain what answer or action is wanted?
1 means clear, self-contained and answerable; 0 means vague or dependent on unseen material.
Give one sentence of feedback saying how it could be improved.
Reply with only a JSON object: {{\"feedback\": \"...\", \"score\": 0.0}}

Input:
{input}"
    )
}

/// Rewrites an input along the critic's feedback, staying answerable from the context.
pub fn rewrite_input(context: &[String], input: &str, feedback: &str) -> String {
    format!(
        "{REWRITE_INPUT}
Rewrite the input so that it addresses the feedback, stays answerable from the context, and
makes sense on its own.
Reply with only a JSON object: {{\"rewritten_input\": \"...\"}}

Context:
{}

Input:
{input}

Feedback:
{feedback}",
        numbered(context)
    )
}

/// What each evolution asks for.
fn evolution_rule(evolution: Evolution) -> &'static str {
    match evolution {
        Evolution::Reasoning => "Make answering it take several steps of reasoning: the reader must connect facts or draw an inference.",
        Evolution::MultiContext => "Make answering it need information from every numbered part of the context.",
        Evolution::Concretizing => "Replace general notions in it with specific ones named in the context.",
        Evolution::Constrained => "Add one condition or constraint (a limit, a case, a requirement) that the answer must respect.",
        Evolution::Comparative => "Turn it into a comparison of two or more things described in the context.",
        Evolution::Hypothetical => "Set it in a hypothetical situation whose answer still follows from the context.",
        Evolution::InBreadth => {
            "Write a new input on a related but less common aspect of the same topic, still answerable from the context."
        }
    }
}

/// Evolves an input by one kind of rewriting; the answer is the new input as plain text.
pub fn evolve_input(evolution: Evolution, input: &str, context: &[String]) -> String {
    format!(
        "{EVOLVE_INPUT}
Method ({}): {}
The rewritten input must be answerable from the context, read naturally, stay under 40 words,
and must not mention \"the context\". Reply with the rewritten input only.

Context:
{}

Input:
{input}

Rewritten input:",
        evolution.display_name(),
        evolution_rule(evolution),
        numbered(context)
    )
}

/// Restyles an input to the scenario, task and input format.
pub fn style_input(input: &str, styling: &StylingConfig) -> String {
    let mut rules = String::new();
    if let Some(s) = &styling.scenario {
        rules.push_str(&format!("- it fits this scenario: {s}\n"));
    }
    if let Some(t) = &styling.task {
        rules.push_str(&format!("- it suits a system that must: {t}\n"));
    }
    if let Some(f) = &styling.input_format {
        rules.push_str(&format!("- it has this format: {f}\n"));
    }
    format!(
        "{STYLE_INPUT}
Rewrite the input, keeping its meaning, so that:
{rules}Reply with only a JSON object: {{\"input\": \"...\"}}

Input:
{input}"
    )
}

/// Answers an input from its context; the answer is plain text.
pub fn answer_input(input: &str, context: &[String], format: Option<&str>) -> String {
    let format = format.map(|f| format!("Format the answer as: {f}\n")).unwrap_or_default();
    format!(
        "{ANSWER_INPUT}
Answer the input accurately and completely using only the context. {format}Reply with the answer only.

Context:
{}

Input:
{input}

Answer:",
        numbered(context)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_start_with_their_task_line_and_carry_their_inputs() {
        let ctx = vec!["Bees dance.".to_string(), "Hives hold wax.".to_string()];
        let styling = StylingConfig { scenario: Some("a curious child".into()), ..StylingConfig::default() };
        let cases = [
            (rate_context("Bees dance."), RATE_CONTEXT),
            (write_inputs(&ctx, 2, &styling), WRITE_INPUTS),
            (rate_input("Why?"), RATE_INPUT),
            (rewrite_input(&ctx, "Why?", "vague"), REWRITE_INPUT),
            (evolve_input(Evolution::Comparative, "Why?", &ctx), EVOLVE_INPUT),
            (style_input("Why?", &styling), STYLE_INPUT),
            (answer_input("Why?", &ctx, Some("one line")), ANSWER_INPUT),
        ];
        for (prompt, head) in cases {
            assert!(prompt.starts_with(head), "{prompt}");
        }
        assert!(write_inputs(&ctx, 2, &styling).contains("[2] Hives hold wax."));
        assert!(write_inputs(&ctx, 2, &styling).contains("a curious child"));
        assert!(evolve_input(Evolution::InBreadth, "Why?", &ctx).contains("In-Breadth"));
    }
}
