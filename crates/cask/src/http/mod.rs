//! The HTTP/JSON API (`cask serve`, default 127.0.0.1:7380), on axum.
//!
//! It serves the same database as the RESP server: `/v1/kv/{key}` is database 0's string
//! `key` (see [`crate::server::keyspace`]), so `curl -X PUT .../v1/kv/foo -d bar` and
//! `redis-cli get foo` see the same value. Writes take the same per-key stripe locks as the
//! RESP server's read-modify-write commands, conditional writes are the engine's
//! compare-and-set, and a 2xx reply to a write is sent only once the write is durable under
//! `--sync` (the same durability thread as the RESP connections).
//!
//! - [`kv`]: `GET/HEAD/PUT/DELETE /v1/kv/{key}` with ETag / If-Match / If-None-Match.
//! - [`list`]: `GET /v1/kv`, the ordered, paginated listing.
//! - [`batch`]: `POST /v1/batch`, atomic batches.
//! - [`blobs`]: mini-kvstore-v2's `/blobs` routes.
//! - [`ops`]: `/health`, `/metrics`, `/openapi.json`.
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers' annotations.
//!
//! The reference for users is docs/HTTP.md.

pub mod batch;
pub mod blobs;
pub mod error;
pub mod kv;
pub mod list;
pub mod openapi;
pub mod ops;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cask_engine::SyncPolicy;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::server::Shared;
use crate::server::keyspace::engine_key;
use error::{ApiError, ApiResult};

/// The database the HTTP API addresses (Redis's database 0).
pub const DB: u8 = 0;

/// State of the HTTP handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// What the RESP server shares: store, durability, configuration, metrics.
    pub shared: Arc<Shared>,
    /// Becomes true when the server shuts down (`/health` then reports not ready).
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Largest request body for a value: the engine's value limit less the type tag byte.
    pub fn body_limit(&self) -> usize {
        self.shared
            .store
            .db
            .options()
            .max_value_size
            .saturating_sub(1)
    }

    /// Largest `POST /v1/batch` body: the client query buffer limit (the most input the RESP
    /// server holds for one client).
    pub fn batch_limit(&self) -> usize {
        usize::try_from(self.shared.config.limits.query_buffer_limit).unwrap_or(usize::MAX)
    }

    /// Waits until a write of `version` is durable under `--sync`, as RESP replies do.
    ///
    /// # Errors
    /// 503 if the fsync failed (the engine then refuses writes).
    pub async fn durable(&self, version: u64) -> ApiResult<()> {
        if self.shared.store.db.options().sync != SyncPolicy::Always {
            return Ok(());
        }
        self.shared.durability.wait(version).await.map_err(|e| {
            tracing::error!(error = %e, "durability wait failed");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("write not durable: {e}"),
            )
        })
    }
}

/// The router for `shared`, with a shutdown flag that never turns true (tests).
pub fn router(shared: Arc<Shared>) -> Router {
    // With the sender gone the flag keeps its last value, false.
    let (_, rx) = watch::channel(false);
    router_with(AppState {
        shared,
        shutdown: rx,
    })
}

/// The router of every route, with authentication and metrics.
pub fn router_with(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(kv::get_key)
                .head(kv::head_key)
                .put(kv::put_key)
                .delete(kv::delete_key),
        )
        .route("/v1/kv", get(list::list))
        .route("/v1/batch", post(batch::batch))
        .route("/blobs", get(blobs::list_blobs))
        .route(
            "/blobs/{*key}",
            post(blobs::post_blob)
                .get(blobs::get_blob)
                .delete(blobs::delete_blob),
        )
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

async fn fallback(req: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// `--requirepass`: every route but `/health` needs `Authorization: Bearer PASSWORD`.
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(pw) = state.shared.password()
        && req.uri().path() != "/health"
    {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| same_secret(given.trim_ascii(), pw.as_bytes()));
        if !ok {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Counts every request by route and method, with its status and latency.
async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let op = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        None => "unmatched".to_string(),
    };
    let resp = next.run(req).await;
    state
        .shared
        .metrics
        .http_op(&op, resp.status().as_u16(), started.elapsed());
    resp
}

/// The user key addressed by a `{prefix}{*key}` route: the raw path after `prefix`,
/// percent-decoded to bytes (so any byte string can be a key; `/` may appear as is or as
/// `%2F`).
///
/// # Errors
/// 400 for an empty key.
pub fn key_from_path(path: &str, prefix: &str) -> ApiResult<Vec<u8>> {
    let raw = path.strip_prefix(prefix).unwrap_or("");
    let key: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    if key.is_empty() {
        return Err(ApiError::bad_request("empty key"));
    }
    Ok(key)
}

/// The engine key of database 0's `key`.
pub fn ekey(key: &[u8]) -> Vec<u8> {
    engine_key(DB, key)
}

/// Reads a request body of at most `limit` bytes. An announced `Content-Length` over the
/// limit is refused before any of the body is read; a chunked body is cut off as soon as it
/// passes the limit.
///
/// # Errors
/// 413 over the limit, 400 if the body cannot be read.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
) -> ApiResult<Bytes> {
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?;
        if len > limit as u64 {
            return Err(ApiError::too_large(what, limit));
        }
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(what, limit))
        }
        Err(e) => Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
    }
}

/// A TCP connection counted in `cask_connected_clients{server="http"}` while it is open.
pub struct CountedStream {
    inner: TcpStream,
    shared: Arc<Shared>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.shared.metrics.http_clients.dec();
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The listener of the HTTP server: counts connections, sets `TCP_NODELAY`.
struct CountingListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.shared.metrics.http_clients.inc();
                    return (
                        CountedStream {
                            inner: stream,
                            shared: self.shared.clone(),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves the HTTP API on `listener` until `shutdown` turns true, then stops accepting and
/// lets in-flight requests finish (the caller bounds that wait with the RESP server's grace
/// period).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let state = AppState {
        shared: shared.clone(),
        shutdown: shutdown.clone(),
    };
    let app = router_with(state);
    let mut signal = shutdown;
    let res = axum::serve(
        CountingListener {
            inner: listener,
            shared,
        },
        app,
    )
    .with_graceful_shutdown(async move {
        let _ = signal.wait_for(|stop| *stop).await;
    })
    .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "http server failed");
    }
}
