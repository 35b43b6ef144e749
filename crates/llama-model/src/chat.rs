//! A loaded model as a chat model: messages → template → tokens → generation → text, with
//! stop sequences, streaming and logprobs; implements [`llm_api::Llm`].

use std::sync::{Arc, Mutex};

use llm_api::{Completion, CompletionOptions, FinishReason, Message, TokenLogprob, TopLogprob, Usage};
use prompt_templates::{ChatTemplate, RenderOptions, Renderer};

use crate::generate::{Finish, GenerateOptions, generate_constrained};
use crate::json_grammar::{JsonConstraint, PrefixConstraint};
use crate::json_schema::{CompiledSchema, SchemaPrefix};
use crate::pretrained::Pretrained;
use crate::sampling::SamplingConfig;
use crate::{Error, Result};

/// A model plus the template that turns messages into its prompt.
pub struct ChatModel {
    inner: Mutex<Pretrained>,
    token_bytes: std::sync::OnceLock<Vec<Option<Vec<u8>>>>,
    renderer: Option<Renderer>,
    options: RenderOptions,
    name: String,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel").field("name", &self.name).finish()
    }
}

impl ChatModel {
    /// Wraps a model; `template` is `auto` (the model's own template, else the raw prompt) or a
    /// built-in name (`llama2`, `llama3`, `chatml`, `alpaca`), or `raw`.
    ///
    /// # Errors
    /// An unknown template name, or a model template that does not compile.
    pub fn new(pretrained: Pretrained, template: &str, name: impl Into<String>) -> Result<Self> {
        let renderer = if template == "raw" {
            None
        } else {
            let own = pretrained.chat.template(None).ok().flatten().map(String::from);
            ChatTemplate::resolve(template, own)
                .and_then(|t| t.map(|t| t.prepare()).transpose())
                .map_err(|e| Error::Generation(format!("chat template: {e}")))?
        };
        let options = pretrained.chat.render_options().with_generation_prompt(true);
        Ok(Self { inner: Mutex::new(pretrained), token_bytes: std::sync::OnceLock::new(), renderer, options, name: name.into() })
    }

    /// The template in use (`None` = raw prompt).
    pub fn template_name(&self) -> Option<&str> {
        self.renderer.as_ref().map(|r| r.name())
    }

