//! `dump` and `load`: every key of every database as JSON lines, binary-safe.
//!
//! One object per key: the key as `"key"` when it is valid UTF-8, else as `"key_b64"`
//! (standard base64 with padding); the same for `"value"` / `"value_b64"`; `"expire_at"`
//! (milliseconds since the Unix epoch) when the key has a TTL; `"db"` when the key is not in
//! database 0. A string is just that:
//!
//! ```text
//! {"key":"user:1","value":"alice"}
//! {"key_b64":"AP8=","value_b64":"//4=","expire_at":1795000000000}
//! {"db":3,"key":"other","value":"x"}
//! ```
//!
//! A hash, list, set or sorted set has `"type"` and its `"elements"` as stored (sub-key and
//! value of each element record, see docs/SERVER.md), plus `"head"`/`"tail"` for lists:
//!
//! ```text
//! {"key":"h","type":"hash","elements":[{"sub":"field","value":"v"}]}
//! ```
//!
//! `load` accepts exactly this format (unknown fields are rejected, so a typo does not
//! silently drop data) and writes strings in atomic batches: a malformed line stops the load
//! before the batch that contains it is written. A collection gets a new generation and is
//! written on its own, elements first and its metadata last, so an interrupted load never
//! shows half a collection.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cask_engine::{Batch, Db, Options};
use serde::{Deserialize, Serialize};

use crate::server::coll::{Coll, Meta, elem_prefix};
use crate::server::keyspace::{
    DATABASES, NS_KEY, TYPE_HASH, TYPE_LIST, TYPE_SET, TYPE_STRING, TYPE_ZSET, engine_key,
    type_name,
};

use super::progress::Progress;
use super::{CliError, CliResult, LoadArgs, open_existing, open_oneshot};

/// Bytes of keys and values after which a batch is written even if it has fewer entries.
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// One line of a dump.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    db: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_at: Option<u64>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elements: Option<Vec<Element>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tail: Option<u64>,
}

/// One element record of a collection.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Element {
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
}

/// Text when the bytes are UTF-8, else base64: `(text, b64)`.
fn encode(bytes: Vec<u8>) -> (Option<String>, Option<String>) {
    match String::from_utf8(bytes) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(B64.encode(e.as_bytes()))),
    }
}

/// The bytes of a field given as text or base64 (exactly one of the two).
fn decode(name: &str, text: Option<String>, b64: Option<String>) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(s), None) => Ok(s.into_bytes()),
        (None, Some(b)) => B64
            .decode(b.as_bytes())
            .map_err(|e| format!("\"{name}_b64\" is not valid base64: {e}")),
        (Some(_), Some(_)) => Err(format!("both \"{name}\" and \"{name}_b64\" given")),
        (None, None) => Err(format!("missing \"{name}\" (or \"{name}_b64\")")),
    }
}

