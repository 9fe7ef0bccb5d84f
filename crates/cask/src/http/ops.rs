//! `/health`, `/metrics` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::ErrorBody;

/// What `/health` reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when ready, else `unavailable`.
    pub status: String,
    /// The process answers (always true when there is a reply).
    pub live: bool,
    /// The database accepts writes and the server is not shutting down.
    pub ready: bool,
    /// Why it is not ready, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness and readiness. Needs no password.
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "Live and ready", body = Health),
        (status = 503, description = "Live but not ready: writes are refused after an I/O failure, or the server is shutting down", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let reason = if *state.shutdown.borrow() {
        Some("shutting down".to_string())
    } else if state.shared.store.db.is_poisoned() {
        Some("the database refuses writes after an I/O failure; restart the server".to_string())
    } else {
        None
    };
    let ready = reason.is_none();
    let body = Health {
        status: if ready { "ok" } else { "unavailable" }.into(),
        live: true,
        ready,
        reason,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text: operations by command and result, latencies, keys, bytes, compactions,
/// fsync latency, clients of both servers.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "OpenMetrics text (Prometheus reads it)", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let clients = state
        .shared
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    let text = state.shared.metrics.render(clients);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses(
        (status = 200, description = "The OpenAPI 3 document of every route", content_type = "application/json", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn openapi_json() -> Response {
    Json(super::openapi::ApiDoc::openapi()).into_response()
}
