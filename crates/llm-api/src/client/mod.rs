//! A blocking client for any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp's server,
//! Ollama, or kindling's own [`crate::server`]).

mod retry;
mod stream;

use std::io::ErrorKind;
use std::time::Duration;

use ureq::Agent;
use ureq::http::Response;

pub use retry::RetryPolicy;

use crate::json_answer::truncate;
use crate::wire::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ResponseFormat, StreamOptions, WireMessage, parse_finish_reason,
};
use crate::{Completion, CompletionOptions, Embedder, Error, Llm, Message, Result, TokenLogprob};

/// Longest error body kept in an [`Error::Http`] (in characters).
const MAX_ERROR_BODY: usize = 2000;

/// Where and how to reach an OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// The API base, as the OpenAI SDKs take it: `https://api.openai.com/v1`,
    /// `http://127.0.0.1:8080/v1`. Endpoint paths (`/chat/completions`) are appended.
    pub base_url: String,
    /// The model id sent with every chat request.
    pub model: String,
    /// The model id for `/embeddings` (defaults to [`OpenAiConfig::model`]).
    pub embedding_model: Option<String>,
    /// The NAME of the environment variable holding the API key; when the variable is unset
    /// or empty, no `Authorization` header is sent.
    pub api_key_env: String,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest wait for any single read (the response head, or the next piece of a body).
    pub read_timeout: Duration,
    /// Retries on 429, 5xx, timeouts and dropped connections.
    pub retry: RetryPolicy,
}

impl OpenAiConfig {
    /// A configuration with default key variable (`OPENAI_API_KEY`), timeouts (10 s connect,
    /// 120 s read) and retries (3).
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            embedding_model: None,
            api_key_env: "OPENAI_API_KEY".into(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
        }
    }

    /// Reads the API key from the variable named `name` instead.
    pub fn with_api_key_env(mut self, name: impl Into<String>) -> Self {
        self.api_key_env = name.into();
        self
    }

    /// Sets the connect and per-read timeouts.
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Uses another model id for embeddings.
    pub fn with_embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }
}

