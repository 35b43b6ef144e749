//! Llama-3's header format, rendered exactly as the chat template of
//! `meta-llama/Meta-Llama-3-8B-Instruct` renders it: `<|begin_of_text|>` once, then
//! `<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>` per message with the content
//! stripped, and `<|start_header_id|>assistant<|end_header_id|>\n\n` as the generation prompt.
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{llama3, RenderOptions};
//!
//! let text = llama3::render(&[Message::user("Hi")], &RenderOptions::new().with_generation_prompt(true)).unwrap();
//! assert_eq!(
//!     text,
//!     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
//! );
//! ```

use llm_api::Message;

use crate::Result;
use crate::options::RenderOptions;
use crate::python::strip;

/// Llama-3's beginning-of-text token.
pub const BOS: &str = "<|begin_of_text|>";
/// Llama-3's end-of-turn token.
pub const EOT: &str = "<|eot_id|>";
/// The header that opens an assistant turn (the generation prompt).
pub const ASSISTANT_HEADER: &str = "<|start_header_id|>assistant<|end_header_id|>\n\n";

/// Renders `messages` in the Llama-3 layout. Infallible; the `Result` keeps the signature of
/// every format.
pub fn render(messages: &[Message], options: &RenderOptions) -> Result<String> {
    let mut out = String::new();
    for (i, message) in messages.iter().enumerate() {
        if i == 0 {
            out.push_str(BOS);
        }
        out.push_str("<|start_header_id|>");
        out.push_str(message.role.as_str());
        out.push_str("<|end_header_id|>\n\n");
        out.push_str(strip(&message.content, None));
        out.push_str(EOT);
    }
    if options.add_generation_prompt {
        out.push_str(ASSISTANT_HEADER);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_turn_without_generation_prompt() {
        let messages = [Message::system("S"), Message::user(" Q "), Message::assistant("A\n")];
        let text = render(&messages, &RenderOptions::new()).expect("render");
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
        );
    }
}
