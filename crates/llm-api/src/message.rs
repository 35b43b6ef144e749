//! Chat messages, completion options and completions, shaped like the OpenAI chat API.

use serde::{Deserialize, Serialize};

/// The author of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The user's turn.
    User,
    /// The model's turn.
    Assistant,
}

impl Role {
    /// The lowercase name used by chat templates and the OpenAI API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What was written.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into() }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into() }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: Role::Assistant, content: content.into() }
    }
}

/// How to sample a completion. Defaults match the OpenAI API's, except `max_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletionOptions {
    /// Most new tokens to generate.
    pub max_tokens: usize,
    /// Sampling temperature; `0.0` is greedy.
    pub temperature: f32,
    /// Nucleus sampling mass in `(0, 1]`.
    pub top_p: f32,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Stop sequences: generation ends before any of them would be emitted.
    pub stop: Vec<String>,
    /// When set, return this many top alternatives (0..=20) with each generated token's logprob.
    pub top_logprobs: Option<usize>,
    /// Ask for a JSON object answer (OpenAI's `response_format: {"type": "json_object"}`).
    pub json_mode: bool,
    /// Ask for a JSON answer matching this JSON Schema (OpenAI's structured outputs,
    /// `response_format: {"type": "json_schema", ...}`, strict); takes precedence over
    /// `json_mode`. Local models support a subset (see `llama_model::json_schema`).
    pub json_schema: Option<serde_json::Value>,
}

impl Default for CompletionOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            top_logprobs: None,
            json_mode: false,
            json_schema: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted an end token or a stop sequence.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// One alternative token and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// A generated token with its log-probability and the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The generated token's text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The top alternatives at this position, most likely first (includes the chosen token
    /// when it is among them).
    pub top_logprobs: Vec<TopLogprob>,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The generated text (stop sequences excluded).
    pub text: String,
    /// Per-token logprobs, when asked for and available.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
}
