//! Which model a recipe talks to: the `--llm`, `--judge`, `--model` and `--embedder` specs.
//!
//! A spec is `local:PATH` — a model folder, a `.gguf` file, `asset:REL` or a hub id, run in
//! this process — or `openai:URL[#MODEL]` — any OpenAI-compatible endpoint (`URL` is the API
//! base, e.g. `http://127.0.0.1:8080/v1`), with the API key read from an environment variable.
//! Without `#MODEL` the endpoint is asked for its models and must serve exactly one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use llm_api::{Completion, CompletionOptions, Embedder, Llm, Message, OpenAiClient, OpenAiConfig};

use crate::backend::Backend;
use crate::generate::open_chat;

/// A model reference from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmSpec {
    /// A model run in this process (path, `.gguf`, `asset:REL` or hub id).
    Local(String),
    /// An OpenAI-compatible endpoint.
    OpenAi {
        /// The API base URL (`.../v1`).
        base_url: String,
        /// The model id, when given after `#`.
        model: Option<String>,
    },
}

impl LlmSpec {
    /// Parses `local:PATH` or `openai:URL[#MODEL]`.
    ///
    /// # Errors
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("local:") {
            if path.trim().is_empty() {
                bail!("`{text}`: `local:` needs a model path, `asset:REL` or hub id after it");
            }
            return Ok(LlmSpec::Local(path.trim().to_string()));
        }
        if let Some(rest) = text.strip_prefix("openai:") {
            let (url, model) = match rest.rsplit_once('#') {
                Some((url, model)) => (url, Some(model.trim())),
                None => (rest, None),
            };
            let url = url.trim().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("`{text}`: the URL after `openai:` must start with http:// or https://");
            }
            if model.is_some_and(str::is_empty) {
                bail!("`{text}`: nothing after `#`; write openai:URL#MODEL or leave `#` out");
            }
            return Ok(LlmSpec::OpenAi { base_url: url.to_string(), model: model.map(String::from) });
        }
        bail!("`{text}` is not a model spec: expected local:PATH or openai:URL[#MODEL]")
    }

    /// Parses `--model`: a spec, or a bare model reference (taken as local).
    ///
    /// # Errors
    /// As [`LlmSpec::parse`] for a malformed `local:`/`openai:` spec.
    pub fn parse_model(text: &str) -> Result<Self> {
        if text.starts_with("local:") || text.starts_with("openai:") { Self::parse(text) } else { Ok(LlmSpec::Local(text.to_string())) }
    }
}

impl std::fmt::Display for LlmSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmSpec::Local(path) => write!(f, "local:{path}"),
            LlmSpec::OpenAi { base_url, model: Some(m) } => write!(f, "openai:{base_url}#{m}"),
            LlmSpec::OpenAi { base_url, model: None } => write!(f, "openai:{base_url}"),
        }
    }
}

/// How to reach OpenAI-compatible endpoints (shared by every `openai:` spec of a command).
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The environment variable that holds the API key of `openai:` endpoints (no key is sent
    /// when it is unset or empty).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Longest wait, in seconds, for any read of an `openai:` endpoint's answer.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
    /// Retries of an `openai:` request after 429, 5xx, timeouts or dropped connections.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
}

impl Default for RemoteArgs {
    fn default() -> Self {
        Self { api_key_env: "OPENAI_API_KEY".into(), request_timeout: 600, retries: 2 }
    }
}

impl RemoteArgs {
    fn config(&self, base_url: &str, model: &str) -> OpenAiConfig {
        let retry = llm_api::RetryPolicy { max_retries: self.retries, ..llm_api::RetryPolicy::default() };
        OpenAiConfig::new(base_url, model)
            .with_api_key_env(&self.api_key_env)
            .with_timeouts(Duration::from_secs(10), Duration::from_secs(self.request_timeout.max(1)))
            .with_retry(retry)
    }

    /// A client for `base_url`; without a model id, the endpoint's only model.
    fn client(&self, base_url: &str, model: Option<&str>) -> Result<OpenAiClient> {
        let model = match model {
            Some(m) => m.to_string(),
            None => {
                let probe = OpenAiClient::new(self.config(base_url, "?"))?;
                let models = probe
                    .list_models()
                    .with_context(|| format!("asking {base_url} for its models (or name one: openai:{base_url}#MODEL)"))?;
                match models.as_slice() {
                    [one] => one.clone(),
                    [] => bail!("{base_url} lists no models: name one with openai:{base_url}#MODEL"),
                    many => bail!("{base_url} serves {} models ({}): name one with openai:{base_url}#MODEL", many.len(), many.join(", ")),
                }
            }
        };
        Ok(OpenAiClient::new(self.config(base_url, &model))?)
    }
}

/// What a local model needs besides its reference.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// A PEFT adapter folder to apply.
    pub adapter: Option<PathBuf>,
    /// Prompt format (`auto`, `raw`, `llama2`, ...); `auto` when `None`.
    pub template: Option<String>,
    /// A `tokenizer.json` to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
}

