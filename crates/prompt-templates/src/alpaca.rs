//! The Alpaca instruction format, in the layout of Alpaca-LoRA's `templates/alpaca.json`:
//!
//! ```text
//! Below is an instruction that describes a task[, paired with an input ...]. Write a response that appropriately completes the request.
//!
//! ### Instruction:
//! {instruction}
//!
//! ### Input:            (only when there is an input)
//! {input}
//!
//! ### Response:
//! {output}{eos_token}
//! ```
//!
//! For chat messages, a leading system message replaces the preamble, each user turn is an
//! `### Instruction:` section and each assistant turn a `### Response:` section that ends with
//! the EOS token when [`RenderOptions::special_tokens`] has one (Stanford Alpaca appends the
//! tokenizer's EOS to every target). The generation prompt is an open `### Response:` section.
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{alpaca, RenderOptions};
//!
//! let text = alpaca::render(&[Message::user("Say hi.")], &RenderOptions::new().with_generation_prompt(true)).unwrap();
//! assert_eq!(
//!     text,
//!     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n"
//! );
//! ```

use llm_api::{Message, Role};

use crate::options::RenderOptions;
use crate::pair::{AlpacaRow, PromptCompletion};
use crate::{Error, Result};

/// The preamble when there is no input.
pub const PREAMBLE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.";
/// The preamble when the row has an input.
pub const PREAMBLE_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.";
/// What separates the sections.
const SEPARATOR: &str = "\n\n";

/// Renders chat messages in the Alpaca layout.
///
/// # Errors
/// [`Error::Conversation`] for a system message anywhere but first: the format has no place
/// for it.
pub fn render(messages: &[Message], options: &RenderOptions) -> Result<String> {
    let (preamble, turns, offset) = match messages.first() {
        Some(first) if first.role == Role::System => (first.content.as_str(), &messages[1..], 1),
        _ => (PREAMBLE, messages, 0),
    };
    let eos = options.special_tokens.eos_token.as_deref().unwrap_or("");
    let mut sections: Vec<String> = Vec::with_capacity(turns.len() + 2);
    if !preamble.is_empty() {
        sections.push(preamble.to_string());
    }
    for (i, message) in turns.iter().enumerate() {
        match message.role {
            Role::User => sections.push(format!("### Instruction:\n{}", message.content)),
            Role::Assistant => sections.push(format!("### Response:\n{}{eos}", message.content)),
            Role::System => {
                return Err(Error::Conversation {
                    template: "alpaca".to_string(),
                    index: i + offset,
                    detail: "the Alpaca format has no place for a system message after the first message".to_string(),
                });
            }
        }
    }
    if options.add_generation_prompt {
        sections.push("### Response:\n".to_string());
    }
    Ok(sections.join(SEPARATOR))
}

/// Renders an Alpaca row as the prompt (everything up to and including `### Response:\n`) and
/// the completion (`output` followed by the EOS token when one is set). A row's `system`, when
/// present, replaces the preamble.
pub fn render_row(row: &AlpacaRow, options: &RenderOptions) -> PromptCompletion {
    let preamble = match &row.system {
        Some(system) => system.as_str(),
        None if row.input.is_empty() => PREAMBLE,
        None => PREAMBLE_WITH_INPUT,
    };
    let mut sections: Vec<String> = Vec::with_capacity(4);
    if !preamble.is_empty() {
        sections.push(preamble.to_string());
    }
    sections.push(format!("### Instruction:\n{}", row.instruction));
    if !row.input.is_empty() {
        sections.push(format!("### Input:\n{}", row.input));
    }
    sections.push("### Response:\n".to_string());
    let eos = options.special_tokens.eos_token.as_deref().unwrap_or("");
    PromptCompletion { prompt: sections.join(SEPARATOR), completion: format!("{}{eos}", row.output) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpecialTokens;

    #[test]
    fn row_with_input_matches_alpaca_lora_layout() {
        let row = AlpacaRow::new("Add the numbers.", "2 and 3", "5");
        let tokens = SpecialTokens { eos_token: Some("</s>".into()), ..Default::default() };
        let pair = render_row(&row, &RenderOptions::new().with_special_tokens(&tokens));
        assert_eq!(
            pair.prompt,
            "Below is an instruction that describes a task, paired with an input that provides further context. \
             Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n\
             ### Input:\n2 and 3\n\n### Response:\n"
        );
        assert_eq!(pair.completion, "5</s>");
    }

    #[test]
    fn late_system_message_is_an_error() {
        let err = render(&[Message::user("a"), Message::system("b")], &RenderOptions::new()).expect_err("late system");
        assert!(matches!(err, Error::Conversation { index: 1, .. }), "{err}");
    }
}
