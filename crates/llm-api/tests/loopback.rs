//! The OpenAI client against the OpenAI server over loopback, with a scripted model, plus a
//! few hand-made endpoints for the statuses a real model does not produce (429, garbage).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llm_api::{
    Completion, CompletionOptions, Embedder, Error, FinishReason, Llm, Message, OpenAiClient, OpenAiConfig, RetryPolicy, ServerConfig,
    ServerHandle, TokenLogprob, TopLogprob, Usage, parse_json_answer, spawn_server,
};

type Behaviour = dyn Fn(usize, &[Message], &CompletionOptions) -> llm_api::Result<Completion> + Send + Sync;

/// A model whose answers are a function of the call number and the request.
struct Scripted {
    calls: AtomicUsize,
    last: Mutex<Option<(Vec<Message>, CompletionOptions)>>,
    behaviour: Box<Behaviour>,
}

impl Scripted {
    fn new(behaviour: impl Fn(usize, &[Message], &CompletionOptions) -> llm_api::Result<Completion> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { calls: AtomicUsize::new(0), last: Mutex::new(None), behaviour: Box::new(behaviour) })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> (Vec<Message>, CompletionOptions) {
        self.last.lock().expect("lock").clone().expect("the model was called")
    }
}

impl Llm for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn complete(&self, messages: &[Message], options: &CompletionOptions) -> llm_api::Result<Completion> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().expect("lock") = Some((messages.to_vec(), options.clone()));
        (self.behaviour)(n, messages, options)
    }

    /// Emits the answer in pieces of at most 4 characters.
    fn complete_streaming(
        &self,
        messages: &[Message],
        options: &CompletionOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> llm_api::Result<Completion> {
        let completion = self.complete(messages, options)?;
        let chars: Vec<char> = completion.text.chars().collect();
        for piece in chars.chunks(4) {
            if !on_text(&piece.iter().collect::<String>()) {
                break;
            }
        }
        Ok(completion)
    }
}

struct FixedEmbedder;

impl Embedder for FixedEmbedder {
    fn name(&self) -> String {
        "fixed".into()
    }
    fn embed(&self, texts: &[String]) -> llm_api::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0, -1.0]).collect())
    }
}

fn answer(text: &str) -> Completion {
    Completion {
        text: text.into(),
        logprobs: None,
        finish_reason: FinishReason::Stop,
        usage: Usage { prompt_tokens: 4, completion_tokens: 2 },
    }
}

/// An answer with one logprob entry per character, each with two alternatives.
fn answer_with_logprobs(text: &str) -> Completion {
    let logprobs = text
        .chars()
        .map(|c| TokenLogprob {
            token: c.to_string(),
            logprob: -0.1,
            top_logprobs: vec![TopLogprob { token: c.to_string(), logprob: -0.1 }, TopLogprob { token: "?".into(), logprob: -2.5 }],
        })
        .collect();
    Completion { logprobs: Some(logprobs), ..answer(text) }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn start(llm: Arc<Scripted>) -> ServerHandle {
    let config = ServerConfig::new(llm, "scripted-model").with_embedder(Arc::new(FixedEmbedder));
    spawn_server(config, loopback()).expect("server starts")
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy { max_retries, initial_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(50), jitter: 0.5 }
}

fn client_for(base_url: &str, retries: u32) -> OpenAiClient {
    let config =
        OpenAiConfig::new(base_url, "scripted-model").with_api_key_env("KINDLING_TEST_NO_SUCH_KEY_VAR").with_retry(fast_retries(retries));
    OpenAiClient::new(config).expect("client")
}

#[test]
fn completion_with_logprobs_and_every_option_passes_through() {
    let llm = Scripted::new(|_, _, _| Ok(answer_with_logprobs("Paris")));
    let server = start(llm.clone());
    let client = client_for(&server.base_url(), 0);
    let options = CompletionOptions {
        max_tokens: 17,
        temperature: 0.3,
        top_p: 0.8,
        seed: Some(11),
        stop: vec!["###".into()],
        top_logprobs: Some(2),
        json_mode: true,
        json_schema: Some(serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})),
    };
    let messages = [Message::system("be brief"), Message::user("Capital of France?")];
    let completion = client.complete(&messages, &options).expect("completion");
    assert_eq!(completion.text, "Paris");
    assert_eq!(completion.usage, Usage { prompt_tokens: 4, completion_tokens: 2 });
    assert_eq!(completion.logprobs, answer_with_logprobs("Paris").logprobs);
    let (seen_messages, seen_options) = llm.last();
    assert_eq!(seen_messages, messages);
    assert_eq!(seen_options, options);
    server.shutdown().expect("clean shutdown");
}

