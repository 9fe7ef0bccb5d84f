//! Errors of the HTTP API: a real status code and a JSON body `{"error": "..."}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::cmd::CmdError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    #[schema(example = "key not found")]
    pub error: String,
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code (4xx or 5xx).
    pub status: StatusCode,
    /// The message.
    pub message: String,
}

/// Result of a handler step.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404 for a missing key.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "key not found")
    }
    /// 409 for a key of another Redis type.
    pub fn wrong_type() -> ApiError {
        ApiError::new(StatusCode::CONFLICT, CmdError::wrong_type().0)
    }
    /// 412.
    pub fn precondition_failed() -> ApiError {
        ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition failed")
    }
    /// 413.
    pub fn too_large(what: &str, limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is over the limit of {limit} bytes"),
        )
    }
    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer <requirepass>",
        )
    }
}

impl From<cask_engine::Error> for ApiError {
    fn from(e: cask_engine::Error) -> Self {
        use cask_engine::Error as E;
        let status = match &e {
            E::TooLarge { what: "key", .. } | E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::Conflict { .. } => StatusCode::PRECONDITION_FAILED,
            E::Poisoned(_) | E::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "engine error");
        }
        ApiError::new(status, e.to_string())
    }
}

impl From<CmdError> for ApiError {
    fn from(e: CmdError) -> Self {
        if e.0.starts_with("WRONGTYPE") {
            return ApiError::new(StatusCode::CONFLICT, e.0);
        }
        tracing::warn!(error = %e.0, "store error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
