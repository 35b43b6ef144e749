//! An OpenAI-compatible HTTP server over any [`Llm`] (and optionally an [`Embedder`]).
//!
//! Routes: `POST /v1/chat/completions` (JSON, or server-sent events when `stream` is true),
//! `GET /v1/models`, `POST /v1/embeddings` (when an embedder is given). The model is
//! synchronous and runs on tokio's blocking pool, so a slow generation never stalls the
//! server. Bad requests get HTTP 400 with OpenAI's error shape and the field named in `param`.

mod handlers;
mod request;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::oneshot;

use crate::{Embedder, Error, Llm, Result};
use handlers::AppState;

/// What to serve and how.
#[derive(Clone)]
pub struct ServerConfig {
    /// The chat model.
    pub llm: Arc<dyn Llm>,
    /// The embedding model, if any (`/v1/embeddings` answers 404 without one).
    pub embedder: Option<Arc<dyn Embedder>>,
    /// The id reported by `/v1/models` and in every response.
    pub model_id: String,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
}

impl ServerConfig {
    /// Serves `llm` as `model_id`, without embeddings, with 512 default max tokens.
    pub fn new(llm: Arc<dyn Llm>, model_id: impl Into<String>) -> Self {
        Self { llm, embedder: None, model_id: model_id.into(), default_max_tokens: 512 }
    }

    /// Also serves `/v1/embeddings` with `embedder`.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }
}

/// The axum router of the server, for embedding in another application.
pub fn router(config: ServerConfig) -> Router {
    let state = Arc::new(AppState {
        llm: config.llm,
        embedder: config.embedder,
        model_id: config.model_id,
        default_max_tokens: config.default_max_tokens,
        created: handlers::unix_now(),
        next_id: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/models", get(handlers::models))
        .route("/v1/embeddings", post(handlers::embeddings))
        .fallback(handlers::not_found)
        .with_state(state)
}

/// A server running on its own thread; dropping it asks the server to stop.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl ServerHandle {
    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL for an OpenAI client: `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.local_addr)
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the server.
    ///
    /// # Errors
    /// The server's own error, or [`Error::Model`] when its thread panicked.
    pub fn shutdown(mut self) -> Result<()> {
        self.signal();
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| Error::Model("server thread panicked".into()))?,
            None => Ok(()),
        }
    }

    fn signal(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.signal();
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::Config(format!("cannot bind {addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| Error::Config(format!("cannot configure {addr}: {e}")))?;
    Ok(listener)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))
}

async fn run(listener: TcpListener, config: ServerConfig, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    let addr = listener.local_addr().map_err(|e| Error::Config(format!("bound address unknown: {e}")))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, model = %config.model_id, "serving the OpenAI-compatible API");
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Transport { url: addr.to_string(), message: e.to_string() })
}

/// Binds `addr` (port 0 picks a free port) and serves on a background thread until the handle
/// is shut down or dropped.
///
/// # Errors
/// [`Error::Config`] when the address cannot be bound or the runtime cannot start.
pub fn spawn_server(config: ServerConfig, addr: SocketAddr) -> Result<ServerHandle> {
    let listener = bind(addr)?;
    let local_addr = listener.local_addr().map_err(|e| Error::Config(format!("bound address unknown: {e}")))?;
    let runtime = runtime()?;
    let (tx, rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("llm-server-{local_addr}"))
        .spawn(move || {
            runtime.block_on(run(listener, config, async move {
                let _ = rx.await;
            }))
        })
        .map_err(|e| Error::Config(format!("cannot start the server thread: {e}")))?;
    Ok(ServerHandle { local_addr, shutdown: Some(tx), thread: Some(thread) })
}

/// Serves on the calling thread until Ctrl-C (SIGINT) or SIGTERM, then shuts down gracefully.
///
/// # Errors
/// [`Error::Config`] when the address cannot be bound; [`Error::Transport`] when serving fails.
pub fn serve(llm: Arc<dyn Llm>, embedder: Option<Arc<dyn Embedder>>, model_id: impl Into<String>, addr: SocketAddr) -> Result<()> {
    let mut config = ServerConfig::new(llm, model_id);
    config.embedder = embedder;
    serve_config(config, addr, |_| {})
}

/// Like [`serve`] for a full [`ServerConfig`]; `on_bound` is called with the bound address
/// (useful with port 0) before requests are accepted.
///
/// # Errors
/// [`Error::Config`] when the address cannot be bound; [`Error::Transport`] when serving fails.
pub fn serve_config(config: ServerConfig, addr: SocketAddr, on_bound: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = bind(addr)?;
    let local = listener.local_addr().map_err(|e| Error::Config(format!("bound address unknown: {e}")))?;
    on_bound(local);
    runtime()?.block_on(run(listener, config, shutdown_signal()))
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