#[test]
fn logprobs_are_left_out_unless_asked_for() {
    let llm = Scripted::new(|_, _, _| Ok(answer_with_logprobs("ok")));
    let server = start(llm.clone());
    let client = client_for(&server.base_url(), 0);
    let completion = client.complete(&[Message::user("q")], &CompletionOptions::default()).expect("completion");
    assert_eq!(completion.logprobs, None);
    assert_eq!(llm.last().1.top_logprobs, None);
}

#[test]
fn streaming_delivers_pieces_and_logprobs() {
    let llm = Scripted::new(|_, _, _| Ok(answer_with_logprobs("Hello, streaming world")));
    let server = start(llm);
    let client = client_for(&server.base_url(), 0);
    let mut pieces = Vec::new();
    let options = CompletionOptions { top_logprobs: Some(2), ..CompletionOptions::default() };
    let completion = client
        .complete_streaming(&[Message::user("hi")], &options, &mut |p| {
            pieces.push(p.to_string());
            true
        })
        .expect("stream");
    assert_eq!(pieces, ["Hell", "o, s", "trea", "ming", " wor", "ld"]);
    assert_eq!(completion.text, "Hello, streaming world");
    assert_eq!(completion.logprobs, answer_with_logprobs("Hello, streaming world").logprobs);
    assert_eq!(completion.usage, Usage { prompt_tokens: 4, completion_tokens: 2 });
}

#[test]
fn a_model_error_mid_stream_reaches_the_client() {
    let llm = Scripted::new(|_, _, _| Err(Error::Model("out of memory".into())));
    let server = start(llm);
    let client = client_for(&server.base_url(), 0);
    let err = client.complete_streaming(&[Message::user("hi")], &CompletionOptions::default(), &mut |_| true).expect_err("stream fails");
    assert!(err.to_string().contains("out of memory"), "{err}");
}

#[test]
fn models_and_embeddings() {
    let server = start(Scripted::new(|_, _, _| Ok(answer("x"))));
    let client = client_for(&server.base_url(), 0);
    assert_eq!(client.list_models().expect("models"), ["scripted-model"]);
    let vectors = client.embed(&["ab".to_string(), "abcd".to_string()]).expect("embeddings");
    assert_eq!(vectors, vec![vec![2.0, 1.0, -1.0], vec![4.0, 1.0, -1.0]]);
}

#[test]
fn a_500_then_success_is_retried() {
    let llm = Scripted::new(|n, _, _| if n == 0 { Err(Error::Model("transient".into())) } else { Ok(answer("second try")) });
    let server = start(llm.clone());
    let completion = client_for(&server.base_url(), 2).complete(&[Message::user("q")], &CompletionOptions::default()).expect("retried");
    assert_eq!(completion.text, "second try");
    assert_eq!(llm.calls(), 2);
}

#[test]
fn persistent_500_gives_up_after_the_retry_budget() {
    let llm = Scripted::new(|_, _, _| Err(Error::Model("broken".into())));
    let server = start(llm.clone());
    let err = client_for(&server.base_url(), 2).complete(&[Message::user("q")], &CompletionOptions::default()).expect_err("gives up");
    match err {
        Error::Http { status, body, .. } => {
            assert_eq!(status, 500);
            assert!(body.contains("broken"), "{body}");
        }
        other => panic!("expected Http 500, got {other:?}"),
    }
    assert_eq!(llm.calls(), 3, "one attempt plus two retries");
}

#[test]
fn a_bad_request_fails_at_once_and_names_the_field() {
    let llm = Scripted::new(|_, _, _| Ok(answer("never")));
    let server = start(llm.clone());
    let options = CompletionOptions { temperature: 7.5, ..CompletionOptions::default() };
    let err = client_for(&server.base_url(), 3).complete(&[Message::user("q")], &options).expect_err("400");
    match &err {
        Error::Http { status, body, .. } => {
            assert_eq!(*status, 400);
            let v: serde_json::Value = serde_json::from_str(body).expect("OpenAI error JSON");
            assert_eq!(v["error"]["param"], "temperature");
            assert_eq!(v["error"]["type"], "invalid_request_error");
        }
        other => panic!("expected Http 400, got {other:?}"),
    }
    assert_eq!(llm.calls(), 0);
}

