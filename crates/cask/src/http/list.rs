//! `GET /v1/kv`: database 0's keys in order, as JSON pages with an opaque cursor.
//!
//! Binary-safe encoding: a key (or a string value) that is valid UTF-8 is sent as the JSON
//! string `key` (`value`); otherwise it is sent base64-encoded (standard alphabet, padded) as
//! `key_base64` (`value_base64`). With `encoding=base64` every key and value is sent
//! base64-encoded. Values are sent for strings only; a key of another Redis type is listed
//! with its `type` and no value. With `keys_only=true` no value is read (and so no `type`
//! is known either): each entry has its key, version and expiry.

use std::ops::Bound;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{AppState, DB};
use crate::server::keyspace::{NS_KEY, Value, engine_key};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Cursors: base64url without padding; any string of that alphabet decodes (trailing bits
/// are ignored), so every cursor the OpenAPI pattern allows is valid.
const CURSOR: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// The syntax of a cursor.
pub const CURSOR_PATTERN: &str = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$";

/// How keys and values are encoded in the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 as JSON strings, other bytes as `*_base64`.
    Text,
    /// Everything as `*_base64`.
    Base64,
}

/// One listed key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    /// The key, when it is valid UTF-8 (and `encoding` is not `base64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key base64-encoded, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// Redis type: `string`, `hash`, `list`, `set`, `zset` (absent with `keys_only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The key's version (its ETag without quotes).
    pub version: u64,
    /// Expiry in ms since the Unix epoch, if the key has a TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// A string's value, when it is valid UTF-8 (and `encoding` is not `base64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A string's value base64-encoded, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// A page of the listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    /// The entries, in key order (descending with `reverse=true`).
    pub items: Vec<Entry>,
    /// Pass as `cursor` (with the same other parameters) for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Splits a query string into names and percent-decoded byte values (`+` is a space).
pub fn query_pairs(q: &str) -> Vec<(String, Vec<u8>)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| -> Vec<u8> {
                percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
            };
            (String::from_utf8_lossy(&dec(n)).into_owned(), dec(v))
        })
        .collect()
}

/// Parsed listing parameters.
#[derive(Debug, Default)]
struct Params {
    prefix: Option<Vec<u8>>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    limit: Option<usize>,
    reverse: bool,
    keys_only: bool,
    base64: bool,
    cursor: Option<Vec<u8>>,
}

fn parse_bool(name: &str, v: &[u8]) -> ApiResult<bool> {
    match v {
        b"true" | b"1" => Ok(true),
        b"false" | b"0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid {name}: expected true or false"
        ))),
    }
}

fn text(name: &str, v: Vec<u8>) -> ApiResult<String> {
    String::from_utf8(v).map_err(|_| ApiError::bad_request(format!("invalid {name}")))
}

fn parse_params(q: &str, max: usize) -> ApiResult<Params> {
    let mut p = Params::default();
    for (name, v) in query_pairs(q) {
        match name.as_str() {
            "prefix" => p.prefix = Some(v),
            "start" => p.start = Some(v),
            "end" => p.end = Some(v),
            "limit" => {
                let n: u64 = text("limit", v)?.parse().map_err(|_| {
                    ApiError::bad_request("invalid limit: expected a positive integer")
                })?;
                if n == 0 || n > i32::MAX as u64 {
                    return Err(ApiError::bad_request(
                        "invalid limit: must be between 1 and 2147483647",
                    ));
                }
                // Larger pages are cut to --http-max-list-limit.
                p.limit = Some(usize::try_from(n).unwrap_or(usize::MAX).min(max));
            }
            "reverse" => p.reverse = parse_bool("reverse", &v)?,
            "keys_only" => p.keys_only = parse_bool("keys_only", &v)?,
            "encoding" => {
                p.base64 = match v.as_slice() {
                    b"text" => false,
                    b"base64" => true,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid encoding: expected text or base64",
                        ));
                    }
                }
            }
            "cursor" => {
                let c = decode_cursor(&text("cursor", v)?)?;
                // An empty cursor is the start of the listing.
                p.cursor = (!c.is_empty()).then_some(c);
            }
            _ => {}
        }
    }
    Ok(p)
}

/// A cursor: the last key returned, base64url-encoded. The next page starts after it in the
/// listing's direction.
fn encode_cursor(last: &[u8]) -> String {
    CURSOR.encode(last)
}

/// The key of a cursor.
fn decode_cursor(c: &str) -> ApiResult<Vec<u8>> {
    CURSOR
        .decode(c)
        .map_err(|_| ApiError::bad_request("invalid cursor"))
}

/// The smallest byte string greater than every string starting with `p`, if any.
fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut s = p.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

fn max_lo(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    use Bound::{Excluded, Included, Unbounded};
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if x > y {
                Included(x)
            } else {
                Excluded(y)
            }
        }
    }
}

fn min_hi(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    use Bound::{Excluded, Included, Unbounded};
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.min(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if x < y {
                Included(x)
            } else {
                Excluded(y)
            }
        }
    }
}

fn encode_bytes(b: &[u8], base64: bool) -> (Option<String>, Option<String>) {
    match (base64, std::str::from_utf8(b)) {
        (false, Ok(s)) => (Some(s.to_string()), None),
        _ => (None, Some(STANDARD.encode(b))),
    }
}

