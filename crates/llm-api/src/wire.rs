//! The OpenAI chat/embeddings protocol as plain serde types, shared by the client and the
//! server so both sides agree on every field name.

use serde::{Deserialize, Serialize};

use crate::{Completion, FinishReason, TokenLogprob, TopLogprob, Usage};

/// A chat message as sent by the client (`content` is always a string here).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WireMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

/// `response_format` of a chat request.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

/// `stream_options` of a chat request.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

/// The body of `POST /chat/completions` as the client sends it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<WireMessage<'a>>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

/// One alternative token on the wire (`bytes` is informative only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireTopLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
}

/// One generated token with its alternatives on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireTokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<WireTopLogprob>,
}

/// `choices[i].logprobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WireLogprobs {
    #[serde(default)]
    pub content: Option<Vec<WireTokenLogprob>>,
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: usize,
    #[serde(default)]
    pub completion_tokens: usize,
    #[serde(default)]
    pub total_tokens: usize,
}

/// The assistant message of a non-streaming choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireAnswer {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
}

/// One choice of a non-streaming response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireChoice {
    pub index: usize,
    pub message: WireAnswer,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The body of a non-streaming chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// The incremental message of a streaming choice.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WireDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a streaming chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChunkChoice {
    pub index: usize,
    #[serde(default)]
    pub delta: WireDelta,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One `data:` event of a streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
}

/// `POST /embeddings` as the client sends it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EmbeddingRequest<'a> {
    pub model: &'a str,
    pub input: &'a [String],
    pub encoding_format: &'static str,
}

/// One vector of an embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireEmbedding {
    #[serde(default)]
    pub object: String,
    pub index: usize,
    pub embedding: Vec<f32>,
}

/// The body of an embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EmbeddingResponse {
    #[serde(default)]
    pub object: String,
    pub data: Vec<WireEmbedding>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

impl From<&TokenLogprob> for WireTokenLogprob {
    fn from(t: &TokenLogprob) -> Self {
        Self {
            token: t.token.clone(),
            logprob: t.logprob,
            bytes: Some(t.token.as_bytes().to_vec()),
            top_logprobs: t
                .top_logprobs
                .iter()
                .map(|a| WireTopLogprob { token: a.token.clone(), logprob: a.logprob, bytes: Some(a.token.as_bytes().to_vec()) })
                .collect(),
        }
    }
}

impl From<WireTokenLogprob> for TokenLogprob {
    fn from(t: WireTokenLogprob) -> Self {
        Self {
            token: t.token,
            logprob: t.logprob,
            top_logprobs: t.top_logprobs.into_iter().map(|a| TopLogprob { token: a.token, logprob: a.logprob }).collect(),
        }
    }
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        Self { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.prompt_tokens + u.completion_tokens }
    }
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }
    }
}

/// The wire name of a finish reason.
pub(crate) fn finish_reason_str(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// A wire finish reason read back; anything but `length` counts as a stop.
pub(crate) fn parse_finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// The non-streaming response body for a completion.
pub(crate) fn response_from_completion(id: String, created: u64, model: &str, completion: &Completion) -> ChatResponse {
    ChatResponse {
        id,
        object: "chat.completion".into(),
        created,
        model: model.to_string(),
        choices: vec![WireChoice {
            index: 0,
            message: WireAnswer { role: "assistant".into(), content: Some(completion.text.clone()) },
            logprobs: completion.logprobs.as_ref().map(|l| WireLogprobs { content: Some(l.iter().map(WireTokenLogprob::from).collect()) }),
            finish_reason: Some(finish_reason_str(completion.finish_reason).into()),
        }],
        usage: Some(completion.usage.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_round_trips_through_the_wire_shape() {
        let completion = Completion {
            text: "8".into(),
            logprobs: Some(vec![TokenLogprob {
                token: "8".into(),
                logprob: -0.25,
                top_logprobs: vec![TopLogprob { token: "8".into(), logprob: -0.25 }, TopLogprob { token: "7".into(), logprob: -1.5 }],
            }]),
            finish_reason: FinishReason::Length,
            usage: Usage { prompt_tokens: 5, completion_tokens: 1 },
        };
        let body = response_from_completion("id".into(), 1, "m", &completion);
        let json = serde_json::to_string(&body).expect("serialize");
        let back: ChatResponse = serde_json::from_str(&json).expect("deserialize");
        let choice = &back.choices[0];
        assert_eq!(choice.message.content.as_deref(), Some("8"));
        assert_eq!(parse_finish_reason(choice.finish_reason.as_deref()), FinishReason::Length);
        let logprobs: Vec<TokenLogprob> =
            choice.logprobs.clone().and_then(|l| l.content).expect("logprobs").into_iter().map(TokenLogprob::from).collect();
        assert_eq!(Some(logprobs), completion.logprobs);
        assert_eq!(back.usage.map(|u| u.total_tokens), Some(6));
    }
}
