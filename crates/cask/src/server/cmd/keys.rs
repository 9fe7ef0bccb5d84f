//! Keyspace commands: DEL UNLINK EXISTS TOUCH TYPE KEYS SCAN RANDOMKEY RENAME RENAMENX COPY
//! MOVE EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME PEXPIRETIME TTL PTTL PERSIST OBJECT
//! MEMORY.
//!
//! SCAN cursors: the keyspace is an ordered map, so a cursor stands for "the last key
//! returned". Redis clients expect a number, so the server keeps a bounded table from
//! cursor number to key (as Kvrocks does). A cursor that fell out of the table (or was never
//! issued) restarts the iteration: keys may then be returned twice, never missed.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::Mutex;

use bytes::Bytes;
use cask_engine::Batch;

use super::{CmdError, CmdResult, Ctx, ScanOptions, int_arg, is, scan_options};
use crate::server::frame::Frame;
use crate::server::glob;
use crate::server::keyspace::{DATABASES, NS_KEY, TYPE_LIST, TYPE_ZSET, engine_key};

/// Most cursors remembered at once.
const MAX_CURSORS: usize = 16 * 1024;

#[derive(Debug, Default)]
struct CursorTable {
    map: HashMap<u64, (u8, Vec<u8>)>,
    order: VecDeque<u64>,
    next: u64,
}

/// The table of live SCAN cursors.
#[derive(Debug, Default)]
pub struct Cursors(Mutex<CursorTable>);

impl Cursors {
    fn issue(&self, db: u8, key: Vec<u8>) -> u64 {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Never 0, which means "start" and "done".
        t.next = t.next.wrapping_add(1).max(1);
        let id = t.next;
        if t.order.len() >= MAX_CURSORS
            && let Some(old) = t.order.pop_front()
        {
            t.map.remove(&old);
        }
        t.order.push_back(id);
        t.map.insert(id, (db, key));
        id
    }

    fn resolve(&self, db: u8, id: u64) -> Option<Vec<u8>> {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.map
            .get(&id)
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
    }
}

/// DEL key... (and UNLINK)
pub fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let store = &ctx.shared.store;
    let keys: Vec<&[u8]> = args.iter().map(|k| &k[..]).collect();
    let _lock = store.lock(db, &keys);
    let mut batch = Batch::new();
    let mut seen = std::collections::HashSet::new();
    for k in &keys {
        if seen.insert(*k) && store.meta(db, k)?.is_some() {
            batch.delete(engine_key(db, k));
        }
    }
    let n = batch.len();
    if n > 0 {
        let replaced: Vec<(u8, &[u8])> = seen.into_iter().map(|k| (db, k)).collect();
        let v = store.write_keys(&batch, &replaced)?;
        ctx.wrote(v);
    }
    Ok(Frame::Integer(n as i64))
}

/// EXISTS key... (and TOUCH): counts every argument that names a live key.
pub fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let mut n = 0;
    for k in args {
        if ctx.store().meta(ctx.db(), k)?.is_some() {
            n += 1;
        }
    }
    Ok(Frame::Integer(n))
}

/// TYPE key
pub fn type_(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let t = ctx
        .store()
        .get(ctx.db(), &args[0])?
        .map_or("none", |v| v.type_name());
    Ok(Frame::Simple(t.into()))
}

/// The literal prefix of a glob pattern (bytes before the first special character).
fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// KEYS pattern
pub fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let pattern = &args[0];
    let prefix = literal_prefix(pattern);
    let lo = Bound::Included(engine_key(db, prefix));
    let hi = Bound::Excluded(vec![NS_KEY, db + 1]);
    let mut out = Vec::new();
    for k in ctx.store().db.keys((lo, hi)) {
        let k = k?;
        let user = &k[2..];
        if !user.starts_with(prefix) {
            break;
        }
        if glob::matches(pattern, user) {
            out.push(Frame::bulk(Bytes::copy_from_slice(user)));
        }
    }
    Ok(Frame::Array(out))
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
pub fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CmdError::err("invalid cursor"))?;
    let ScanOptions {
        pattern,
        count,
        type_filter,
    } = scan_options(args, 1, true)?;
    let db = ctx.db();
    let after = if cursor == 0 {
        None
    } else {
        ctx.shared.cursors.resolve(db, cursor)
    };
    let store = ctx.store();
    let mut out = Vec::new();
    let mut last = None;
    let mut iter = store.keys_from(db, after.as_deref());
    let mut visited = 0i64;
    let mut done = true;
    for k in iter.by_ref() {
        let k = k?;
        visited += 1;
        let keep = pattern.is_none_or(|p| glob::matches(p, &k))
            && match type_filter {
                None => true,
                Some(t) => store
                    .get(db, &k)?
                    .is_some_and(|v| v.type_name().as_bytes().eq_ignore_ascii_case(t)),
            };
        if keep {
            out.push(Frame::bulk(Bytes::copy_from_slice(&k)));
        }
        if visited >= count {
            last = Some(k);
            done = false;
            break;
        }
    }
    // Report 0 right away when nothing is left after the last key.
    if !done && iter.next().is_none() {
        done = true;
    }
    let next = match (done, last) {
        (false, Some(k)) => ctx.shared.cursors.issue(db, k),
        _ => 0,
    };
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(out),
    ]))
}

