//! A deterministic [`Llm`] that answers from a script, for tests of metrics, runners and
//! training callbacks that must not depend on a real model.

use std::collections::VecDeque;
use std::sync::Mutex;

use llm_api::{Completion, CompletionOptions, FinishReason, Llm, Message, TokenLogprob, TopLogprob, Usage};

type Responder = dyn Fn(&[Message], &CompletionOptions) -> llm_api::Result<Completion> + Send + Sync;

/// Answers either from a queue (in call order) or from a function of the request; records
/// every call.
pub struct ScriptedLlm {
    name: String,
    queue: Mutex<VecDeque<llm_api::Result<Completion>>>,
    responder: Option<Box<Responder>>,
    calls: Mutex<Vec<(Vec<Message>, CompletionOptions)>>,
}

impl ScriptedLlm {
    /// Answers with `answers` in order; a call beyond the script fails with
    /// [`llm_api::Error::Model`].
    pub fn new(answers: Vec<llm_api::Result<Completion>>) -> Self {
        Self { name: "scripted".into(), queue: Mutex::new(answers.into()), responder: None, calls: Mutex::new(Vec::new()) }
    }

    /// Answers with plain texts in order.
    pub fn texts<S: Into<String>>(answers: impl IntoIterator<Item = S>) -> Self {
        Self::new(answers.into_iter().map(|t| Ok(text(t))).collect())
    }

    /// Answers with `f(messages, options)`; safe for concurrent callers.
    pub fn from_fn(f: impl Fn(&[Message], &CompletionOptions) -> llm_api::Result<Completion> + Send + Sync + 'static) -> Self {
        Self { name: "scripted".into(), queue: Mutex::new(VecDeque::new()), responder: Some(Box::new(f)), calls: Mutex::new(Vec::new()) }
    }

    /// Renames the model (as reports show it).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Every call so far: the messages and options.
    pub fn calls(&self) -> Vec<(Vec<Message>, CompletionOptions)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last user message of every call so far.
    pub fn prompts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|(m, _)| m.into_iter().rev().find(|m| m.role == llm_api::Role::User).map(|m| m.content))
            .collect()
    }
}

impl Llm for ScriptedLlm {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> llm_api::Result<Completion> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push((messages.to_vec(), options.clone()));
        if let Some(f) = &self.responder {
            return f(messages, options);
        }
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_else(|| Err(llm_api::Error::Model("the script has no more answers".into())))
    }
}

/// A completion of `text` without logprobs.
pub fn text(text: impl Into<String>) -> Completion {
    Completion { text: text.into(), logprobs: None, finish_reason: FinishReason::Stop, usage: Usage::default() }
}

/// A completion of the concatenated `tokens`, each `(token, [(alternative, probability)])`;
/// the generated token's logprob is its own alternative's, or ln 0.5 when it is not listed.
pub fn with_logprobs(tokens: &[(&str, &[(&str, f64)])]) -> Completion {
    let logprobs = tokens
        .iter()
        .map(|(token, alts)| TokenLogprob {
            token: (*token).to_string(),
            logprob: alts.iter().find(|(t, _)| t == token).map_or(0.5f64.ln(), |(_, p)| p.ln()) as f32,
            top_logprobs: alts.iter().map(|(t, p)| TopLogprob { token: (*t).to_string(), logprob: p.ln() as f32 }).collect(),
        })
        .collect();
    Completion {
        text: tokens.iter().map(|(t, _)| *t).collect(),
        logprobs: Some(logprobs),
        finish_reason: FinishReason::Stop,
        usage: Usage::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_then_exhaustion() {
        let llm = ScriptedLlm::texts(["a"]);
        let opts = CompletionOptions::default();
        assert_eq!(llm.complete(&[Message::user("1")], &opts).expect("first").text, "a");
        assert!(matches!(llm.complete(&[Message::user("2")], &opts), Err(llm_api::Error::Model(_))));
        assert_eq!(llm.prompts(), ["1", "2"]);
    }

    #[test]
    fn logprob_completion_concatenates_tokens() {
        let c = with_logprobs(&[("{\"score\": ", &[]), ("7", &[("7", 0.8), ("6", 0.2)]), ("}", &[])]);
        assert_eq!(c.text, "{\"score\": 7}");
        let l = c.logprobs.expect("logprobs");
        assert!((l[1].logprob - 0.8f64.ln() as f32).abs() < 1e-7);
        assert_eq!(l[1].top_logprobs.len(), 2);
    }
}
