//! The ChatML format: `<|im_start|>ROLE\nCONTENT<|im_end|>\n` per message, contents kept as
//! they are, and `<|im_start|>assistant\n` as the generation prompt; no BOS and no default
//! system message (the generic template of e.g. `teknium/OpenHermes-2.5-Mistral-7B`).
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{chatml, RenderOptions};
//!
//! let text = chatml::render(&[Message::user("Hi")], &RenderOptions::new().with_generation_prompt(true)).unwrap();
//! assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! ```

use llm_api::Message;

use crate::Result;
use crate::options::RenderOptions;

/// The token that opens a turn.
pub const IM_START: &str = "<|im_start|>";
/// The token that closes a turn.
pub const IM_END: &str = "<|im_end|>";

/// Renders `messages` in the ChatML layout. Infallible; the `Result` keeps the signature of
/// every format.
pub fn render(messages: &[Message], options: &RenderOptions) -> Result<String> {
    let mut out = String::new();
    for message in messages {
        out.push_str(IM_START);
        out.push_str(message.role.as_str());
        out.push('\n');
        out.push_str(&message.content);
        out.push_str(IM_END);
        out.push('\n');
    }
    if options.add_generation_prompt {
        out.push_str(IM_START);
        out.push_str("assistant\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_content_whitespace() {
        let text = render(&[Message::system(" s "), Message::assistant("")], &RenderOptions::new()).expect("render");
        assert_eq!(text, "<|im_start|>system\n s <|im_end|>\n<|im_start|>assistant\n<|im_end|>\n");
    }
}