/// RANDOMKEY: the first key at or after a random point of the keyspace.
pub fn randomkey(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(ctx.now_ms());
    let probe = h.finish().to_be_bytes();
    let hi = Bound::Excluded(vec![NS_KEY, db + 1]);
    let from = |lo: Bound<Vec<u8>>| -> CmdResult<Option<Vec<u8>>> {
        match ctx.store().db.keys((lo, hi.clone())).next() {
            Some(k) => Ok(Some(k?[2..].to_vec())),
            None => Ok(None),
        }
    };
    let key = match from(Bound::Included(engine_key(db, &probe)))? {
        Some(k) => Some(k),
        None => from(Bound::Included(engine_key(db, b"")))?,
    };
    Ok(key.map_or(Frame::Null, Frame::bulk))
}

fn rename_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> CmdResult<Frame> {
    let (src, dst) = (&args[0], &args[1]);
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[src, dst]);
    let Some(val) = store.get(db, src)? else {
        return Err(CmdError::no_such_key());
    };
    if src == dst {
        return Ok(if nx { Frame::Integer(0) } else { Frame::ok() });
    }
    if nx && store.meta(db, dst)?.is_some() {
        return Ok(Frame::Integer(0));
    }
    let ttl = store.meta(db, src)?.and_then(|m| m.expire_at);
    let mut batch = Batch::new();
    store.batch_copy(&mut batch, (db, src), (db, dst), &val, ttl)?;
    batch.delete(engine_key(db, src));
    let v = store.write_keys(&batch, &[(db, dst), (db, src)])?;
    store.ready.signal(db, dst);
    ctx.wrote(v);
    Ok(if nx { Frame::Integer(1) } else { Frame::ok() })
}

/// RENAME key newkey
pub fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    rename_generic(ctx, args, false)
}

/// RENAMENX key newkey
pub fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    rename_generic(ctx, args, true)
}

fn db_index(arg: &[u8]) -> CmdResult<u8> {
    let n = int_arg(arg)?;
    if n < 0 || n >= DATABASES as i64 {
        return Err(CmdError::err("DB index is out of range"));
    }
    Ok(n as u8)
}

/// COPY source destination [DB index] [REPLACE]
pub fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (src, dst) = (&args[0], &args[1]);
    let db = ctx.db();
    let mut dst_db = db;
    let mut replace = false;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "REPLACE") {
            replace = true;
        } else if is(&args[i], "DB") && i + 1 < args.len() {
            dst_db = db_index(&args[i + 1])?;
            i += 1;
        } else {
            return Err(CmdError::syntax());
        }
        i += 1;
    }
    if src == dst && db == dst_db {
        return Err(CmdError::err("source and destination objects are the same"));
    }
    let store = &ctx.shared.store;
    let _lock = store.lock2((db, src), (dst_db, dst));
    let Some(val) = store.get(db, src)? else {
        return Ok(Frame::Integer(0));
    };
    if !replace && store.meta(dst_db, dst)?.is_some() {
        return Ok(Frame::Integer(0));
    }
    let ttl = store.meta(db, src)?.and_then(|m| m.expire_at);
    let mut batch = Batch::new();
    store.batch_copy(&mut batch, (db, src), (dst_db, dst), &val, ttl)?;
    let v = store.write_keys(&batch, &[(dst_db, dst)])?;
    store.ready.signal(dst_db, dst);
    ctx.wrote(v);
    Ok(Frame::Integer(1))
}

/// MOVE key db
pub fn move_(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let db = ctx.db();
    let dst_db = db_index(&args[1])?;
    if dst_db == db {
        return Err(CmdError::err("source and destination objects are the same"));
    }
    let store = &ctx.shared.store;
    let _lock = store.lock2((db, key), (dst_db, key));
    let Some(val) = store.get(db, key)? else {
        return Ok(Frame::Integer(0));
    };
    if store.meta(dst_db, key)?.is_some() {
        return Ok(Frame::Integer(0));
    }
    let ttl = store.meta(db, key)?.and_then(|m| m.expire_at);
    let mut batch = Batch::new();
    store.batch_copy(&mut batch, (db, key), (dst_db, key), &val, ttl)?;
    batch.delete(engine_key(db, key));
    let v = store.write_keys(&batch, &[(db, key)])?;
    store.ready.signal(dst_db, key);
    ctx.wrote(v);
    Ok(Frame::Integer(1))
}

