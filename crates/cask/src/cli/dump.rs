//! `dump` and `load`: every key as JSON lines, binary-safe.
//!
//! One object per line: the key as `"key"` when it is valid UTF-8, else as `"key_b64"`
//! (standard base64 with padding); the same for `"value"` / `"value_b64"`; and
//! `"expire_at"` (milliseconds since the Unix epoch) when the key has a TTL. For example:
//!
//! ```text
//! {"key":"user:1","value":"alice"}
//! {"key_b64":"AP8=","value_b64":"//4=","expire_at":1795000000000}
//! ```
//!
//! `load` accepts exactly this format (unknown fields are rejected, so a typo does not
//! silently drop data) and writes it in atomic batches: a malformed line stops the load
//! before the batch that contains it is written.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cask_engine::{Batch, Options};
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use super::{CliError, CliResult, LoadArgs, open_existing, open_oneshot};

/// Bytes of keys and values after which a batch is written even if it has fewer entries.
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// One line of a dump.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
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

/// `cask dump`: every live key, in key order.
pub fn dump(dir: &Path) -> CliResult {
    let db = open_existing(dir)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for item in db.scan(..) {
        let (key, value) = item?;
        // The database is ours alone, so only time can change the key between scan and
        // metadata: a key that expired in between is left out, like any expired key.
        let Some(meta) = db.metadata(&key)? else {
            continue;
        };
        let expire_at = meta.expire_at;
        let (key, key_b64) = encode(key);
        let (value, value_b64) = encode(value);
        let line = Line {
            key,
            key_b64,
            value,
            value_b64,
            expire_at,
        };
        serde_json::to_writer(&mut out, &line).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
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
                    Ok((key, value, expire_at)) => {
                        batch_bytes += (key.len() + value.len()) as u64;
                        batch.put_with_expiry(key, value, expire_at);
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

/// A key, its value and its expiry (ms since the epoch), as read from a dump.
type Entry = (Vec<u8>, Vec<u8>, Option<u64>);

/// Parses one dump line into key, value and expiry, checking them against the limits of
/// `opts` so that an oversized entry is reported with its line number.
fn parse_line(text: &[u8], opts: &Options) -> Result<Entry, String> {
    let line: Line = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let key = decode("key", line.key, line.key_b64)?;
    let value = decode("value", line.value, line.value_b64)?;
    for (what, len, limit) in [
        ("key", key.len(), opts.max_key_size),
        ("value", value.len(), opts.max_value_size),
    ] {
        if len > limit {
            return Err(format!(
                "{what} is {len} bytes, over the limit of {limit} bytes"
            ));
        }
    }
    Ok((key, value, line.expire_at))
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
            (b"a".to_vec(), vec![0, 0xff], Some(5))
        );
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