/// Opens the chat model a spec names.
///
/// # Errors
/// A local model that does not load, or an endpoint that cannot name its model.
pub fn open_llm(spec: &LlmSpec, local: &LocalOptions, remote: &RemoteArgs, backend: Backend) -> Result<Arc<dyn Llm>> {
    match spec {
        LlmSpec::Local(reference) => {
            let template = local.template.as_deref().unwrap_or("auto");
            let chat = open_chat(reference, local.adapter.as_deref(), template, local.tokenizer.clone(), backend)?;
            Ok(Arc::new(chat))
        }
        LlmSpec::OpenAi { base_url, model } => Ok(Arc::new(remote.client(base_url, model.as_deref())?)),
    }
}

/// Opens the sentence embedder a spec names: `local:DIR` is a sentence-transformers MiniLM
/// folder (or `asset:REL`), `openai:URL[#MODEL]` an endpoint's `/embeddings`.
///
/// # Errors
/// A folder that does not load, or an endpoint that cannot name its model.
pub fn open_embedder(spec: &LlmSpec, remote: &RemoteArgs, backend: Backend) -> Result<Arc<dyn Embedder>> {
    match spec {
        LlmSpec::Local(reference) => {
            let dir = assets::resolve(reference)?;
            let device = backend.device()?;
            let model = minilm::MiniLm::load(&dir, &device).with_context(|| format!("loading the sentence embedder {}", dir.display()))?;
            Ok(Arc::new(model))
        }
        LlmSpec::OpenAi { base_url, model } => Ok(Arc::new(remote.client(base_url, model.as_deref())?)),
    }
}

/// The tokenizer of a local model, read without loading its weights.
///
/// # Errors
/// A model reference that does not resolve or whose tokenizer does not load.
pub fn local_tokenizer(reference: &str, backend: Backend) -> Result<tokenizers::Tokenizer> {
    let path = assets::resolve(reference)?;
    let device = backend.device()?;
    let options = llama_model::OpenOptions::new(&device);
    let files = llama_model::pretrained::resolve(&path.to_string_lossy(), &options)
        .with_context(|| format!("reading the tokenizer of {reference}"))?;
    Ok(files.tokenizer.inner().clone())
}

/// Reads a `tokenizer.json`.
///
/// # Errors
/// A file that is missing or not a tokenizer, naming it.
pub fn tokenizer_file(path: &Path) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{}: not a tokenizer.json: {e}", path.display()))
}

/// A judge whose answers are bounded to `max_tokens` new tokens per call.
pub struct CappedLlm {
    inner: Arc<dyn Llm>,
    max_tokens: usize,
}

impl CappedLlm {
    /// Wraps `inner`, lowering every request's `max_tokens` to at most `max_tokens`.
    pub fn new(inner: Arc<dyn Llm>, max_tokens: usize) -> Self {
        Self { inner, max_tokens: max_tokens.max(1) }
    }

    fn capped(&self, options: &CompletionOptions) -> CompletionOptions {
        CompletionOptions { max_tokens: options.max_tokens.min(self.max_tokens), ..options.clone() }
    }
}

impl Llm for CappedLlm {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> llm_api::Result<Completion> {
        self.inner.complete(messages, &self.capped(options))
    }

    fn complete_streaming(
        &self,
        messages: &[Message],
        options: &CompletionOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> llm_api::Result<Completion> {
        self.inner.complete_streaming(messages, &self.capped(options), on_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_openai_specs_parse() {
        assert_eq!(LlmSpec::parse("local:asset:m/x.gguf").expect("local"), LlmSpec::Local("asset:m/x.gguf".into()));
        assert_eq!(
            LlmSpec::parse("openai:http://127.0.0.1:8080/v1/").expect("openai"),
            LlmSpec::OpenAi { base_url: "http://127.0.0.1:8080/v1".into(), model: None }
        );
        assert_eq!(
            LlmSpec::parse("openai:https://api.example.com/v1#gpt-x").expect("with model"),
            LlmSpec::OpenAi { base_url: "https://api.example.com/v1".into(), model: Some("gpt-x".into()) }
        );
        assert_eq!(LlmSpec::parse_model("HuggingFaceTB/SmolLM2").expect("bare"), LlmSpec::Local("HuggingFaceTB/SmolLM2".into()));
        assert_eq!(LlmSpec::parse("openai:http://h/v1#m").expect("round trip").to_string(), "openai:http://h/v1#m");
    }

    #[test]
    fn malformed_specs_say_what_is_expected() {
        for (text, needle) in [
            ("gpt-4", "expected local:PATH or openai:URL[#MODEL]"),
            ("local:", "needs a model path"),
            ("openai:127.0.0.1:8080", "must start with http://"),
            ("openai:http://h/v1#", "nothing after `#`"),
        ] {
            let err = LlmSpec::parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(LlmSpec::parse_model("openai:ftp://x").is_err());
    }

    #[test]
    fn the_cap_lowers_but_never_raises_max_tokens() {
        let inner = Arc::new(eval::testing::ScriptedLlm::texts(["a", "b"]));
        let capped = CappedLlm::new(inner.clone(), 40);
        let ask = |max_tokens| CompletionOptions { max_tokens, ..CompletionOptions::default() };
        capped.complete(&[Message::user("q")], &ask(1024)).expect("first");
        capped.complete(&[Message::user("q")], &ask(16)).expect("second");
        let seen: Vec<usize> = inner.calls().iter().map(|(_, o)| o.max_tokens).collect();
        assert_eq!(seen, vec![40, 16]);
    }
}
