//! `GET/HEAD/PUT/DELETE /v1/kv/{key}`: raw bytes in and out, ETag = the key's version,
//! conditional reads and writes with `If-Match` / `If-None-Match`.
//!
//! Writes run under the key's stripe lock and end in the engine's compare-and-set against
//! the version they observed, so a precondition is checked and the write applied as one
//! atomic step even against writers that do not take the lock.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cask_engine::WriteOptions;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{AppState, DB, ekey, key_from_path, read_body};
use crate::server::keyspace::TYPE_STRING;
use crate::server::notify::HttpWrite;

/// Header with a TTL for PUT (same syntax as `?ttl=`).
pub const TTL_HEADER: &str = "cask-ttl";
/// Response header with a key's expiry, in ms since the Unix epoch.
pub const EXPIRES_HEADER: &str = "cask-expires-at";
/// How often a write retries when a writer outside the stripe locks changed the key between
/// its read and its compare-and-set.
const CAS_RETRIES: usize = 16;

const PREFIX: &str = "/v1/kv/";

/// Raw bytes in the OpenAPI document (a binary string).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawBytes(pub Vec<u8>);

/// What a successful PUT returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct PutResult {
    /// The key's new version (also the `ETag`).
    pub version: u64,
    /// Whether the key did not exist before.
    pub created: bool,
}

/// The syntax of `If-Match` / `If-None-Match`: `*` or a list of entity tags (RFC 9110),
/// where a tag may also be given without its quotes (`12` for `"12"`).
pub const TAG_LIST_PATTERN: &str = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#;
/// The syntax of a TTL in the OpenAPI document (the server also accepts any humantime
/// duration, such as `1h 30m`).
pub const TTL_PATTERN: &str = "^[1-9][0-9]{0,8}(ms|s|m|h)?$";

/// An `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`.
    Any,
    /// Entity tags: (weak, opaque text between the quotes).
    Tags(Vec<(bool, String)>),
}

impl TagList {
    /// Parses a header value; `None` if it is not `*` or a list of entity tags.
    pub fn parse(v: &str) -> Option<TagList> {
        let ws = |c: u8| c == b' ' || c == b'\t';
        let b = v.as_bytes();
        let v = v.trim_matches([' ', '\t']);
        if v == "*" {
            return Some(TagList::Any);
        }
        let etagc = |c: u8| c == b'!' || (b'#'..=b'~').contains(&c);
        let mut tags = Vec::new();
        let mut i = 0;
        loop {
            while i < b.len() && ws(b[i]) {
                i += 1;
            }
            let weak = b[i..].starts_with(b"W/");
            if weak {
                i += 2;
            }
            let start = i;
            let opaque = if b.get(i) == Some(&b'"') {
                i += 1;
                while i < b.len() && etagc(b[i]) {
                    i += 1;
                }
                if b.get(i) != Some(&b'"') {
                    return None;
                }
                i += 1;
                &b[start + 1..i - 1]
            } else {
                // Leniency: a bare token is the tag with its quotes left out.
                while i < b.len() && etagc(b[i]) && b[i] != b',' {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                &b[start..i]
            };
            tags.push((weak, String::from_utf8_lossy(opaque).into_owned()));
            while i < b.len() && ws(b[i]) {
                i += 1;
            }
            match b.get(i) {
                None => return Some(TagList::Tags(tags)),
                Some(b',') => i += 1,
                Some(_) => return None,
            }
        }
    }

    /// Strong comparison (`If-Match`) against the current version.
    fn strong_match(&self, current: Option<u64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (TagList::Any, Some(_)) => true,
            (TagList::Tags(t), Some(v)) => {
                let v = v.to_string();
                t.iter().any(|(weak, o)| !weak && *o == v)
            }
        }
    }

    /// Weak comparison (`If-None-Match`) against the current version.
    fn weak_match(&self, current: Option<u64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (TagList::Any, Some(_)) => true,
            (TagList::Tags(t), Some(v)) => {
                let v = v.to_string();
                t.iter().any(|(_, o)| *o == v)
            }
        }
    }
}

/// The preconditions of a request.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// `If-Match`.
    pub if_match: Option<TagList>,
    /// `If-None-Match`.
    pub if_none_match: Option<TagList>,
}

/// What the preconditions say.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Proceed,
    /// 304 (reads).
    NotModified,
    /// 412.
    Failed,
}