#[derive(Clone, Copy, Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn expire_flags(args: &[Bytes]) -> CmdResult<ExpireFlags> {
    let mut f = ExpireFlags::default();
    for a in args {
        if is(a, "NX") {
            f.nx = true;
        } else if is(a, "XX") {
            f.xx = true;
        } else if is(a, "GT") {
            f.gt = true;
        } else if is(a, "LT") {
            f.lt = true;
        } else {
            return Err(CmdError::err(format!(
                "Unsupported option {}",
                super::truncate(a, 128)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(CmdError::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(CmdError::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

fn expire_generic(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    seconds: bool,
    relative: bool,
    name: &str,
) -> CmdResult<Frame> {
    let key = &args[0];
    let flags = expire_flags(&args[2..])?;
    let bad = || CmdError::err(format!("invalid expire time in '{name}' command"));
    let mut when = int_arg(&args[1])?;
    if seconds {
        when = when.checked_mul(1000).ok_or_else(bad)?;
    }
    let now = ctx.now_ms() as i64;
    if relative {
        when = when.checked_add(now).ok_or_else(bad)?;
    }
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let Some(meta) = store.meta(db, key)? else {
        return Ok(Frame::Integer(0));
    };
    let current = meta.expire_at.map(|c| c as i64);
    if (flags.nx && current.is_some())
        || (flags.xx && current.is_none())
        || (flags.gt && current.is_none_or(|c| when <= c))
        || (flags.lt && current.is_some_and(|c| when >= c))
    {
        return Ok(Frame::Integer(0));
    }
    if when <= now {
        if store.delete(db, key)? {
            let v = store.db.last_version();
            ctx.wrote(v);
        }
        return Ok(Frame::Integer(1));
    }
    let Some(val) = store.get(db, key)? else {
        return Ok(Frame::Integer(0));
    };
    let v = store.put(db, key, val.tag, &val.data, Some(when as u64))?;
    ctx.wrote(v);
    Ok(Frame::Integer(1))
}

/// EXPIRE key seconds [NX|XX|GT|LT]
pub fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    expire_generic(ctx, args, true, true, "expire")
}

/// PEXPIRE key ms [NX|XX|GT|LT]
pub fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    expire_generic(ctx, args, false, true, "pexpire")
}

/// EXPIREAT key unix-seconds [NX|XX|GT|LT]
pub fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    expire_generic(ctx, args, true, false, "expireat")
}

/// PEXPIREAT key unix-ms [NX|XX|GT|LT]
pub fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    expire_generic(ctx, args, false, false, "pexpireat")
}

fn ttl_generic(ctx: &mut Ctx<'_>, key: &[u8], ms: bool, absolute: bool) -> CmdResult<Frame> {
    let Some(meta) = ctx.store().meta(ctx.db(), key)? else {
        return Ok(Frame::Integer(-2));
    };
    let Some(at) = meta.expire_at else {
        return Ok(Frame::Integer(-1));
    };
    let ttl = if absolute {
        at as i64
    } else {
        (at as i64 - ctx.now_ms() as i64).max(0)
    };
    Ok(Frame::Integer(if ms { ttl } else { (ttl + 500) / 1000 }))
}

/// TTL key
pub fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    ttl_generic(ctx, &args[0], false, false)
}

/// PTTL key
pub fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    ttl_generic(ctx, &args[0], true, false)
}

/// EXPIRETIME key
pub fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    ttl_generic(ctx, &args[0], false, true)
}

/// PEXPIRETIME key
pub fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    ttl_generic(ctx, &args[0], true, true)
}

/// PERSIST key
pub fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    if store.meta(db, key)?.and_then(|m| m.expire_at).is_none() {
        return Ok(Frame::Integer(0));
    }
    let Some(val) = store.get(db, key)? else {
        return Ok(Frame::Integer(0));
    };
    let v = store.put(db, key, val.tag, &val.data, None)?;
    ctx.wrote(v);
    Ok(Frame::Integer(1))
}

/// OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ|HELP key
pub fn object(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let sub = &args[0];
    if is(sub, "HELP") {
        return Ok(Frame::Array(
            ["OBJECT <ENCODING|REFCOUNT|IDLETIME|FREQ> <key>"]
                .iter()
                .map(|l| Frame::Simple((*l).into()))
                .collect(),
        ));
    }
    let known = ["ENCODING", "REFCOUNT", "IDLETIME", "FREQ"];
    if !known.iter().any(|k| is(sub, k)) {
        return Err(CmdError::unknown_subcommand(sub, "object"));
    }
    let [key] = &args[1..] else {
        return Err(CmdError::arity(&format!(
            "object|{}",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        )));
    };
    let Some(val) = ctx.store().get(ctx.db(), key)? else {
        return Ok(Frame::Null);
    };
    if is(sub, "ENCODING") {
        // Collections are one record per element whatever their size: report the name of
        // Redis's encoding for large collections of the type.
        let enc = if val.is_collection() {
            match val.tag {
                TYPE_LIST => "quicklist",
                TYPE_ZSET => "skiplist",
                _ => "hashtable",
            }
        } else if val.data.len() <= 20 && crate::server::parse::parse_i64(&val.data).is_some() {
            "int"
        } else if val.data.len() <= 44 {
            "embstr"
        } else {
            "raw"
        };
        Ok(Frame::bulk(enc))
    } else if is(sub, "REFCOUNT") {
        Ok(Frame::Integer(1))
    } else if is(sub, "IDLETIME") {
        Ok(Frame::Integer(0))
    } else {
        Err(CmdError::err(
            "An LFU maxmemory policy is not selected, access frequency not tracked. Please \
             note that when switching between policies at runtime LRU and LFU data will take \
             some time to adjust.",
        ))
    }
}

/// Estimated index memory per engine record beyond its key bytes: the index entry (32-byte
/// key slot, 28-byte location) and its share of the B-tree node.
pub const INDEX_ENTRY_BYTES: u64 = 72;

/// MEMORY USAGE key [SAMPLES count] | DOCTOR | HELP
///
/// cask keeps values on disk, so USAGE reports the key's share of the server's memory: the
/// in-memory index entries of its records (the key record and, for a collection, one per
/// element, estimated from `count` sampled elements; `SAMPLES 0` reads them all).
pub fn memory(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let sub = &args[0];
    if is(sub, "HELP") {
        return Ok(Frame::Array(
            [
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "USAGE <key> [SAMPLES <count>]",
                "    Estimate the memory the key's index entries take (values are on disk).",
                "DOCTOR",
                "    Report about memory problems.",
            ]
            .iter()
            .map(|l| Frame::Simple((*l).into()))
            .collect(),
        ));
    }
    if is(sub, "DOCTOR") {
        if args.len() != 1 {
            return Err(CmdError::arity("memory|doctor"));
        }
        return Ok(Frame::bulk(
            "cask keeps values on disk and only keys and their locations in memory: \
             INFO's # Cask section shows the key count; nothing else to report.",
        ));
    }
    if !is(sub, "USAGE") {
        return Err(CmdError::unknown_subcommand(sub, "memory"));
    }
    let Some(key) = args.get(1) else {
        return Err(CmdError::arity("memory|usage"));
    };
    let mut samples = 5u64;
    let mut rest = &args[2..];
    while let [opt, value, tail @ ..] = rest {
        if !is(opt, "SAMPLES") {
            return Err(CmdError::syntax());
        }
        let n = int_arg(value)?;
        if n < 0 {
            return Err(CmdError::syntax());
        }
        samples = if n == 0 { u64::MAX } else { n as u64 };
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(CmdError::syntax());
    }
    let db = ctx.db();
    let store = ctx.store();
    if store.meta(db, key)?.is_none() {
        return Ok(Frame::Null);
    }
    let mut bytes = engine_key(db, key).len() as u64 + INDEX_ENTRY_BYTES;
    if let Some(coll) = store.any_coll(db, key)? {
        let (mut seen, mut sub_bytes) = (0u64, 0u64);
        for sub in coll.keys(store, Bound::Unbounded, Bound::Unbounded, false) {
            if seen >= samples {
                break;
            }
            sub_bytes += sub?.len() as u64;
            seen += 1;
        }
        // Sorted sets have two records per member (by member and by score).
        let per_member = if coll.meta.tag == TYPE_ZSET { 2 } else { 1 };
        let records = coll.meta.count * per_member;
        let avg_sub = sub_bytes.checked_div(seen).unwrap_or(0);
        bytes += records * (coll.prefix_len() as u64 + avg_sub + INDEX_ENTRY_BYTES);
    }
    Ok(Frame::Integer(i64::try_from(bytes).unwrap_or(i64::MAX)))
}
