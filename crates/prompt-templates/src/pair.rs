//! Training rows as `(prompt, completion)` pairs, so a trainer can mask the prompt and learn
//! only the completion; and the Llama-2 SFT row layout of `mlabonne/guanaco-llama2-1k`.
//!
//! ```
//! use prompt_templates::{AlpacaRow, ChatTemplate, RenderOptions};
//!
//! let row = AlpacaRow::new("Name a colour.", "", "Blue.");
//! assert_eq!(row.llama2_sft().text(), "<s>[INST] Name a colour. [/INST] Blue. </s>");
//!
//! let pair = ChatTemplate::ChatMl.prepare().unwrap().render_alpaca(&row, &RenderOptions::new()).unwrap();
//! assert_eq!(pair.prompt, "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n");
//! assert_eq!(pair.completion, "Blue.<|im_end|>\n");
//! ```

use llm_api::Message;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One Alpaca-style training row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlpacaRow {
    /// The task.
    pub instruction: String,
    /// Context for the task; empty when there is none.
    #[serde(default)]
    pub input: String,
    /// The answer to learn.
    pub output: String,
    /// An optional system prompt (LLaMA-Factory's `system` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

impl AlpacaRow {
    /// A row without a system prompt.
    pub fn new(instruction: impl Into<String>, input: impl Into<String>, output: impl Into<String>) -> Self {
        Self { instruction: instruction.into(), input: input.into(), output: output.into(), system: None }
    }

    /// The user's turn: the instruction, then a blank line and the input when there is one.
    pub fn user_content(&self) -> String {
        if self.input.is_empty() { self.instruction.clone() } else { format!("{}\n\n{}", self.instruction, self.input) }
    }

    /// The row as chat messages: the system prompt (if any), the user's turn, the answer.
    pub fn to_messages(&self) -> Vec<Message> {
        let mut messages = Vec::with_capacity(3);
        if let Some(system) = &self.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(self.user_content()));
        messages.push(Message::assistant(self.output.clone()));
        messages
    }

    /// The row in the Llama-2 SFT layout of `mlabonne/guanaco-llama2-1k`:
    /// `<s>[INST] {instruction}\n\n{input} [/INST] {output} </s>` (just `{instruction}` when
    /// the input is empty), with no whitespace stripping. The prompt ends with ` [/INST]`.
    pub fn llama2_sft(&self) -> PromptCompletion {
        PromptCompletion { prompt: format!("<s>[INST] {} [/INST]", self.user_content()), completion: format!(" {} </s>", self.output) }
    }
}

/// A rendered training example: the prompt (to mask) and the completion (to learn).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptCompletion {
    /// The text the model is given.
    pub prompt: String,
    /// The text the model should produce, end-of-turn marker included.
    pub completion: String,
}

impl PromptCompletion {
    /// The whole training text: prompt then completion.
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.completion)
    }
}

/// Splits `full` (the whole conversation) into the `prompt` (the conversation without its last
/// message, with a generation prompt) and the rest.
///
/// # Errors
/// [`Error::NotAPrefix`] when `full` does not start with `prompt`.
pub(crate) fn split(template: &str, prompt: String, full: String) -> Result<PromptCompletion> {
    match full.strip_prefix(prompt.as_str()) {
        Some(completion) => Ok(PromptCompletion { completion: completion.to_string(), prompt }),
        None => {
            // The first byte where the texts differ; a char boundary in both, as the bytes
            // before it are equal.
            let at = prompt
                .char_indices()
                .zip(full.chars())
                .find(|((_, a), b)| a != b)
                .map(|((i, _), _)| i)
                .unwrap_or(prompt.len().min(full.len()));
            let start = prompt[..at].char_indices().rev().nth(19).map(|(i, _)| i).unwrap_or(0);
            Err(Error::NotAPrefix {
                template: template.to_string(),
                prompt_tail: prompt[start..].chars().take(60).collect(),
                full_tail: full[start..].chars().take(60).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sft_layout_with_and_without_input() {
        let with_input = AlpacaRow::new("Sum these.", "1, 2", "3");
        assert_eq!(with_input.llama2_sft().text(), "<s>[INST] Sum these.\n\n1, 2 [/INST] 3 </s>");
        let without = AlpacaRow::new("Say hi.", "", "Hi!");
        assert_eq!(without.llama2_sft().prompt, "<s>[INST] Say hi. [/INST]");
        assert_eq!(without.llama2_sft().completion, " Hi! </s>");
    }

    #[test]
    fn split_reports_where_texts_diverge() {
        let err = split("t", "abcX".into(), "abcYdef".into()).expect_err("diverges");
        match err {
            Error::NotAPrefix { prompt_tail, full_tail, .. } => {
                assert_eq!(prompt_tail, "abcX");
                assert_eq!(full_tail, "abcYdef");
            }
            other => panic!("expected NotAPrefix, got {other}"),
        }
        let pair = split("t", "ab".into(), "abc".into()).expect("prefix");
        assert_eq!(pair.completion, "c");
    }

    #[test]
    fn rows_deserialize_without_input() {
        let row: AlpacaRow = serde_json::from_str(r#"{"instruction": "i", "output": "o"}"#).expect("row");
        assert_eq!(row, AlpacaRow::new("i", "", "o"));
    }
}