impl Preconditions {
    /// Reads `If-Match` and `If-None-Match`.
    ///
    /// # Errors
    /// 400 for a header that is not `*` or a list of entity tags (`"12", W/"13"`).
    pub fn from_headers(h: &HeaderMap) -> ApiResult<Preconditions> {
        let get = |name: header::HeaderName| -> ApiResult<Option<TagList>> {
            match h.get(&name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .ok()
                    .and_then(TagList::parse)
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "invalid {name} header: expected * or entity tags such as \"12\""
                        ))
                    }),
            }
        };
        Ok(Preconditions {
            if_match: get(header::IF_MATCH)?,
            if_none_match: get(header::IF_NONE_MATCH)?,
        })
    }

    /// Whether any precondition is given.
    pub fn any(&self) -> bool {
        self.if_match.is_some() || self.if_none_match.is_some()
    }

    /// Evaluates them (RFC 9110 section 13.2.2) against the current version.
    pub fn evaluate(&self, current: Option<u64>, read: bool) -> Verdict {
        if let Some(m) = &self.if_match
            && !m.strong_match(current)
        {
            return Verdict::Failed;
        }
        if let Some(n) = &self.if_none_match
            && n.weak_match(current)
        {
            return if read {
                Verdict::NotModified
            } else {
                Verdict::Failed
            };
        }
        Verdict::Proceed
    }
}

/// `"<version>"`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A raw engine value of database 0: its payload if it is a string.
fn string_payload(raw: &[u8]) -> ApiResult<&[u8]> {
    match raw.split_first() {
        None => Ok(&[]),
        Some((&TYPE_STRING, rest)) => Ok(rest),
        Some(_) => Err(ApiError::wrong_type()),
    }
}

/// Parses a TTL: a humantime duration (`30s`, `5m`, `1h 30m`, `250ms`) or whole seconds.
///
/// # Errors
/// 400 for junk, zero, or a TTL too large to add to now.
pub fn parse_ttl(text: &str) -> ApiResult<u64> {
    let t = text.trim();
    let ms = match t.parse::<u64>() {
        Ok(secs) => secs.checked_mul(1000),
        Err(_) => humantime::parse_duration(t)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
    };
    match ms {
        Some(ms) if ms > 0 && ms < (1 << 53) => Ok(ms),
        _ => Err(ApiError::bad_request(format!(
            "invalid ttl '{t}': expected a positive duration such as 30s, 5m, 1h or 250ms"
        ))),
    }
}

/// The TTL of a PUT: `?ttl=` wins over the `Cask-Ttl` header.
fn ttl_of(uri: &Uri, headers: &HeaderMap) -> ApiResult<Option<u64>> {
    // Both are checked; the query wins.
    let header = match headers.get(TTL_HEADER) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid Cask-Ttl header"))?;
            Some(parse_ttl(v)?)
        }
    };
    for (name, value) in super::list::query_pairs(uri.query().unwrap_or("")) {
        if name == "ttl" {
            let v = String::from_utf8(value).map_err(|_| ApiError::bad_request("invalid ttl"))?;
            return parse_ttl(&v).map(Some);
        }
    }
    Ok(header)
}

fn expires_header(resp: &mut Response, expire_at: Option<u64>) {
    if let Some(at) = expire_at
        && let Ok(v) = HeaderValue::from_str(&at.to_string())
    {
        resp.headers_mut().insert(EXPIRES_HEADER, v);
    }
}

/// Reads a string key with its version and expiry, applying read preconditions.
fn read(state: &AppState, key: &[u8], pre: &Preconditions) -> ApiResult<ReadOutcome> {
    let db = &state.shared.store.db;
    let ek = ekey(key);
    let Some((raw, version)) = db.get_versioned(&ek)? else {
        return match pre.evaluate(None, true) {
            Verdict::Failed => Err(ApiError::precondition_failed()),
            _ => Err(ApiError::not_found()),
        };
    };
    let payload = string_payload(&raw)?;
    let expire_at = db.metadata(&ek)?.and_then(|m| m.expire_at);
    match pre.evaluate(Some(version), true) {
        Verdict::Failed => Err(ApiError::precondition_failed()),
        Verdict::NotModified => Ok(ReadOutcome::NotModified(version)),
        Verdict::Proceed => Ok(ReadOutcome::Value {
            data: bytes::Bytes::copy_from_slice(payload),
            version,
            expire_at,
        }),
    }
}

