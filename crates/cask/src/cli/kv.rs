//! `get`, `set`, `rm` and `scan`: the one-shot key-value commands.
//!
//! They address the same keys as the server: database 0 of `cask serve` (what `redis-cli`
//! sees without SELECT, and what the HTTP API serves), with values as strings. A key holding
//! a hash, list, set or sorted set is listed by `scan` with its type in place of a value,
//! and `get` refuses it. `dump`, `load`, `check`, `compact` and `stats` work on the whole
//! data directory (every database and type).

use std::io::{self, IsTerminal, Read, Write};
use std::ops::Bound;
use std::path::Path;
use std::process::ExitCode;

use cask_engine::{Db, WriteOptions};

use crate::server::keyspace::{NS_KEY, TYPE_STRING, engine_key, type_name};

use super::text::escape;
use super::{
    CliError, CliResult, GetArgs, RmArgs, ScanArgs, SetArgs, arg_bytes, open_existing, open_oneshot,
};

/// What `get` prints, and `rm` too, when the key is absent.
pub const NOT_FOUND: &str = "Key not found";

/// `cask get KEY`: the raw value, plus a newline only when stdout is a terminal.
pub fn get(dir: &Path, args: GetArgs) -> CliResult {
    let db = open_existing(dir)?;
    let value = get_string(&db, &arg_bytes(&args.key));
    db.close()?;
    let value = value?;
    let mut out = io::stdout().lock();
    match value {
        Some(value) => {
            out.write_all(&value)?;
            if io::stdout().is_terminal() {
                out.write_all(b"\n")?;
            }
        }
        None => writeln!(out, "{NOT_FOUND}")?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `cask set KEY VALUE [--ttl DURATION]`; `VALUE` of `-` reads stdin to its end.
pub fn set(dir: &Path, args: SetArgs) -> CliResult {
    let value = if args.value == "-" {
        let mut buf = Vec::new();
        io::stdin().lock().read_to_end(&mut buf)?;
        buf
    } else {
        arg_bytes(&args.value)
    };
    let db = open_oneshot(dir)?;
    let opts = WriteOptions {
        expire_at: args.ttl.map(|ttl| expire_at(&db, ttl)),
    };
    set_string(&db, &arg_bytes(&args.key), &value, opts)?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads string `key` of database 0; an error for a key of another type.
///
/// # Errors
/// Engine errors; a key holding a collection.
pub fn get_string(db: &Db, key: &[u8]) -> Result<Option<Vec<u8>>, CliError> {
    match db.get(&engine_key(0, key))? {
        None => Ok(None),
        Some(v) if v.first().is_none_or(|&t| t == TYPE_STRING) => {
            Ok(Some(v.get(1..).unwrap_or_default().to_vec()))
        }
        Some(v) => Err(CliError::Message(format!(
            "{} holds a {}, not a string (read it with redis-cli)",
            escape(key),
            type_name(v[0])
        ))),
    }
}

/// Writes string `key` of database 0 (replacing whatever it held).
///
/// # Errors
/// Engine errors.
pub fn set_string(db: &Db, key: &[u8], value: &[u8], opts: WriteOptions) -> Result<u64, CliError> {
    // The engine key and value carry two bytes and one byte of their own.
    for (what, len, limit) in [
        (
            "key",
            key.len(),
            db.options().max_key_size.saturating_sub(2),
        ),
        (
            "value",
            value.len(),
            db.options().max_value_size.saturating_sub(1),
        ),
    ] {
        if len > limit {
            return Err(CliError::Message(format!(
                "{what} is {len} bytes, over the limit of {limit} bytes"
            )));
        }
    }
    let mut v = Vec::with_capacity(value.len() + 1);
    v.push(TYPE_STRING);
    v.extend_from_slice(value);
    Ok(db.set_with(&engine_key(0, key), &v, opts)?)
}

/// Deletes `key` of database 0 (any type); returns whether it existed. A collection's
/// elements are removed by the server's sweeper when it next runs.
///
/// # Errors
/// Engine errors.
pub fn delete_key(db: &Db, key: &[u8]) -> Result<bool, CliError> {
    Ok(db.delete(&engine_key(0, key))?)
}

/// The absolute expiry (ms since the epoch) of a key written now with this time to live.
pub fn expire_at(db: &Db, ttl: std::time::Duration) -> u64 {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    db.now_ms().saturating_add(ms.max(1))
}

/// `cask rm KEY`: silent on success; `Key not found` and exit status 1 when absent.
pub fn rm(dir: &Path, args: RmArgs) -> CliResult {
    let db = open_existing(dir)?;
    let existed = delete_key(&db, &arg_bytes(&args.key))?;
    db.close()?;
    if existed {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{NOT_FOUND}");
        Ok(ExitCode::FAILURE)
    }
}

/// `cask scan [...]`: one `key<TAB>value` (or `key`) line per entry, escaped.
pub fn scan(dir: &Path, args: ScanArgs) -> CliResult {
    let db = open_existing(dir)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    write_scan(&db, &args, &mut out)?;
    out.flush()?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the entries selected by `args` to `out`; returns how many were written.
///
/// # Errors
/// Engine errors while reading, or I/O errors writing `out`.
pub fn write_scan(db: &Db, args: &ScanArgs, out: &mut dyn Write) -> Result<usize, CliError> {
    let range = scan_range(args);
    let scan = db.scan(range);
    let scan = if args.reverse { scan.reverse() } else { scan };
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut n = 0;
    if args.keys_only {
        for key in scan.into_keys().take(limit) {
            writeln!(out, "{}", escape(&key?[2..]))?;
            n += 1;
        }
    } else {
        for item in scan.take(limit) {
            let (key, value) = item?;
            match value.split_first() {
                Some((&tag, _)) if tag != TYPE_STRING => {
                    writeln!(out, "{}\t<{}>", escape(&key[2..]), type_name(tag))?;
                }
                _ => writeln!(
                    out,
                    "{}\t{}",
                    escape(&key[2..]),
                    escape(value.get(1..).unwrap_or_default())
                )?,
            }
            n += 1;
        }
    }
    Ok(n)
}

/// The engine key range of a scan: the intersection of `[start, end)` and the keys with
/// `prefix`, within database 0.
fn scan_range(args: &ScanArgs) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let prefix = args.prefix.as_ref().map(arg_bytes).unwrap_or_default();
    let mut lo = prefix.clone();
    if let Some(start) = args.start.as_ref().map(arg_bytes) {
        lo = lo.max(start);
    }
    let mut hi = prefix_end(&prefix);
    if let Some(end) = args.end.as_ref().map(arg_bytes) {
        hi = Some(match hi {
            Some(hi) => hi.min(end),
            None => end,
        });
    }
    (
        Bound::Included(engine_key(0, &lo)),
        Bound::Excluded(hi.map_or_else(|| vec![NS_KEY, 1], |hi| engine_key(0, &hi))),
    )
}

/// The smallest key greater than every key that starts with `prefix` (`None`: unbounded).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
