//! Llama-2-chat's `[INST]`/`<<SYS>>` format, rendered exactly as Meta's chat template in
//! `meta-llama/Llama-2-7b-chat-hf`'s `tokenizer_config.json` renders it.
//!
//! An optional first system message is folded into the first user turn; every user turn opens
//! with `<s>[INST] ` and every assistant turn closes with ` </s>`; contents are stripped of
//! surrounding whitespace; roles must alternate user/assistant after the system message. The
//! text after a user turn (` [/INST]`) is already where the assistant answers, so the
//! generation prompt adds nothing.
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{llama2, RenderOptions};
//!
//! let messages = [Message::system("Be brief."), Message::user("Hi"), Message::assistant("Hello."), Message::user("Bye")];
//! let text = llama2::render(&messages, &RenderOptions::new()).unwrap();
//! assert_eq!(text, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]");
//! ```

use llm_api::{Message, Role};

use crate::options::RenderOptions;
use crate::python::strip;
use crate::{Error, Result};

/// Llama-2's beginning-of-sequence token.
pub const BOS: &str = "<s>";
/// Llama-2's end-of-sequence token.
pub const EOS: &str = "</s>";
/// The message Meta's template raises when roles do not alternate.
pub const ALTERNATION_ERROR: &str = "Conversation roles must alternate user/assistant/user/assistant/...";

/// Renders `messages` in the Llama-2-chat layout; `options` are not used (the format has no
/// generation prompt and fixed tokens).
///
/// # Errors
/// [`Error::Conversation`] when, after the optional system message, a user message is not at
/// an even position or an assistant message is not at an odd one.
pub fn render(messages: &[Message], _options: &RenderOptions) -> Result<String> {
    let (system, turns, offset) = match messages.first() {
        Some(first) if first.role == Role::System => (Some(first.content.as_str()), &messages[1..], 1),
        _ => (None, messages, 0),
    };
    let mut out = String::new();
    for (i, message) in turns.iter().enumerate() {
        if (message.role == Role::User) != (i % 2 == 0) {
            return Err(Error::Conversation { template: "llama2".to_string(), index: i + offset, detail: ALTERNATION_ERROR.to_string() });
        }
        let content = match system {
            Some(system) if i == 0 => format!("<<SYS>>\n{system}\n<</SYS>>\n\n{}", message.content),
            _ => message.content.clone(),
        };
        match message.role {
            Role::User => {
                out.push_str(BOS);
                out.push_str("[INST] ");
                out.push_str(strip(&content, None));
                out.push_str(" [/INST]");
            }
            Role::Assistant => {
                out.push(' ');
                out.push_str(strip(&content, None));
                out.push(' ');
                out.push_str(EOS);
            }
            // Meta's template passes a later system message at an odd position and prints
            // nothing for it.
            Role::System => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_user_turn() {
        let text = render(&[Message::user("  What is 2+2? \n")], &RenderOptions::new()).expect("render");
        assert_eq!(text, "<s>[INST] What is 2+2? [/INST]");
    }

    #[test]
    fn roles_must_alternate() {
        let err =
            render(&[Message::system("s"), Message::user("a"), Message::user("b")], &RenderOptions::new()).expect_err("two user turns");
        match err {
            Error::Conversation { index, detail, .. } => {
                assert_eq!(index, 2);
                assert_eq!(detail, ALTERNATION_ERROR);
            }
            other => panic!("expected Conversation, got {other}"),
        }
    }

    #[test]
    fn a_lone_system_message_renders_nothing() {
        assert_eq!(render(&[Message::system("s")], &RenderOptions::new()).expect("render"), "");
    }
}
