//! The HTTP handlers: chat completions (JSON and SSE), models, embeddings, errors.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;

use super::request::{BadRequest, ChatCall, body_object, chat_call, embed_call};
use crate::wire::{
    ChatChunk, ChunkChoice, EmbeddingResponse, WireDelta, WireEmbedding, WireLogprobs, WireTokenLogprob, WireUsage, finish_reason_str,
    response_from_completion,
};
use crate::{Completion, Embedder, Error, Llm};

/// What every handler shares.
pub(crate) struct AppState {
    pub llm: Arc<dyn Llm>,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub model_id: String,
    pub default_max_tokens: usize,
    pub created: u64,
    pub next_id: AtomicU64,
}

impl AppState {
    fn completion_id(&self) -> String {
        format!("chatcmpl-{:x}-{}", self.created, self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// An OpenAI-shaped error response.
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<String>,
}

impl ApiError {
    fn server(message: impl Into<String>) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, kind: "server_error", message: message.into(), param: None }
    }

    fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": null}})
    }
}

impl From<BadRequest> for ApiError {
    fn from(b: BadRequest) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", message: b.message, param: b.param }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest(message) => Self { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", message, param: None },
            other => Self::server(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// `GET /v1/models`.
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model_id, "object": "model", "created": state.created, "owned_by": "kindling"}],
    }))
}

/// Any unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        message: "unknown endpoint (served: /v1/chat/completions, /v1/models, /v1/embeddings)".into(),
        param: None,
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let Some(embedder) = state.embedder.clone() else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: "this server has no embedding model".into(),
            param: None,
        });
    };
    let call = embed_call(&body_object(&body)?)?;
    let vectors = tokio::task::spawn_blocking(move || embedder.embed(&call.input))
        .await
        .map_err(|e| ApiError::server(format!("embedding task failed: {e}")))??;
    let response = EmbeddingResponse {
        object: "list".into(),
        data: vectors
            .into_iter()
            .enumerate()
            .map(|(index, embedding)| WireEmbedding { object: "embedding".into(), index, embedding })
            .collect(),
        model: state.model_id.clone(),
        usage: Some(WireUsage::default()),
    };
    Ok(Json(response).into_response())
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let call = chat_call(&body_object(&body)?, state.default_max_tokens)?;
    tracing::debug!(messages = call.messages.len(), stream = call.stream, "chat request");
    if call.stream {
        return Ok(stream_chat(state, call).into_response());
    }
    let llm = state.llm.clone();
    let ChatCall { messages, options, logprobs, .. } = call;
    let mut completion = tokio::task::spawn_blocking(move || llm.complete(&messages, &options))
        .await
        .map_err(|e| ApiError::server(format!("model task failed: {e}")))??;
    if !logprobs {
        completion.logprobs = None;
    }
    let created = unix_now();
    Ok(Json(response_from_completion(state.completion_id(), created, &state.model_id, &completion)).into_response())
}

/// One `chat.completion.chunk` with a single choice.
fn chunk(id: &str, created: u64, model: &str, choice: ChunkChoice) -> ChatChunk {
    ChatChunk {
        id: id.to_string(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.to_string(),
        choices: vec![choice],
        usage: None,
    }
}

fn event(value: &impl serde::Serialize) -> Event {
    Event::default().data(
        serde_json::to_string(value)
            .unwrap_or_else(|e| json!({"error": {"message": format!("cannot encode chunk: {e}"), "type": "server_error"}}).to_string()),
    )
}

/// The final chunks of a stream: finish reason (+ logprobs), usage when asked, `[DONE]`.
fn closing_events(id: &str, created: u64, model: &str, call: &ChatCall, completion: &Completion) -> Vec<Event> {
    let logprobs = match (&completion.logprobs, call.logprobs) {
        (Some(l), true) => Some(WireLogprobs { content: Some(l.iter().map(WireTokenLogprob::from).collect()) }),
        _ => None,
    };
    let last = ChunkChoice {
        index: 0,
        delta: WireDelta::default(),
        logprobs,
        finish_reason: Some(finish_reason_str(completion.finish_reason).into()),
    };
    let mut events = vec![event(&chunk(id, created, model, last))];
    if call.include_usage {
        let mut usage_chunk =
            chunk(id, created, model, ChunkChoice { index: 0, delta: WireDelta::default(), logprobs: None, finish_reason: None });
        usage_chunk.choices.clear();
        usage_chunk.usage = Some(completion.usage.into());
        events.push(event(&usage_chunk));
    }
    events.push(Event::default().data("[DONE]"));
    events
}

/// Runs the model on a blocking thread and forwards each text piece as an SSE chunk.
fn stream_chat(state: Arc<AppState>, call: ChatCall) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let id = state.completion_id();
    let created = unix_now();
    tokio::task::spawn_blocking(move || {
        let model = state.model_id.as_str();
        let text_chunk =
            |delta: WireDelta| event(&chunk(&id, created, model, ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None }));
        let opening = text_chunk(WireDelta { role: Some("assistant".into()), content: Some(String::new()) });
        if tx.blocking_send(opening).is_err() {
            return;
        }
        let mut on_text = |piece: &str| tx.blocking_send(text_chunk(WireDelta { role: None, content: Some(piece.to_string()) })).is_ok();
        match state.llm.complete_streaming(&call.messages, &call.options, &mut on_text) {
            Ok(completion) => {
                for e in closing_events(&id, created, model, &call, &completion) {
                    if tx.blocking_send(e).is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%err, "streamed completion failed");
                let _ = tx.blocking_send(event(&ApiError::from(err).body()));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx)) });
    Sse::new(stream)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
