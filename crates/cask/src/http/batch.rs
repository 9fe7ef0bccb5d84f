//! `POST /v1/batch`: puts and deletes applied atomically (all or nothing, also across a
//! crash), optionally conditional on the keys' versions.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cask_engine::Batch;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::kv::parse_ttl;
use super::{AppState, DB, ekey, read_body};
use crate::server::keyspace::{Store, TYPE_STRING};

/// How often the batch is retried when a writer outside the stripe locks changed one of its
/// keys between the reads and the write.
const CAS_RETRIES: usize = 16;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Set a string.
    Put,
    /// Delete a key.
    Delete,
}

/// One operation of a batch. Give the key as `key` (UTF-8) or `key_base64`, and a put's value
/// as `value` or `value_base64`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOp {
    /// `put` or `delete`.
    pub op: OpKind,
    /// The key as text.
    #[serde(default)]
    pub key: Option<String>,
    /// The key base64-encoded (standard alphabet).
    #[serde(default)]
    pub key_base64: Option<String>,
    /// A put's value as text.
    #[serde(default)]
    pub value: Option<String>,
    /// A put's value base64-encoded.
    #[serde(default)]
    pub value_base64: Option<String>,
    /// A put's time to live (`30s`, `5m`, ...); none: no TTL.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Apply the batch only if this key's version is this (its ETag without quotes).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub if_version: Option<u64>,
    /// Apply the batch only if this key does not exist.
    #[serde(default)]
    pub if_absent: Option<bool>,
}

/// A batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The operations, applied in order (a later one on the same key wins).
    pub ops: Vec<BatchOp>,
}

/// What a batch returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// The version shared by every key the batch wrote.
    pub version: u64,
    /// Operations applied.
    pub applied: usize,
}

struct Prepared {
    key: Vec<u8>,
    put: Option<(Vec<u8>, Option<u64>)>,
    if_version: Option<u64>,
    if_absent: bool,
}

fn decode(
    text: Option<String>,
    b64: Option<String>,
    what: &str,
    i: usize,
) -> ApiResult<Option<Vec<u8>>> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "ops[{i}]: give {what} or {what}_base64, not both"
        ))),
        (Some(t), None) => Ok(Some(t.into_bytes())),
        (None, Some(b)) => STANDARD
            .decode(b)
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("ops[{i}]: invalid {what}_base64"))),
        (None, None) => Ok(None),
    }
}

fn prepare(req: BatchRequest, now: u64) -> ApiResult<Vec<Prepared>> {
    if req.ops.is_empty() {
        return Err(ApiError::bad_request("ops is empty"));
    }
    req.ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let key = decode(op.key, op.key_base64, "key", i)?
                .ok_or_else(|| ApiError::bad_request(format!("ops[{i}]: key is missing")))?;
            if key.is_empty() {
                return Err(ApiError::bad_request(format!("ops[{i}]: empty key")));
            }
            let value = decode(op.value, op.value_base64, "value", i)?;
            let put = match op.op {
                OpKind::Put => {
                    let value = value.ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "ops[{i}]: a put needs value or value_base64"
                        ))
                    })?;
                    let expire = match &op.ttl {
                        Some(t) => Some(now.saturating_add(parse_ttl(t)?)),
                        None => None,
                    };
                    Some((value, expire))
                }
                OpKind::Delete => {
                    if value.is_some() || op.ttl.is_some() {
                        return Err(ApiError::bad_request(format!(
                            "ops[{i}]: a delete takes no value or ttl"
                        )));
                    }
                    None
                }
            };
            let if_absent = op.if_absent.unwrap_or(false);
            if if_absent && op.if_version.is_some() {
                return Err(ApiError::bad_request(format!(
                    "ops[{i}]: if_version and if_absent exclude each other"
                )));
            }
            Ok(Prepared {
                key,
                put,
                if_version: op.if_version,
                if_absent,
            })
        })
        .collect()
}

/// Applies the batch under the stripe locks of its keys: the conditions and the versions
/// read are checked again by the engine when it writes (compare-and-set on every key).
fn apply(state: &AppState, ops: &[Prepared]) -> ApiResult<u64> {
    let store = &state.shared.store;
    let keys: Vec<&[u8]> = ops.iter().map(|o| o.key.as_slice()).collect();
    let mut batch = Batch::new();
    for o in ops {
        match &o.put {
            Some((value, expire)) => {
                Store::batch_put(&mut batch, DB, &o.key, TYPE_STRING, value, *expire);
            }
            None => {
                batch.delete(ekey(&o.key));
            }
        }
    }
    let _gate = state.shared.exec_gate.read(super::kv::http_gate_id());
    let _locks = store.lock(DB, &keys);
    let sweep: Vec<bool> = keys
        .iter()
        .map(|k| store.may_hold_collection(DB, k).unwrap_or(true))
        .collect();
    for _ in 0..CAS_RETRIES {
        let mut seen: Vec<(Vec<u8>, Option<u64>)> = Vec::with_capacity(ops.len());
        for o in ops {
            let ek = ekey(&o.key);
            let current = store.db.metadata(&ek)?.map(|m| m.version);
            let ok = match (o.if_version, o.if_absent) {
                (Some(v), _) => current == Some(v),
                (None, true) => current.is_none(),
                (None, false) => true,
            };
            if !ok {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    format!(
                        "precondition failed for key {}",
                        crate::server::cmd::truncate(&o.key, 128)
                    ),
                ));
            }
            seen.push((ek, current));
        }
        let res = store.db.write_if(&batch, |version_of| {
            for (k, v) in &seen {
                if version_of(k) != *v {
                    return Err(cask_engine::Error::Conflict {
                        expected: *v,
                        actual: version_of(k),
                    });
                }
            }
            Ok(())
        });
        match res {
            Ok(v) => {
                for (k, sweep) in keys.iter().zip(&sweep) {
                    super::kv::after_write(state, k, *sweep);
                }
                return Ok(v);
            }
            Err(cask_engine::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "keys kept changing during the batch; retry",
    ))
}

/// Applies puts and deletes atomically.
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "kv",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every operation was applied", body = BatchResult),
        (status = 400, description = "Malformed batch", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "Keys kept changing under concurrent writers", body = ErrorBody),
        (status = 412, description = "An if_version / if_absent condition failed; nothing was applied", body = ErrorBody),
        (status = 413, description = "The body or the batch is over its limit", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
        (status = 503, description = "The database refuses writes or the batch is not durable", body = ErrorBody),
    )
)]
pub async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let res = async {
        let body = read_body(&headers, body, state.batch_limit(), "batch body").await?;
        let req: BatchRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid batch: {e}")))?;
        let ops = prepare(req, state.shared.store.db.now_ms())?;
        let version = apply(&state, &ops)?;
        state.durable(version).await?;
        Ok::<_, ApiError>(BatchResult {
            version,
            applied: ops.len(),
        })
    }
    .await;
    match res {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}