#[test]
fn a_slow_model_times_out_after_retries() {
    let llm = Scripted::new(|_, _, _| {
        std::thread::sleep(Duration::from_millis(1500));
        Ok(answer("too late"))
    });
    let server = start(llm.clone());
    let config = OpenAiConfig::new(server.base_url(), "scripted-model")
        .with_timeouts(Duration::from_secs(2), Duration::from_millis(200))
        .with_retry(fast_retries(1));
    let err =
        OpenAiClient::new(config).expect("client").complete(&[Message::user("q")], &CompletionOptions::default()).expect_err("timeout");
    match err {
        Error::Timeout { seconds, .. } => assert!((seconds - 0.2).abs() < 1e-9, "{seconds}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // Both attempts reached the model; wait for the second one to be registered.
    for _ in 0..200 {
        if llm.calls() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(llm.calls(), 2, "the timed-out call was retried once");
}

#[test]
fn a_malformed_judge_answer_is_reported_with_its_text() {
    let server = start(Scripted::new(|_, _, _| Ok(answer("I think the score is seven."))));
    let completion = client_for(&server.base_url(), 0)
        .complete(&[Message::user("q")], &CompletionOptions { json_mode: true, ..Default::default() })
        .expect("completion");
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Score {
        score: f64,
    }
    match parse_json_answer::<Score>(&completion.text) {
        Err(Error::Malformed { answer, .. }) => assert_eq!(answer, "I think the score is seven."),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn shutdown_stops_the_server() {
    let server = start(Scripted::new(|_, _, _| Ok(answer("x"))));
    let url = server.base_url();
    server.shutdown().expect("clean shutdown");
    let err = client_for(&url, 0).complete(&[Message::user("q")], &CompletionOptions::default()).expect_err("down");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}

mod scripted_http {
    //! Endpoints that answer with a fixed script of statuses.
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    /// Serves `router` on a loopback port from a background runtime; returns `http://ADDR/v1`.
    fn serve_router(router: Router) -> String {
        let listener = std::net::TcpListener::bind(loopback()).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, router).await.expect("serve");
            });
        });
        format!("http://{addr}/v1")
    }

    const OK_BODY: &str = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}]}"#;

    /// Answers `statuses[i]` to the i-th request (200 with a valid body once the list runs out).
    fn scripted(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let counter = counter.clone();
                let statuses = statuses.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    match statuses.get(n) {
                        Some(&s) => (
                            StatusCode::from_u16(s).expect("status"),
                            [("retry-after", "0")],
                            format!("{{\"error\":{{\"message\":\"scripted {s}\"}}}}"),
                        ),
                        None => (StatusCode::OK, [("retry-after", "0")], OK_BODY.to_string()),
                    }
                }
            }),
        );
        (serve_router(router), hits)
    }

    #[test]
    fn rate_limits_are_retried_with_backoff() {
        let (url, hits) = scripted(vec![429, 429]);
        let completion = client_for(&url, 3).complete(&[Message::user("q")], &CompletionOptions::default()).expect("ok");
        assert_eq!(completion.text, "fine");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn rate_limits_beyond_the_budget_fail_with_429() {
        let (url, hits) = scripted(vec![429, 429, 429]);
        let err = client_for(&url, 1).complete(&[Message::user("q")], &CompletionOptions::default()).expect_err("429");
        assert!(matches!(err, Error::Http { status: 429, .. }), "{err:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn client_errors_are_not_retried() {
        for status in [400, 401, 404, 422] {
            let (url, hits) = scripted(vec![status]);
            let err = client_for(&url, 3).complete(&[Message::user("q")], &CompletionOptions::default()).expect_err("4xx");
            match err {
                Error::Http { status: s, body, .. } => {
                    assert_eq!(s, status);
                    assert!(body.contains(&format!("scripted {status}")), "{body}");
                }
                other => panic!("expected Http {status}, got {other:?}"),
            }
            assert_eq!(hits.load(Ordering::SeqCst), 1, "status {status} must not be retried");
        }
    }

    #[test]
    fn a_garbage_success_body_is_malformed() {
        let router = Router::new().route("/v1/chat/completions", post(|| async { "<html>proxy error</html>" }));
        let url = serve_router(router);
        let err = client_for(&url, 0).complete(&[Message::user("q")], &CompletionOptions::default()).expect_err("garbage");
        match err {
            Error::Malformed { answer, .. } => assert_eq!(answer, "<html>proxy error</html>"),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn the_api_key_is_sent_only_when_its_variable_is_set() {
        let router = Router::new().route(
            "/v1/chat/completions",
            post(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
                OK_BODY.replace("fine", &auth.replace('\\', "\\\\").replace('"', "\\\""))
            }),
        );
        let url = serve_router(router);
        // Cargo sets CARGO_MANIFEST_DIR for test processes: use it as a known "key" variable.
        let with_key = OpenAiClient::new(OpenAiConfig::new(&url, "m").with_api_key_env("CARGO_MANIFEST_DIR")).expect("client");
        let text = with_key.complete(&[Message::user("q")], &CompletionOptions::default()).expect("ok").text;
        assert_eq!(text, format!("Bearer {}", env!("CARGO_MANIFEST_DIR")));
        let without = client_for(&url, 0);
        let text = without.complete(&[Message::user("q")], &CompletionOptions::default()).expect("ok").text;
        assert_eq!(text, "none");
    }
}
