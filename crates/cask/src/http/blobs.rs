//! mini-kvstore-v2's routes, for its users: `POST/GET/DELETE /blobs/{key}`, `GET /blobs`.
//! They address the same keys as `/v1/kv/{key}`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::kv::{Preconditions, RawBytes, delete_string, etag, put_string};
use super::{AppState, DB, ekey, key_from_path, read_body};
use crate::server::keyspace::TYPE_STRING;

const PREFIX: &str = "/blobs/";

/// What `POST /blobs/{key}` returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlobMeta {
    /// The key (invalid UTF-8 replaced by U+FFFD).
    pub key: String,
    /// The blob's version, as in `ETag` (without quotes).
    pub etag: String,
    /// Size of the value in bytes.
    pub size: u64,
}

/// Stores a blob (overwriting any previous value).
#[utoipa::path(
    post,
    path = "/blobs/{key}",
    tag = "blobs",
    params(("key" = String, Path, description = "The key", min_length = 1)),
    request_body(description = "The blob's bytes", content(
        (Option<RawBytes> = "application/octet-stream"),
        (Option<String> = "text/plain"),
    )),
    responses(
        (status = 201, description = "Stored", body = BlobMeta),
        (status = 400, description = "Invalid key", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Over the value limit", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
        (status = 503, description = "The database refuses writes or the write is not durable", body = ErrorBody),
    )
)]
pub async fn post_blob(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let res = async {
        let key = key_from_path(uri.path(), PREFIX)?;
        let value = read_body(&headers, body, state.body_limit(), "value").await?;
        let (version, _) = put_string(&state, &key, &value, &Preconditions::default(), None)?;
        state.durable(version).await?;
        Ok::<_, ApiError>(BlobMeta {
            key: String::from_utf8_lossy(&key).into_owned(),
            etag: version.to_string(),
            size: value.len() as u64,
        })
    }
    .await;
    match res {
        Ok(meta) => {
            let tag = meta.etag.parse().map(etag).ok();
            let mut resp = (StatusCode::CREATED, Json(meta)).into_response();
            if let Some(tag) = tag {
                resp.headers_mut().insert(header::ETAG, tag);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Reads a blob's bytes.
#[utoipa::path(
    get,
    path = "/blobs/{key}",
    tag = "blobs",
    params(("key" = String, Path, description = "The key", min_length = 1)),
    responses(
        (status = 200, description = "The blob's bytes", content_type = "application/octet-stream", body = RawBytes),
        (status = 400, description = "Invalid key", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such blob", body = ErrorBody),
        (status = 409, description = "The key holds another Redis type", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
    )
)]
pub async fn get_blob(State(state): State<AppState>, uri: Uri) -> Response {
    let res = (|| {
        let key = key_from_path(uri.path(), PREFIX)?;
        let (raw, version) = state
            .shared
            .store
            .db
            .get_versioned(&ekey(&key))?
            .ok_or_else(ApiError::not_found)?;
        match raw.split_first() {
            None => Ok((Vec::new(), version)),
            Some((&TYPE_STRING, rest)) => Ok((rest.to_vec(), version)),
            Some(_) => Err(ApiError::wrong_type()),
        }
    })();
    match res {
        Ok((data, version)) => {
            let mut resp = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                data,
            )
                .into_response();
            resp.headers_mut().insert(header::ETAG, etag(version));
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Deletes a blob.
#[utoipa::path(
    delete,
    path = "/blobs/{key}",
    tag = "blobs",
    params(("key" = String, Path, description = "The key", min_length = 1)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid key", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such blob", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
        (status = 503, description = "The database refuses writes or the delete is not durable", body = ErrorBody),
    )
)]
pub async fn delete_blob(State(state): State<AppState>, uri: Uri) -> Response {
    let res = async {
        let key = key_from_path(uri.path(), PREFIX)?;
        let version = delete_string(&state, &key, &Preconditions::default())?
            .ok_or_else(ApiError::not_found)?;
        state.durable(version).await
    }
    .await;
    match res {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Lists the keys (at most `--http-max-list-limit` of them, in order).
#[utoipa::path(
    get,
    path = "/blobs",
    tag = "blobs",
    responses(
        (status = 200, description = "Keys in order (invalid UTF-8 replaced by U+FFFD)", body = Vec<String>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
    )
)]
pub async fn list_blobs(State(state): State<AppState>) -> Response {
    let max = state.shared.config.http_max_list_limit;
    let res: Result<Vec<String>, ApiError> = state
        .shared
        .store
        .keys_from(DB, None)
        .take(max)
        .map(|k| {
            k.map(|k| String::from_utf8_lossy(&k).into_owned())
                .map_err(ApiError::from)
        })
        .collect();
    match res {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => e.into_response(),
    }
}