enum ReadOutcome {
    NotModified(u64),
    Value {
        data: bytes::Bytes,
        version: u64,
        expire_at: Option<u64>,
    },
}

fn not_modified(version: u64) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    resp.headers_mut().insert(header::ETAG, etag(version));
    resp
}

/// Reads a key's value.
#[utoipa::path(
    get,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, description = "The key (percent-encoded bytes; `/` allowed)", min_length = 1),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags (or `*`); 304 if one matches", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
        ("If-Match" = Option<String>, Header, nullable = false, description = "ETags (or `*`); 412 unless one matches", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
    ),
    responses(
        (status = 200, description = "The value's bytes", content_type = "application/octet-stream", body = RawBytes,
            headers(("ETag" = String, description = "The key's version, quoted"),
                    ("Cask-Expires-At" = Option<u64>, description = "Expiry in ms since the Unix epoch, if any"))),
        (status = 304, description = "If-None-Match matched", headers(("ETag" = String, description = "The key's version"))),
        (status = 400, description = "Invalid header or key", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key holds another Redis type", body = ErrorBody),
        (status = 412, description = "If-Match did not match", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
    )
)]
pub async fn get_key(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let res = (|| {
        let key = key_from_path(uri.path(), PREFIX)?;
        let pre = Preconditions::from_headers(&headers)?;
        read(&state, &key, &pre)
    })();
    match res {
        Err(e) => e.into_response(),
        Ok(ReadOutcome::NotModified(v)) => not_modified(v),
        Ok(ReadOutcome::Value {
            data,
            version,
            expire_at,
        }) => {
            let mut resp = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                data,
            )
                .into_response();
            resp.headers_mut().insert(header::ETAG, etag(version));
            expires_header(&mut resp, expire_at);
            resp
        }
    }
}

/// A key's metadata: like GET without the body.
#[utoipa::path(
    head,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, description = "The key", min_length = 1),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags (or `*`); 304 if one matches", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
        ("If-Match" = Option<String>, Header, nullable = false, description = "ETags (or `*`); 412 unless one matches", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
    ),
    responses(
        (status = 200, description = "The key exists; Content-Length is the value's size",
            headers(("ETag" = String, description = "The key's version, quoted"),
                    ("Content-Length" = u64, description = "The value's size"))),
        (status = 304, description = "If-None-Match matched"),
        (status = 400, description = "Invalid header or key"),
        (status = 401, description = "Missing or wrong bearer token"),
        (status = 404, description = "No such key"),
        (status = 409, description = "The key holds another Redis type"),
        (status = 412, description = "If-Match did not match"),
        (status = 500, description = "Engine error"),
    )
)]
pub async fn head_key(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let res = (|| {
        let key = key_from_path(uri.path(), PREFIX)?;
        let pre = Preconditions::from_headers(&headers)?;
        read(&state, &key, &pre)
    })();
    match res {
        // HEAD responses carry no body; the status tells.
        Err(e) => e.status.into_response(),
        Ok(ReadOutcome::NotModified(v)) => not_modified(v),
        Ok(ReadOutcome::Value {
            data,
            version,
            expire_at,
        }) => {
            let mut resp = StatusCode::OK.into_response();
            let h = resp.headers_mut();
            h.insert(header::ETAG, etag(version));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            expires_header(&mut resp, expire_at);
            resp
        }
    }
}

/// The EXEC gate shard of an HTTP write: any shard works (EXEC takes them all); a random
/// one spreads concurrent requests like connection ids spread RESP clients.
pub(crate) fn http_gate_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// What every HTTP write does after it succeeded, like a RESP write: sweep the elements of
/// a collection it replaced, dirty the MULTI/WATCH of clients watching the key, and publish
/// the keyspace events of what it did (`wrote`; `None` for a delete of a missing key).
pub(crate) fn after_write(state: &AppState, key: &[u8], sweep: bool, wrote: Option<HttpWrite>) {
    let store = &state.shared.store;
    if sweep {
        store.sweep_later(DB, key);
    }
    state
        .shared
        .watches
        .after_write(store, &[bytes::Bytes::copy_from_slice(key)]);
    if let Some(wrote) = wrote {
        crate::server::notify::http_write(&state.shared, DB, key, wrote);
    }
}

