//! Reading a streamed chat completion: server-sent events of `chat.completion.chunk` objects,
//! ended by `data: [DONE]`.

use std::io::{BufRead, BufReader, Read};

use crate::json_answer::truncate;
use crate::wire::{ChatChunk, parse_finish_reason};
use crate::{Completion, CompletionOptions, Error, FinishReason, Result, TokenLogprob, Usage};

/// Reads SSE lines from `reader` until `[DONE]` (or the end of the body), forwarding each text
/// delta to `on_text`; stops early, with [`FinishReason::Stop`], when `on_text` returns `false`.
/// Logprobs of all chunks are concatenated (when asked for), usage is taken from the chunk
/// that carries it.
pub(crate) fn read_chat_stream(
    reader: impl Read,
    url: &str,
    options: &CompletionOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
    map_io: impl Fn(&std::io::Error) -> Error,
) -> Result<Completion> {
    let mut text = String::new();
    let mut logprobs: Vec<TokenLogprob> = Vec::new();
    let mut saw_logprobs = false;
    let mut finish_reason = FinishReason::Stop;
    let mut usage = Usage::default();
    let mut lines = BufReader::new(reader);
    let mut line = String::new();
    loop {
        line.clear();
        let read = lines.read_line(&mut line).map_err(|e| map_io(&e))?;
        if read == 0 {
            break;
        }
        let Some(payload) = line.trim_end_matches(['\r', '\n']).strip_prefix("data:") else {
            continue;
        };
        let payload = payload.trim_start();
        if payload == "[DONE]" {
            break;
        }
        let value: serde_json::Value = serde_json::from_str(payload).map_err(|e| Error::Malformed {
            what: format!("stream event from {url}"),
            detail: e.to_string(),
            answer: truncate(payload, 2000),
        })?;
        if let Some(error) = value.get("error") {
            let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("unknown error");
            return Err(Error::Model(format!("{url}: stream failed: {message}")));
        }
        let chunk: ChatChunk = serde_json::from_value(value).map_err(|e| Error::Malformed {
            what: format!("stream chunk from {url}"),
            detail: e.to_string(),
            answer: truncate(payload, 2000),
        })?;
        if let Some(u) = chunk.usage {
            usage = u.into();
        }
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            continue;
        };
        if let Some(content) = choice.logprobs.and_then(|l| l.content) {
            saw_logprobs = true;
            logprobs.extend(content.into_iter().map(TokenLogprob::from));
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            finish_reason = parse_finish_reason(Some(reason));
        }
        if let Some(piece) = choice.delta.content.filter(|p| !p.is_empty()) {
            text.push_str(&piece);
            if !on_text(&piece) {
                finish_reason = FinishReason::Stop;
                break;
            }
        }
    }
    let logprobs = (options.top_logprobs.is_some() && saw_logprobs).then_some(logprobs);
    Ok(Completion { text, logprobs, finish_reason, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: &std::io::Error) -> Error {
        Error::Transport { url: "u".into(), message: e.to_string() }
    }

    #[test]
    fn concatenates_deltas_until_done() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            ": a comment line\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\r\n\r\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
            "data: [DONE]\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ignored\"}}]}\n\n",
        );
        let mut pieces = Vec::new();
        let completion = read_chat_stream(
            body.as_bytes(),
            "u",
            &CompletionOptions::default(),
            &mut |p| {
                pieces.push(p.to_string());
                true
            },
            io,
        )
        .expect("stream");
        assert_eq!(pieces, ["Hel", "lo"]);
        assert_eq!(completion.text, "Hello");
        assert_eq!(completion.finish_reason, FinishReason::Length);
        assert_eq!(completion.usage, Usage { prompt_tokens: 3, completion_tokens: 2 });
        assert_eq!(completion.logprobs, None);
    }

    #[test]
    fn callback_can_stop_early() {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\n";
        let completion = read_chat_stream(body.as_bytes(), "u", &CompletionOptions::default(), &mut |_| false, io).expect("stream");
        assert_eq!(completion.text, "a");
    }

    #[test]
    fn an_error_event_fails_the_call() {
        let body = "data: {\"error\":{\"message\":\"model crashed\"}}\n\n";
        let err = read_chat_stream(body.as_bytes(), "u", &CompletionOptions::default(), &mut |_| true, io).expect_err("error event");
        assert!(err.to_string().contains("model crashed"), "{err}");
    }

    #[test]
    fn garbage_event_is_malformed() {
        let body = "data: {not json\n\n";
        let err = read_chat_stream(body.as_bytes(), "u", &CompletionOptions::default(), &mut |_| true, io).expect_err("garbage");
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    }
}