/// `cask dump`: every live key of every database, in database and key order.
pub fn dump(dir: &Path) -> CliResult {
    let db = open_existing(dir)?;
    let mut out = BufWriter::new(io::stdout().lock());
    let range = (
        std::ops::Bound::Included(vec![NS_KEY]),
        std::ops::Bound::Excluded(vec![NS_KEY + 1]),
    );
    for item in db.scan(range) {
        let (ekey, value) = item?;
        // The database is ours alone, so only time can change the key between scan and
        // metadata: a key that expired in between is left out, like any expired key.
        let Some(meta) = db.metadata(&ekey)? else {
            continue;
        };
        let Some((&d, user)) = ekey[1..].split_first() else {
            continue;
        };
        let line = dump_line(&db, d, user, &value, meta.expire_at)?;
        serde_json::to_writer(&mut out, &line).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

/// The dump line of key `user` of database `d` with engine value `value`.
fn dump_line(
    db: &Db,
    d: u8,
    user: &[u8],
    value: &[u8],
    expire_at: Option<u64>,
) -> Result<Line, CliError> {
    let (key, key_b64) = encode(user.to_vec());
    let mut line = Line {
        db: (d != 0).then_some(d),
        key,
        key_b64,
        expire_at,
        ..Line::default()
    };
    let (tag, payload) = value.split_first().unwrap_or((&TYPE_STRING, &[]));
    if *tag == TYPE_STRING {
        (line.value, line.value_b64) = encode(payload.to_vec());
        return Ok(line);
    }
    let meta = Meta::decode(*tag, payload, expire_at)
        .map_err(|e| CliError::Message(format!("key {:?}: {}", line.key, e.0)))?;
    let mut elements = Vec::with_capacity(usize::try_from(meta.count).unwrap_or(0));
    let coll = Coll::from_meta(d, user, meta);
    for item in db.scan(coll.range()) {
        let (k, v) = item?;
        let (sub, sub_b64) = encode(k[coll.prefix_len()..].to_vec());
        let (value, value_b64) = encode(v);
        elements.push(Element {
            sub,
            sub_b64,
            value,
            value_b64,
        });
    }
    line.kind = Some(type_name(*tag).to_string());
    line.elements = Some(elements);
    if *tag == TYPE_LIST {
        line.head = Some(meta.head);
        line.tail = Some(meta.tail);
    }
    Ok(line)
}

/// `cask load [--file F] [--batch N]`: prints `loaded N keys`.
pub fn load(dir: &Path, args: LoadArgs) -> CliResult {
    let (input, total): (Box<dyn Read>, Option<u64>) = match &args.file {
        Some(path) => {
            let f = File::open(path)
                .map_err(|e| CliError::Message(format!("cannot open {}: {e}", path.display())))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        }
        None => (Box::new(io::stdin().lock()), None),
    };
    let mut input = BufReader::with_capacity(1 << 16, input);
    let db = open_oneshot(dir)?;
    let progress = match total {
        Some(_) => Progress::bytes("loading"),
        None => Progress::items("loading"),
    };
    let mut batch = Batch::new();
    let mut batch_bytes = 0u64;
    // Bound memory, and stay well inside the engine's batch limit even with large values.
    let max_batch_bytes = (db.options().max_batch_size / 4).min(MAX_BATCH_BYTES);
    let mut loaded = 0u64;
    let mut read = 0u64;
    let mut lineno = 0u64;
    let mut buf = Vec::new();
    let result = loop {
        buf.clear();
        let n = match input.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => break Err(CliError::Io(e)),
        };
        if n > 0 {
            lineno += 1;
            read += n as u64;
            let text = buf.trim_ascii();
            if !text.is_empty() {
                match parse_line(text, db.options()) {
                    Ok(Entry::String(key, value, expire_at)) => {
                        batch_bytes += (key.len() + value.len()) as u64;
                        batch.put_with_expiry(key, value, expire_at);
                    }
                    Ok(Entry::Collection(c)) => {
                        // Strings read so far first, then the collection on its own.
                        if !batch.is_empty() {
                            if let Err(e) = db.write(&batch) {
                                break Err(e.into());
                            }
                            loaded += batch.len() as u64;
                            batch.clear();
                            batch_bytes = 0;
                        }
                        if let Err(e) = load_collection(&db, c, max_batch_bytes) {
                            break Err(e.into());
                        }
                        loaded += 1;
                    }
                    Err(reason) => {
                        break Err(CliError::Message(format!(
                            "line {lineno}: {reason} ({loaded} keys from earlier lines were loaded, none from this batch)"
                        )));
                    }
                }
            }
        }
        let full = batch.len() >= args.batch as usize || batch_bytes >= max_batch_bytes;
        if full || (n == 0 && !batch.is_empty()) {
            if let Err(e) = db.write(&batch) {
                break Err(e.into());
            }
            loaded += batch.len() as u64;
            batch.clear();
            batch_bytes = 0;
        }
        match total {
            Some(total) => progress.update(read, total),
            None => progress.set(loaded + batch.len() as u64),
        }
        if n == 0 {
            break Ok(());
        }
    };
    progress.finish();
    // Close (and so sync) even after a bad line, so that earlier batches are durable.
    db.close()?;
    result?;
    println!("loaded {loaded} keys");
    Ok(ExitCode::SUCCESS)
}

/// A collection read from a dump: database, key, metadata (generation unset), elements.
#[derive(Debug, PartialEq)]
struct LoadedColl {
    db: u8,
    key: Vec<u8>,
    meta: Meta,
    elements: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One key read from a dump: a string (engine key, engine value, expiry) or a collection.
#[derive(Debug, PartialEq)]
enum Entry {
    String(Vec<u8>, Vec<u8>, Option<u64>),
    Collection(LoadedColl),
}

/// Writes a collection under a new generation: elements in batches, metadata last.
fn load_collection(db: &Db, c: LoadedColl, max_batch_bytes: u64) -> cask_engine::Result<()> {
    let mut meta = c.meta;
    // Never a generation this key used before (see server/coll.rs).
    meta.generation = db.last_version() + 1;
    let prefix = elem_prefix(c.db, &c.key, meta.generation);
    let mut batch = Batch::new();
    let mut bytes = 0u64;
    for (sub, value) in c.elements {
        let mut k = prefix.clone();
        k.extend_from_slice(&sub);
        bytes += (k.len() + value.len()) as u64;
        batch.put(k, value);
        if bytes >= max_batch_bytes || batch.len() >= 100_000 {
            db.write(&batch)?;
            batch.clear();
            bytes = 0;
        }
    }
    let mut v = vec![meta.tag];
    v.extend_from_slice(&meta.encode());
    batch.put_with_expiry(engine_key(c.db, &c.key), v, meta.expire_at);
    db.write(&batch)?;
    Ok(())
}

/// Parses one dump line, checking sizes against the limits of `opts` so that an oversized
/// entry is reported with its line number.
fn parse_line(text: &[u8], opts: &Options) -> Result<Entry, String> {
    let line: Line = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let key = decode("key", line.key, line.key_b64)?;
    let d = line.db.unwrap_or(0);
    if usize::from(d) >= DATABASES {
        return Err(format!("db {d} is out of range (0..{DATABASES})"));
    }
    let check = |what: &str, len: usize, limit: usize| {
        if len > limit {
            Err(format!(
                "{what} is {len} bytes, over the limit of {limit} bytes"
            ))
        } else {
            Ok(())
        }
    };
    // The engine key adds two bytes (namespace and database) to the user's key.
    check("key", key.len(), opts.max_key_size.saturating_sub(2))?;
    let Some(kind) = line.kind else {
        if line.elements.is_some() || line.head.is_some() || line.tail.is_some() {
            return Err("\"elements\", \"head\" and \"tail\" need a \"type\"".into());
        }
        let value = decode("value", line.value, line.value_b64)?;
        check("value", value.len(), opts.max_value_size.saturating_sub(1))?;
        let mut v = Vec::with_capacity(value.len() + 1);
        v.push(TYPE_STRING);
        v.extend_from_slice(&value);
        return Ok(Entry::String(engine_key(d, &key), v, line.expire_at));
    };
    let tag = match kind.as_str() {
        "string" => return Err("a string has a \"value\", not a \"type\"".into()),
        "hash" => TYPE_HASH,
        "list" => TYPE_LIST,
        "set" => TYPE_SET,
        "zset" => TYPE_ZSET,
        other => return Err(format!("unknown type {other:?} (hash, list, set, zset)")),
    };
    if line.value.is_some() || line.value_b64.is_some() {
        return Err("a collection has \"elements\", not a \"value\"".into());
    }
    let mut elements = Vec::new();
    for e in line.elements.unwrap_or_default() {
        let sub = decode("sub", e.sub, e.sub_b64)?;
        let value = decode("value", e.value, e.value_b64)?;
        check("element value", value.len(), opts.max_value_size)?;
        elements.push((sub, value));
    }
    if elements.is_empty() {
        return Err("a collection needs at least one element".into());
    }
    let mut meta = Meta::new(tag, 0);
    meta.expire_at = line.expire_at;
    if tag == TYPE_LIST {
        let (Some(head), Some(tail)) = (line.head, line.tail) else {
            return Err("a list needs \"head\" and \"tail\"".into());
        };
        meta.head = head;
        meta.tail = tail;
    }
    // Sorted sets store two records per member (by member and by score).
    let per_member = if tag == TYPE_ZSET { 2 } else { 1 };
    meta.count = (elements.len() / per_member) as u64;
    Ok(Entry::Collection(LoadedColl {
        db: d,
        key,
        meta,
        elements,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(text: &[u8]) -> Result<Entry, String> {
        super::parse_line(text, &Options::default())
    }

    #[test]
    fn parse_lines() {
        assert_eq!(
            parse_line(br#"{"key":"a","value_b64":"AP8=","expire_at":5}"#).unwrap(),
            Entry::String(b"k\0a".to_vec(), vec![TYPE_STRING, 0, 0xff], Some(5))
        );
        let Entry::Collection(c) =
            parse_line(br#"{"db":2,"key":"s","type":"set","elements":[{"sub":"m","value":""}]}"#)
                .unwrap()
        else {
            panic!("not a collection")
        };
        assert_eq!((c.db, c.meta.tag, c.meta.count), (2, TYPE_SET, 1));
        assert!(parse_line(br#"{"key":"s","type":"set","elements":[]}"#).is_err());
        assert!(
            parse_line(br#"{"key":"l","type":"list","elements":[{"sub":"x","value":""}]}"#)
                .unwrap_err()
                .contains("head")
        );
        assert!(parse_line(br#"{"db":16,"key":"a","value":""}"#).is_err());
        assert!(parse_line(br#"{"key":"a","type":"blob","elements":[]}"#).is_err());
        assert!(
            parse_line(br#"{"key":"a"}"#)
                .unwrap_err()
                .contains("missing \"value\"")
        );
        assert!(parse_line(br#"{"key":"a","key_b64":"YQ==","value":""}"#).is_err());
        assert!(parse_line(br#"{"key":"a","value":"b","extra":1}"#).is_err());
        assert!(
            parse_line(br#"{"key":"a","value_b64":"!!"}"#)
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            parse_line(b"not json")
                .unwrap_err()
                .contains("invalid JSON")
        );
    }
}
