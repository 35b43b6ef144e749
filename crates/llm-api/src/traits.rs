//! The two traits every model-facing pipeline talks through.

use crate::{Completion, CompletionOptions, Message, Result};

/// A chat model: messages in, a completion out.
///
/// Implementations are shared across threads (evaluators run metrics concurrently), so they
/// take `&self` and are `Send + Sync`; a local model serializes access internally.
pub trait Llm: Send + Sync {
    /// A short name for reports (a model id or path).
    fn name(&self) -> String;

    /// Completes the conversation.
    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> Result<Completion>;

    /// Completes the conversation, calling `on_text` with each new piece of text as it is
    /// generated; `on_text` returns `false` to stop early. The default calls [`Llm::complete`]
    /// and emits the whole text once.
    fn complete_streaming(
        &self,
        messages: &[Message],
        options: &CompletionOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let completion = self.complete(messages, options)?;
        on_text(&completion.text);
        Ok(completion)
    }
}

/// A sentence-embedding model.
pub trait Embedder: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> String;

    /// Embeds each text; every returned vector has the same length.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}

impl<T: Llm + ?Sized> Llm for std::sync::Arc<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> Result<Completion> {
        (**self).complete(messages, options)
    }
    fn complete_streaming(
        &self,
        messages: &[Message],
        options: &CompletionOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        (**self).complete_streaming(messages, options, on_text)
    }
}

impl<T: Embedder + ?Sized> Embedder for std::sync::Arc<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts)
    }
}