/// Lists keys in order.
#[utoipa::path(
    get,
    path = "/v1/kv",
    tag = "kv",
    params(
        ("prefix" = Option<String>, Query, nullable = false, description = "Only keys starting with this (percent-encoded bytes)"),
        ("start" = Option<String>, Query, nullable = false, description = "First key (inclusive)"),
        ("end" = Option<String>, Query, nullable = false, description = "Last key (exclusive)"),
        ("limit" = Option<i32>, Query, nullable = false, description = "Page size, default 100; larger than --http-max-list-limit (default 10000) is cut to it", minimum = 1),
        ("reverse" = Option<bool>, Query, nullable = false, description = "Descending order"),
        ("cursor" = Option<String>, Query, nullable = false, description = "`next_cursor` of the previous page (empty: the start)", pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$"),
        ("keys_only" = Option<bool>, Query, nullable = false, description = "Do not read values (no `type`, no `value`)"),
        ("encoding" = Option<Encoding>, Query, nullable = false, description = "`text` (default: UTF-8 as strings, other bytes as `*_base64`) or `base64` (everything as `*_base64`)"),
    ),
    responses(
        (status = 200, description = "A page of keys", body = Page),
        (status = 400, description = "Invalid parameter or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 500, description = "Engine error", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, uri: Uri) -> Response {
    match list_page(&state, uri.query().unwrap_or("")) {
        Ok(page) => Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

fn list_page(state: &AppState, query: &str) -> ApiResult<Page> {
    let max = state.shared.config.http_max_list_limit;
    let p = parse_params(query, max)?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT.min(max));
    let db_lo = engine_key(DB, b"");
    let db_hi = vec![NS_KEY, DB + 1];
    let mut lo = Bound::Included(db_lo.clone());
    let mut hi = Bound::Excluded(db_hi);
    if let Some(prefix) = &p.prefix {
        lo = max_lo(lo, Bound::Included(engine_key(DB, prefix)));
        if let Some(succ) = prefix_successor(prefix) {
            hi = min_hi(hi, Bound::Excluded(engine_key(DB, &succ)));
        }
    }
    if let Some(start) = &p.start {
        lo = max_lo(lo, Bound::Included(engine_key(DB, start)));
    }
    if let Some(end) = &p.end {
        hi = min_hi(hi, Bound::Excluded(engine_key(DB, end)));
    }
    if let Some(last) = &p.cursor {
        if p.reverse {
            hi = min_hi(hi, Bound::Excluded(engine_key(DB, last)));
        } else {
            lo = max_lo(lo, Bound::Excluded(engine_key(DB, last)));
        }
    }
    let db = &state.shared.store.db;
    let mut keys = db.keys((lo, hi));
    if p.reverse {
        keys = keys.reverse();
    }
    let mut items = Vec::with_capacity(limit.min(1024));
    let mut last: Option<Vec<u8>> = None;
    let mut more = false;
    for k in keys {
        let k = k?;
        if items.len() == limit {
            more = true;
            break;
        }
        let user = &k[db_lo.len()..];
        let Some(meta) = db.metadata(&k)? else {
            continue;
        };
        let (key, key_base64) = encode_bytes(user, p.base64);
        let mut entry = Entry {
            key,
            key_base64,
            kind: None,
            version: meta.version,
            expires_at: meta.expire_at,
            value: None,
            value_base64: None,
        };
        if !p.keys_only {
            // Deleted since the key listing: skip it.
            let Some((raw, version)) = db.get_versioned(&k)? else {
                continue;
            };
            entry.version = version;
            let v = match raw.split_first() {
                Some((&tag, data)) => Value {
                    tag,
                    data: bytes::Bytes::copy_from_slice(data),
                },
                None => Value {
                    tag: crate::server::keyspace::TYPE_STRING,
                    data: bytes::Bytes::new(),
                },
            };
            entry.kind = Some(v.type_name().to_string());
            if v.tag == crate::server::keyspace::TYPE_STRING {
                (entry.value, entry.value_base64) = encode_bytes(&v.data, p.base64);
            }
        }
        last = Some(user.to_vec());
        items.push(entry);
    }
    let next_cursor = match (more, last) {
        (true, Some(l)) => Some(encode_cursor(&l)),
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_bytes() {
        let q = query_pairs("prefix=a%2Fb+c&x&limit=5&bin=%FF%00");
        assert_eq!(q[0], ("prefix".to_string(), b"a/b c".to_vec()));
        assert_eq!(q[1], ("x".to_string(), Vec::new()));
        assert_eq!(q[2], ("limit".to_string(), b"5".to_vec()));
        assert_eq!(q[3].1, vec![0xFF, 0]);
    }

    #[test]
    fn prefix_successor_skips_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = encode_cursor(b"k\x00ey");
        assert_eq!(decode_cursor(&c).unwrap(), b"k\x00ey".to_vec());
        // Whatever matches the documented pattern decodes.
        for ok in ["", "AA", "_w", "abc", "AAAA", "AAAAz-"] {
            assert!(decode_cursor(ok).is_ok(), "{ok}");
        }
        for bad in ["!!", "A", "a b", "+/", "AAAAA"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