/// An [`Llm`] and [`Embedder`] over HTTP. Cheap to share across threads.
pub struct OpenAiClient {
    config: OpenAiConfig,
    base: String,
    api_key: Option<String>,
    agent: Agent,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient").field("config", &self.config).field("api_key", &self.api_key.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl OpenAiClient {
    /// Builds a client; reads the API key variable once, now.
    ///
    /// # Errors
    /// [`Error::Config`] when the base URL is not `http://` or `https://`, or the model is empty.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!("base_url `{}` must start with http:// or https://", config.base_url)));
        }
        if config.model.trim().is_empty() {
            return Err(Error::Config("model must not be empty".into()));
        }
        let api_key = std::env::var(&config.api_key_env).ok().filter(|k| !k.trim().is_empty());
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .timeout_recv_response(Some(config.read_timeout))
            .build()
            .new_agent();
        Ok(Self { config, base, api_key, agent })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Whether an API key was found in the configured variable.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// The model ids the endpoint lists at `GET /models` (one attempt, no retries).
    ///
    /// # Errors
    /// [`Error::Http`], [`Error::Timeout`] or [`Error::Transport`] when the call fails;
    /// [`Error::Malformed`] when the answer is not a model list.
    pub fn list_models(&self) -> Result<Vec<String>> {
        let url = self.url("/models");
        let mut request = self.agent.get(&url);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request.call().map_err(|e| self.transport_error(&url, e).0)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| self.transport_error(&url, e).0)?;
        if !(200..300).contains(&status) {
            return Err(Error::Http { url, status, body: truncate(&text, MAX_ERROR_BODY) });
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct List {
            data: Vec<Entry>,
        }
        let list: List = serde_json::from_str(&text).map_err(|e| Error::Malformed {
            what: format!("model list from {url}"),
            detail: e.to_string(),
            answer: truncate(&text, MAX_ERROR_BODY),
        })?;
        Ok(list.data.into_iter().map(|e| e.id).collect())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs `body` to `path`, retrying as the policy says; returns a 2xx response.
    fn post(&self, path: &str, body: &[u8]) -> Result<Response<ureq::Body>> {
        let url = self.url(path);
        let policy = &self.config.retry;
        let mut attempt = 0u32;
        loop {
            let mut request = self.agent.post(&url).header("Content-Type", "application/json");
            if let Some(key) = &self.api_key {
                request = request.header("Authorization", format!("Bearer {key}"));
            }
            let (error, retry_after) = match request.send(body) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(response);
                    }
                    let retry_after = retry_after_header(&response);
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let error = Error::Http { url: url.clone(), status, body: truncate(&text, MAX_ERROR_BODY) };
                    if !retry::is_retryable_status(status) {
                        return Err(error);
                    }
                    (error, retry_after)
                }
                Err(e) => {
                    let (error, retryable) = self.transport_error(&url, e);
                    if !retryable {
                        return Err(error);
                    }
                    (error, None)
                }
            };
            if attempt >= policy.max_retries {
                return Err(error);
            }
            let delay = policy.next_delay(attempt, retry_after);
            tracing::warn!(%url, attempt = attempt + 1, ?delay, %error, "retrying");
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// Maps a transport failure to an error and whether it is worth retrying.
    fn transport_error(&self, url: &str, e: ureq::Error) -> (Error, bool) {
        match e {
            ureq::Error::Timeout(which) => {
                let seconds = match which {
                    ureq::Timeout::Connect | ureq::Timeout::Resolve => self.config.connect_timeout,
                    _ => self.config.read_timeout,
                }
                .as_secs_f64();
                (Error::Timeout { url: url.to_string(), seconds }, true)
            }
            ureq::Error::Io(io) => self.io_error(url, &io),
            other => (Error::Transport { url: url.to_string(), message: other.to_string() }, false),
        }
    }

    /// Maps an I/O failure (also inside a body read) to an error and whether to retry.
    fn io_error(&self, url: &str, io: &std::io::Error) -> (Error, bool) {
        match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                (Error::Timeout { url: url.to_string(), seconds: self.config.read_timeout.as_secs_f64() }, true)
            }
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe => {
                (Error::Transport { url: url.to_string(), message: io.to_string() }, true)
            }
            _ => (Error::Transport { url: url.to_string(), message: io.to_string() }, false),
        }
    }

    fn chat_request<'a>(&'a self, messages: &'a [Message], options: &'a CompletionOptions, stream: bool) -> Result<Vec<u8>> {
        if messages.is_empty() {
            return Err(Error::InvalidRequest("`messages` must not be empty".into()));
        }
        let request = ChatRequest {
            model: &self.config.model,
            messages: messages.iter().map(|m| WireMessage { role: m.role.as_str(), content: &m.content }).collect(),
            max_tokens: options.max_tokens,
            temperature: options.temperature,
            top_p: options.top_p,
            seed: options.seed,
            stop: &options.stop,
            logprobs: options.top_logprobs.map(|_| true),
            top_logprobs: options.top_logprobs,
            response_format: match &options.json_schema {
                Some(schema) => Some(ResponseFormat {
                    kind: "json_schema",
                    json_schema: Some(serde_json::json!({"name": "answer", "strict": true, "schema": schema})),
                }),
                None => options.json_mode.then_some(ResponseFormat { kind: "json_object", json_schema: None }),
            },
            stream,
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
        };
        serde_json::to_vec(&request).map_err(|e| Error::InvalidRequest(format!("cannot encode request: {e}")))
    }
}