/// The key's current version for a compare-and-set. Conditional requests apply only to
/// strings, so with preconditions the value is read to check its type (409 otherwise);
/// without, the index alone answers.
fn current_version(
    store: &crate::server::keyspace::Store,
    ek: &[u8],
    pre: &Preconditions,
) -> ApiResult<Option<u64>> {
    if !pre.any() {
        return Ok(store.db.metadata(ek)?.map(|m| m.version));
    }
    match store.db.get_versioned(ek)? {
        Some((raw, v)) => {
            string_payload(&raw)?;
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

/// Sets `key` to `value` if the preconditions hold, as one compare-and-set in the engine.
/// Without preconditions it overwrites a key of any type, like SET.
pub(crate) fn put_string(
    state: &AppState,
    key: &[u8],
    value: &[u8],
    pre: &Preconditions,
    expire_at: Option<u64>,
) -> ApiResult<(u64, bool)> {
    let store = &state.shared.store;
    let ek = ekey(key);
    let mut stored = Vec::with_capacity(value.len() + 1);
    stored.push(TYPE_STRING);
    stored.extend_from_slice(value);
    // Like a RESP command: never inside another client's MULTI/EXEC.
    let _gate = state.shared.exec_gate.read(http_gate_id());
    let _locks = store.lock(DB, &[key]);
    // Overwriting a collection leaves its elements to the sweeper.
    let sweep = store.may_hold_collection(DB, key).unwrap_or(true);
    for _ in 0..CAS_RETRIES {
        let current = current_version(store, &ek, pre)?;
        if pre.evaluate(current, false) != Verdict::Proceed {
            return Err(ApiError::precondition_failed());
        }
        match store
            .db
            .set_if(&ek, current, &stored, WriteOptions { expire_at })
        {
            Ok(version) => {
                let created = current.is_none();
                after_write(
                    state,
                    key,
                    sweep,
                    Some(HttpWrite::Set { created, expire_at }),
                );
                return Ok((version, created));
            }
            Err(cask_engine::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "the key kept changing during the write; retry",
    ))
}

/// Deletes `key` if the preconditions hold (compare-and-set). Returns the version of the
/// delete, or `None` if the key did not exist.
pub(crate) fn delete_string(
    state: &AppState,
    key: &[u8],
    pre: &Preconditions,
) -> ApiResult<Option<u64>> {
    let store = &state.shared.store;
    let ek = ekey(key);
    let _gate = state.shared.exec_gate.read(http_gate_id());
    let _locks = store.lock(DB, &[key]);
    let sweep = store.may_hold_collection(DB, key).unwrap_or(true);
    for _ in 0..CAS_RETRIES {
        let current = current_version(store, &ek, pre)?;
        if pre.evaluate(current, false) != Verdict::Proceed {
            return Err(ApiError::precondition_failed());
        }
        let Some(v) = current else {
            return Ok(None);
        };
        match store.db.delete_if(&ek, v) {
            Ok(()) => {
                after_write(state, key, sweep, Some(HttpWrite::Deleted));
                return Ok(Some(store.db.last_version()));
            }
            Err(cask_engine::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "the key kept changing during the delete; retry",
    ))
}

/// Stores a value.
#[utoipa::path(
    put,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, description = "The key", min_length = 1),
        ("ttl" = Option<String>, Query, nullable = false, description = "Time to live: `30s`, `5m`, `1h`, `250ms` or whole seconds (any humantime duration is accepted); none clears any TTL", pattern = "^[1-9][0-9]{0,8}(ms|s|m|h)?$"),
        ("Cask-Ttl" = Option<String>, Header, nullable = false, description = "Time to live, if `?ttl=` is not given", pattern = "^[1-9][0-9]{0,8}(ms|s|m|h)?$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Write only if the key's ETag is one of these (`*`: if it exists)", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "`*`: create only; ETags: write only if none matches", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
    ),
    request_body(description = "The value: any bytes, any content type", content(
        (Option<RawBytes> = "application/octet-stream"),
        (Option<String> = "text/plain"),
    )),
    responses(
        (status = 201, description = "Created", body = PutResult,
            headers(("ETag" = String, description = "The new version"), ("Location" = String, description = "The key's URL"))),
        (status = 200, description = "Replaced", body = PutResult, headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "Invalid key, TTL or header", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "A conditional write to a key holding another Redis type", body = ErrorBody),
        (status = 412, description = "A precondition failed", body = ErrorBody),
        (status = 413, description = "The value is over the engine's value limit", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
        (status = 503, description = "The database refuses writes (failed fsync) or the write is not durable", body = ErrorBody),
    )
)]
pub async fn put_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let res = async {
        let key = key_from_path(uri.path(), PREFIX)?;
        let pre = Preconditions::from_headers(&headers)?;
        let ttl = ttl_of(&uri, &headers)?;
        let value = read_body(&headers, body, state.body_limit(), "value").await?;
        let expire_at = ttl.map(|ms| state.shared.store.db.now_ms().saturating_add(ms));
        let (version, created) = put_string(&state, &key, &value, &pre, expire_at)?;
        state.durable(version).await?;
        Ok::<_, ApiError>((version, created))
    }
    .await;
    match res {
        Err(e) => e.into_response(),
        Ok((version, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut resp = (status, Json(PutResult { version, created })).into_response();
            resp.headers_mut().insert(header::ETAG, etag(version));
            if created && let Ok(loc) = HeaderValue::from_str(uri.path()) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            resp
        }
    }
}

/// Deletes a key.
#[utoipa::path(
    delete,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, description = "The key", min_length = 1),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Delete only if the key's ETag is one of these", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "Delete only if no ETag matches", pattern = r#"^[ \t]*(\*|(W/)?("[!#-~]*"|[!#-+\--~]+)([ \t]*,[ \t]*(W/)?("[!#-~]*"|[!#-+\--~]+))*)[ \t]*$"#),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid key or header", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "A conditional delete of a key holding another Redis type", body = ErrorBody),
        (status = 412, description = "A precondition failed", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
        (status = 503, description = "The database refuses writes or the delete is not durable", body = ErrorBody),
    )
)]
pub async fn delete_key(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let res = async {
        let key = key_from_path(uri.path(), PREFIX)?;
        let pre = Preconditions::from_headers(&headers)?;
        let Some(version) = delete_string(&state, &key, &pre)? else {
            return Err(ApiError::not_found());
        };
        state.durable(version).await
    }
    .await;
    match res {
        Err(e) => e.into_response(),
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_follow_rfc_9110_comparison() {
        assert_eq!(TagList::parse(r#""1", "junk"#), None);
        assert_eq!(TagList::parse(r#""a b""#), None);
        assert_eq!(TagList::parse("1,,2"), None);
        assert_eq!(TagList::parse("1 2"), None);
        assert_eq!(
            TagList::parse("\t\"a,b\" ,\tW/\"\"\t"),
            Some(TagList::Tags(vec![
                (false, "a,b".into()),
                (true, String::new())
            ]))
        );
        assert_eq!(
            TagList::parse(r#"7, W/8"#),
            Some(TagList::Tags(vec![(false, "7".into()), (true, "8".into())]))
        );
        assert_eq!(TagList::parse(""), None);
        assert_eq!(TagList::parse(r#""a"b""#), None);
        let t = TagList::parse(r#""1", W/"2""#).unwrap();
        assert!(t.strong_match(Some(1)));
        assert!(!t.strong_match(Some(2)), "weak tags never match strongly");
        assert!(t.weak_match(Some(2)));
        assert!(!t.weak_match(Some(3)));
        assert!(!t.strong_match(None));
        assert!(TagList::parse(" * ").unwrap().strong_match(Some(9)));
        assert!(!TagList::parse("*").unwrap().weak_match(None));
    }

    #[test]
    fn preconditions_give_304_for_reads_and_412_for_writes() {
        let pre = Preconditions {
            if_match: None,
            if_none_match: TagList::parse("\"5\""),
        };
        assert_eq!(pre.evaluate(Some(5), true), Verdict::NotModified);
        assert_eq!(pre.evaluate(Some(5), false), Verdict::Failed);
        assert_eq!(pre.evaluate(Some(6), false), Verdict::Proceed);
        let create_only = Preconditions {
            if_match: None,
            if_none_match: Some(TagList::Any),
        };
        assert_eq!(create_only.evaluate(None, false), Verdict::Proceed);
        assert_eq!(create_only.evaluate(Some(1), false), Verdict::Failed);
    }

    #[test]
    fn ttls_parse_or_are_refused() {
        assert_eq!(parse_ttl("30s").unwrap(), 30_000);
        assert_eq!(parse_ttl("2").unwrap(), 2_000);
        assert_eq!(parse_ttl("250ms").unwrap(), 250);
        for bad in ["", "0", "-1", "soon", "0s", "99999999999999999999"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