    /// The prompt token ids for a conversation.
    ///
    /// With a template, the rendered text is tokenized without adding specials (the template
    /// writes them). Without one, the message contents are joined and the model's BOS is
    /// prepended when the tokenizer does not add it itself.
    ///
    /// # Errors
    /// Rendering or tokenization failures.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let guard = self.lock()?;
        let tok = &guard.tokenizer;
        match &self.renderer {
            Some(r) => {
                let text = r.render(messages, &self.options).map_err(|e| Error::Generation(e.to_string()))?;
                tok.encode(&text, false)
            }
            None => {
                let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                tok.encode_raw(&text.join("\n"))
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Pretrained>> {
        self.inner.lock().map_err(|_| Error::Generation("the model lock is poisoned".into()))
    }

    /// Runs the model on a conversation, streaming text pieces to `on_text`.
    ///
    /// # Errors
    /// Prompt, generation or decoding failures.
    pub fn chat(&self, messages: &[Message], options: &CompletionOptions, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Completion> {
        let prompt = self.prompt_ids(messages)?;
        let guard = self.lock()?;
        let tok = &guard.tokenizer;
        let gen_options = GenerateOptions {
            max_new_tokens: options.max_tokens,
            sampling: SamplingConfig {
                temperature: options.temperature,
                top_k: None,
                top_p: options.top_p,
                seed: options.seed.unwrap_or(0),
            },
            stop_tokens: guard.stop_tokens(),
            use_cache: true,
            top_logprobs: options.top_logprobs.map(|k| k.max(1)),
            steps: crate::StepIssue::Auto,
        };
        let mut ids: Vec<u32> = Vec::new();
        let mut emitted = 0usize;
        let mut text = String::new();
        let mut stopped_by_string = false;
        let mut decode_error = None;
        // Structured output / JSON mode: every token keeps the answer a valid prefix of a
        // document of the schema, or of one JSON object.
        let schema = match &options.json_schema {
            Some(s) => Some(Arc::new(CompiledSchema::compile(s).map_err(|e| Error::Generation(format!("json_schema: {e}")))?)),
            None => None,
        };
        let mut structured =
            schema.map(|s| PrefixConstraint::with_prefix(SchemaPrefix::new(s), self.token_bytes.get_or_init(|| tok.token_bytes())));
        let mut json =
            (options.json_mode && structured.is_none()).then(|| JsonConstraint::new(self.token_bytes.get_or_init(|| tok.token_bytes())));
        let constraint: Option<&mut dyn crate::generate::Constraint> = match (&mut structured, &mut json) {
            (Some(c), _) => Some(c),
            (None, Some(c)) => Some(c),
            (None, None) => None,
        };
        let generated = generate_constrained(&guard.model, &prompt, &gen_options, constraint, |id| {
            ids.push(id);
            match tok.decode(&ids, true) {
                Ok(t) => text = t,
                Err(e) => {
                    decode_error = Some(e);
                    return false;
                }
            }
            if let Some(cut) = options.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(cut);
                stopped_by_string = true;
            }
            // Hold back an incomplete UTF-8 sequence and any text that may begin a stop string.
            let mut safe = text.trim_end_matches('\u{FFFD}').len();
            if !stopped_by_string {
                for s in &options.stop {
                    for k in (1..s.len()).rev() {
                        if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                            safe = safe.min(text.len() - k);
                        }
                    }
                }
            }
            let mut go_on = !stopped_by_string;
            if safe > emitted && text.is_char_boundary(safe) && text.is_char_boundary(emitted) {
                go_on &= on_text(&text[emitted..safe]);
                emitted = safe;
            }
            go_on
        })?;
        if let Some(e) = decode_error {
            return Err(e);
        }
        if emitted < text.len() && text.is_char_boundary(emitted) {
            on_text(&text[emitted..]);
        }
        let logprobs = options.top_logprobs.map(|k| {
            generated
                .logprobs
                .iter()
                .zip(&generated.tokens)
                .map(|(step, &id)| TokenLogprob {
                    token: tok.decode(&[id], false).unwrap_or_default(),
                    logprob: step.logprob,
                    top_logprobs: step
                        .top
                        .iter()
                        .take(k)
                        .map(|&(t, lp)| TopLogprob { token: tok.decode(&[t], false).unwrap_or_default(), logprob: lp })
                        .collect(),
                })
                .collect()
        });
        let finish_reason = match (generated.finish, stopped_by_string) {
            (_, true) | (Finish::Stop, _) => FinishReason::Stop,
            (Finish::Length, false) => FinishReason::Length,
        };
        Ok(Completion {
            text,
            logprobs,
            finish_reason,
            usage: Usage { prompt_tokens: prompt.len(), completion_tokens: generated.tokens.len() },
        })
    }
}

/// A schema outside the supported subset is the caller's error (HTTP 400), not the model's.
fn check_schema(options: &CompletionOptions) -> llm_api::Result<()> {
    match &options.json_schema {
        Some(s) => CompiledSchema::compile(s)
            .map(|_| ())
            .map_err(|e| llm_api::Error::InvalidRequest(format!("response_format.json_schema.schema: {e}"))),
        None => Ok(()),
    }
}

impl llm_api::Llm for ChatModel {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> llm_api::Result<Completion> {
        check_schema(options)?;
        self.chat(messages, options, &mut |_| true).map_err(|e| llm_api::Error::Model(e.to_string()))
    }

    fn complete_streaming(
        &self,
        messages: &[Message],
        options: &CompletionOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> llm_api::Result<Completion> {
        check_schema(options)?;
        self.chat(messages, options, on_text).map_err(|e| llm_api::Error::Model(e.to_string()))
    }
}