/// The `Retry-After` header in whole seconds, when present and numeric.
fn retry_after_header(response: &Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

impl Llm for OpenAiClient {
    fn name(&self) -> String {
        self.config.model.clone()
    }

    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> Result<Completion> {
        let body = self.chat_request(messages, options, false)?;
        let url = self.url("/chat/completions");
        let mut response = self.post("/chat/completions", &body)?;
        let text = response.body_mut().with_config().limit(64 * 1024 * 1024).read_to_string().map_err(|e| match e {
            ureq::Error::Io(io) => self.io_error(&url, &io).0,
            other => self.transport_error(&url, other).0,
        })?;
        let parsed: ChatResponse = serde_json::from_str(&text).map_err(|e| Error::Malformed {
            what: format!("chat completion response from {url}"),
            detail: e.to_string(),
            answer: truncate(&text, MAX_ERROR_BODY),
        })?;
        let choice = parsed.choices.into_iter().next().ok_or_else(|| Error::Malformed {
            what: format!("chat completion response from {url}"),
            detail: "`choices` is empty".into(),
            answer: truncate(&text, MAX_ERROR_BODY),
        })?;
        let logprobs = match options.top_logprobs {
            Some(_) => choice.logprobs.and_then(|l| l.content).map(|c| c.into_iter().map(TokenLogprob::from).collect()),
            None => None,
        };
        Ok(Completion {
            text: choice.message.content.unwrap_or_default(),
            logprobs,
            finish_reason: parse_finish_reason(choice.finish_reason.as_deref()),
            usage: parsed.usage.map(Into::into).unwrap_or_default(),
        })
    }

    fn complete_streaming(
        &self,
        messages: &[Message],
        options: &CompletionOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let body = self.chat_request(messages, options, true)?;
        let url = self.url("/chat/completions");
        let response = self.post("/chat/completions", &body)?;
        stream::read_chat_stream(response.into_body().into_reader(), &url, options, on_text, |io| self.io_error(&url, io).0)
    }
}

impl Embedder for OpenAiClient {
    fn name(&self) -> String {
        self.config.embedding_model.clone().unwrap_or_else(|| self.config.model.clone())
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = Embedder::name(self);
        let request = EmbeddingRequest { model: &model, input: texts, encoding_format: "float" };
        let body = serde_json::to_vec(&request).map_err(|e| Error::InvalidRequest(format!("cannot encode request: {e}")))?;
        let url = self.url("/embeddings");
        let mut response = self.post("/embeddings", &body)?;
        let text = response.body_mut().with_config().limit(256 * 1024 * 1024).read_to_string().map_err(|e| match e {
            ureq::Error::Io(io) => self.io_error(&url, &io).0,
            other => self.transport_error(&url, other).0,
        })?;
        let malformed = |detail: String| Error::Malformed {
            what: format!("embeddings response from {url}"),
            detail,
            answer: truncate(&text, MAX_ERROR_BODY),
        };
        let mut parsed: EmbeddingResponse = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        if parsed.data.len() != texts.len() {
            return Err(malformed(format!("{} vectors for {} inputs", parsed.data.len(), texts.len())));
        }
        parsed.data.sort_by_key(|d| d.index);
        let dim = parsed.data[0].embedding.len();
        for (i, d) in parsed.data.iter().enumerate() {
            if d.index != i {
                return Err(malformed(format!("`data[{i}].index` is {}, expected {i}", d.index)));
            }
            if d.embedding.len() != dim {
                return Err(malformed(format!("`data[{i}].embedding` has {} values, expected {dim}", d.embedding.len())));
            }
        }
        Ok(parsed.data.into_iter().map(|d| d.embedding).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_base_url_without_scheme() {
        let err = OpenAiClient::new(OpenAiConfig::new("localhost:8080/v1", "m")).expect_err("bad url");
        assert!(err.to_string().contains("base_url `localhost:8080/v1`"), "{err}");
    }

    #[test]
    fn api_key_comes_only_from_the_named_variable() {
        let config = OpenAiConfig::new("http://127.0.0.1:1/v1", "m").with_api_key_env("KINDLING_TEST_SURELY_UNSET_KEY_VAR");
        let client = OpenAiClient::new(config).expect("client");
        assert!(!client.has_api_key());
        // PATH is always set: naming it as the key variable makes it the key.
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:1/v1", "m").with_api_key_env("PATH")).expect("client");
        assert!(client.has_api_key());
        assert!(!format!("{client:?}").contains(&std::env::var("PATH").unwrap_or_default()));
    }

    #[test]
    fn empty_messages_are_refused_before_any_call() {
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:1/v1", "m")).expect("client");
        let err = client.complete(&[], &CompletionOptions::default()).expect_err("empty");
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    }

    #[test]
    fn request_body_carries_every_option() {
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:1/v1", "judge")).expect("client");
        let options = CompletionOptions {
            max_tokens: 7,
            temperature: 0.5,
            top_p: 0.9,
            seed: Some(3),
            stop: vec!["\n\n".into()],
            top_logprobs: Some(5),
            json_mode: true,
            json_schema: None,
        };
        let body = client.chat_request(&[Message::user("hi")], &options, true).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["model"], "judge");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["max_tokens"], 7);
        assert_eq!(v["seed"], 3);
        assert_eq!(v["stop"][0], "\n\n");
        assert_eq!(v["logprobs"], true);
        assert_eq!(v["top_logprobs"], 5);
        assert_eq!(v["response_format"]["type"], "json_object");
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);

        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}}});
        let options = CompletionOptions { json_schema: Some(schema.clone()), ..options };
        let body = client.chat_request(&[Message::user("hi")], &options, false).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["response_format"]["type"], "json_schema");
        assert_eq!(v["response_format"]["json_schema"]["schema"], schema);
        assert_eq!(v["response_format"]["json_schema"]["strict"], true);
    }
}
