//! `POST /v1/batch`: puts and deletes applied atomically (all or nothing, also across a
//! crash), optionally conditional on the keys' versions.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cask_engine::Batch;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::kv::parse_ttl;
use super::{AppState, DB, ekey, read_body};
use crate::server::keyspace::{Store, TYPE_STRING};
use crate::server::notify::HttpWrite;

/// How often the batch is retried when a writer outside the stripe locks changed one of its
/// keys between the reads and the write.
const CAS_RETRIES: usize = 16;

/// Bytes in a batch: a JSON string (its UTF-8 bytes) or `{"base64": "..."}` (standard
/// alphabet, padding optional; trailing bits ignored).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Data {
    /// UTF-8 text.
    Text(String),
    /// Base64-encoded bytes.
    Base64 {
        /// The bytes, base64-encoded.
        #[schema(pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}(==)?|[A-Za-z0-9+/]{3}=?)?$")]
        base64: String,
    },
}

/// Standard base64, lenient about padding and trailing bits: every string the schema's
/// pattern allows decodes.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl Data {
    fn bytes(self, what: &str, i: usize) -> ApiResult<Vec<u8>> {
        match self {
            Data::Text(t) => Ok(t.into_bytes()),
            Data::Base64 { base64 } => LENIENT
                .decode(base64)
                .map_err(|_| ApiError::bad_request(format!("ops[{i}]: invalid base64 in {what}"))),
        }
    }
}

/// An optional integer that JSON may also write with a zero fraction (`7.0`), as JSON
/// Schema counts such numbers as integers.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                    Ok(Some(f as i64))
                }
                _ => Err(D::Error::custom(format!("{n} is not a 64-bit integer"))),
            }
        }
    }
}

/// One operation of a batch, tagged by `op`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum BatchOp {
    /// Set a string.
    Put {
        /// The key.
        key: Data,
        /// The value.
        value: Data,
        /// Time to live (`30s`, `5m`, `1h`, `250ms`, whole seconds); none: no TTL.
        #[serde(default)]
        #[schema(pattern = "^[1-9][0-9]{0,8}(ms|s|m|h)?$")]
        ttl: Option<String>,
        /// Apply the batch only if the key's version is this (its ETag without quotes); 0:
        /// only if the key does not exist.
        #[serde(default, deserialize_with = "integer")]
        #[schema(minimum = 0)]
        if_version: Option<i64>,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: Data,
        /// As for put.
        #[serde(default, deserialize_with = "integer")]
        #[schema(minimum = 0)]
        if_version: Option<i64>,
    },
}

/// A batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The operations, applied in order (a later one on the same key wins).
    #[schema(min_items = 1)]
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
    /// `Some(0)`: must be absent.
    if_version: Option<u64>,
}

fn version(v: Option<i64>, i: usize) -> ApiResult<Option<u64>> {
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| ApiError::bad_request(format!("ops[{i}]: if_version must be >= 0")))
    })
    .transpose()
}

fn prepare(req: BatchRequest, now: u64) -> ApiResult<Vec<Prepared>> {
    if req.ops.is_empty() {
        return Err(ApiError::bad_request("ops is empty"));
    }
    req.ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| match op {
            BatchOp::Put {
                key,
                value,
                ttl,
                if_version,
            } => {
                let expire =
                    match &ttl {
                        Some(t) => Some(now.saturating_add(parse_ttl(t).map_err(|e| {
                            ApiError::bad_request(format!("ops[{i}]: {}", e.message))
                        })?)),
                        None => None,
                    };
                Ok(Prepared {
                    key: key.bytes("key", i)?,
                    put: Some((value.bytes("value", i)?, expire)),
                    if_version: version(if_version, i)?,
                })
            }
            BatchOp::Delete { key, if_version } => Ok(Prepared {
                key: key.bytes("key", i)?,
                put: None,
                if_version: version(if_version, i)?,
            }),
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
            let ok = match o.if_version {
                Some(0) => current.is_none(),
                Some(v) => current == Some(v),
                None => true,
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
                for ((o, sweep), (_, before)) in ops.iter().zip(&sweep).zip(&seen) {
                    let wrote = match &o.put {
                        Some((_, expire_at)) => Some(HttpWrite::Set {
                            created: before.is_none(),
                            expire_at: *expire_at,
                        }),
                        // Deleting a missing key changes nothing: no `del`.
                        None => before.map(|_| HttpWrite::Deleted),
                    };
                    super::kv::after_write(state, &o.key, *sweep, wrote);
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
        (status = 412, description = "An if_version condition failed; nothing was applied", body = ErrorBody),
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
