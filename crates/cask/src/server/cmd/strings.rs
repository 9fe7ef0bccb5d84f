//! String commands: GET SET SETNX SETEX PSETEX MGET MSET MSETNX GETSET GETDEL GETEX APPEND
//! STRLEN INCR DECR INCRBY DECRBY INCRBYFLOAT GETRANGE SUBSTR SETRANGE SETBIT GETBIT LCS.
//!
//! Every write holds the key's stripe lock across its read and its write, so concurrent
//! INCRs never lose an update. Commands that modify a value in place (APPEND, INCR,
//! SETRANGE, ...) keep the key's TTL, as in Redis; SET and GETSET clear it.

use bytes::Bytes;
use cask_engine::Batch;

use super::{CmdError, CmdResult, Ctx, float_arg, int_arg, is};
use crate::server::frame::{Frame, format_double};
use crate::server::keyspace::{Store, TYPE_STRING};
use crate::server::parse::parse_i64;

/// An expiry option as given: relative or absolute, in seconds or ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// EX seconds.
    Ex(i64),
    /// PX ms.
    Px(i64),
    /// EXAT unix seconds.
    ExAt(i64),
    /// PXAT unix ms.
    PxAt(i64),
}

impl Expiry {
    /// The absolute expiry in ms, or the "invalid expire time" error for `cmd`.
    ///
    /// # Errors
    /// Non-positive or overflowing times.
    pub fn resolve(self, now_ms: u64, cmd: &str) -> CmdResult<u64> {
        let bad = || CmdError::err(format!("invalid expire time in '{cmd}' command"));
        let now = now_ms as i64;
        let at = match self {
            Expiry::Ex(s) if s > 0 => s.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
            Expiry::Px(ms) if ms > 0 => ms.checked_add(now),
            Expiry::ExAt(s) if s > 0 => s.checked_mul(1000),
            Expiry::PxAt(ms) if ms > 0 => Some(ms),
            _ => None,
        };
        at.filter(|&at| at > 0).map(|at| at as u64).ok_or_else(bad)
    }
}

/// The current TTL of a key as an absolute expiry, for commands that keep it.
fn current_expiry(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult<Option<u64>> {
    Ok(ctx.store().meta(ctx.db(), key)?.and_then(|m| m.expire_at))
}

/// Writes a string with an absolute expiry; an expiry already past deletes the key.
fn write_string(ctx: &mut Ctx<'_>, key: &[u8], val: &[u8], at: Option<u64>) -> CmdResult<()> {
    let db = ctx.db();
    if at.is_some_and(|at| at <= ctx.now_ms()) {
        if ctx.store().delete(db, key)? {
            let v = ctx.store().db.last_version();
            ctx.wrote(v);
        }
        return Ok(());
    }
    let v = ctx.store().put_string(db, key, val, at)?;
    ctx.wrote(v);
    Ok(())
}

fn check_size(ctx: &Ctx<'_>, len: u64) -> CmdResult<()> {
    if len > ctx.shared.config.limits.max_bulk_len {
        return Err(CmdError::err(
            "string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    Ok(())
}

/// GET key
pub fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let v = ctx.store().get_string(ctx.db(), &args[0])?;
    ctx.count_lookup(v.is_some());
    Ok(v.map_or(Frame::Null, Frame::Bulk))
}

/// Parses an expiry option's value at `args[i + 1]`.
fn expiry_value(args: &[Bytes], i: usize) -> CmdResult<i64> {
    let v = args.get(i + 1).ok_or_else(CmdError::syntax)?;
    int_arg(v)
}

/// The `EX s | PX ms | EXAT ts | PXAT ms-ts` option at `args[i]` (its number follows it),
/// or `None` when `args[i]` is not one of those words.
fn expiry_option(args: &[Bytes], i: usize) -> CmdResult<Option<Expiry>> {
    let a = &args[i];
    let make: fn(i64) -> Expiry = if is(a, "EX") {
        Expiry::Ex
    } else if is(a, "PX") {
        Expiry::Px
    } else if is(a, "EXAT") {
        Expiry::ExAt
    } else if is(a, "PXAT") {
        Expiry::PxAt
    } else {
        return Ok(None);
    };
    Ok(Some(make(expiry_value(args, i)?)))
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]
pub fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (key, val) = (&args[0], &args[1]);
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    let mut expiry: Option<Expiry> = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        let has_expiry = expiry.is_some();
        if is(a, "NX") && !xx {
            nx = true;
        } else if is(a, "XX") && !nx {
            xx = true;
        } else if is(a, "GET") {
            get = true;
        } else if is(a, "KEEPTTL") && !has_expiry {
            keepttl = true;
        } else if let Some(e) = (!keepttl && !has_expiry)
            .then(|| expiry_option(args, i))
            .transpose()?
            .flatten()
        {
            expiry = Some(e);
            i += 1;
        } else {
            return Err(CmdError::syntax());
        }
        i += 1;
    }
    let at = match expiry {
        Some(e) => Some(e.resolve(ctx.now_ms(), "set")?),
        None => None,
    };
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let old = if get || nx || xx || keepttl {
        match store.get(db, key)? {
            Some(v) if get && v.tag != TYPE_STRING => return Err(CmdError::wrong_type()),
            other => other,
        }
    } else {
        None
    };
    let exists = old.is_some();
    let old_reply = || old.clone().map_or(Frame::Null, |v| Frame::Bulk(v.data));
    if (nx && exists) || (xx && !exists) {
        return Ok(if get { old_reply() } else { Frame::Null });
    }
    let at = if keepttl {
        current_expiry(ctx, key)?
    } else {
        at
    };
    write_string(ctx, key, val, at)?;
    Ok(if get { old_reply() } else { Frame::ok() })
}

/// SETNX key value
pub fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[&args[0]]);
    if store.meta(db, &args[0])?.is_some() {
        return Ok(Frame::Integer(0));
    }
    write_string(ctx, &args[0], &args[1], None)?;
    Ok(Frame::Integer(1))
}

fn setex_generic(ctx: &mut Ctx<'_>, args: &[Bytes], ms: bool) -> CmdResult<Frame> {
    let n = int_arg(&args[1])?;
    let (e, name) = if ms {
        (Expiry::Px(n), "psetex")
    } else {
        (Expiry::Ex(n), "setex")
    };
    let at = e.resolve(ctx.now_ms(), name)?;
    let _lock = ctx.shared.store.lock(ctx.db(), &[&args[0]]);
    write_string(ctx, &args[0], &args[2], Some(at))?;
    Ok(Frame::ok())
}

/// SETEX key seconds value
pub fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setex_generic(ctx, args, false)
}

/// PSETEX key ms value
pub fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setex_generic(ctx, args, true)
}

/// MGET key...
pub fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let mut out = Vec::with_capacity(args.len());
    for k in args {
        let v = ctx.store().get(db, k)?;
        ctx.count_lookup(v.is_some());
        out.push(match v {
            Some(v) if v.tag == TYPE_STRING => Frame::Bulk(v.data),
            _ => Frame::Null,
        });
    }
    Ok(Frame::Array(out))
}

fn mset_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool, name: &str) -> CmdResult<bool> {
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::arity(name));
    }
    let db = ctx.db();
    let store = &ctx.shared.store;
    let keys: Vec<&[u8]> = args.iter().step_by(2).map(|k| &k[..]).collect();
    let _lock = store.lock(db, &keys);
    if nx {
        for k in &keys {
            if store.meta(db, k)?.is_some() {
                return Ok(false);
            }
        }
    }
    let mut batch = Batch::new();
    for pair in args.chunks(2) {
        Store::batch_put(&mut batch, db, &pair[0], TYPE_STRING, &pair[1], None);
    }
    let v = store.write(&batch)?;
    ctx.wrote(v);
    Ok(true)
}

/// MSET key value [key value ...]
pub fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    mset_generic(ctx, args, false, "mset")?;
    Ok(Frame::ok())
}

/// MSETNX key value [key value ...]
pub fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    Ok(Frame::Integer(i64::from(mset_generic(
        ctx, args, true, "msetnx",
    )?)))
}

/// GETSET key value
pub fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[&args[0]]);
    let old = ctx.store().get_string(db, &args[0])?;
    write_string(ctx, &args[0], &args[1], None)?;
    Ok(old.map_or(Frame::Null, Frame::Bulk))
}

/// GETDEL key
pub fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[&args[0]]);
    let old = ctx.store().get_string(db, &args[0])?;
    if old.is_some() && ctx.store().delete(db, &args[0])? {
        let v = ctx.store().db.last_version();
        ctx.wrote(v);
    }
    Ok(old.map_or(Frame::Null, Frame::Bulk))
}

/// GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]
pub fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let mut expiry = None;
    let mut persist = false;
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if is(a, "PERSIST") && expiry.is_none() && !persist {
            persist = true;
        } else if let Some(e) = (expiry.is_none() && !persist)
            .then(|| expiry_option(args, i))
            .transpose()?
            .flatten()
        {
            expiry = Some(e);
            i += 1;
        } else {
            return Err(CmdError::syntax());
        }
        i += 1;
    }
    let at = match expiry {
        Some(e) => Some(e.resolve(ctx.now_ms(), "getex")?),
        None => None,
    };
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[key]);
    let Some(val) = ctx.store().get_string(db, key)? else {
        ctx.count_lookup(false);
        return Ok(Frame::Null);
    };
    ctx.count_lookup(true);
    if at.is_some() {
        write_string(ctx, key, &val, at)?;
    } else if persist && current_expiry(ctx, key)?.is_some() {
        write_string(ctx, key, &val, None)?;
    }
    Ok(Frame::Bulk(val))
}

/// APPEND key value
pub fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[&args[0]]);
    let old = ctx.store().get_string(db, &args[0])?;
    let old_len = old.as_ref().map_or(0, |o| o.len());
    check_size(ctx, (old_len + args[1].len()) as u64)?;
    let mut v = Vec::with_capacity(old_len + args[1].len());
    if let Some(o) = &old {
        v.extend_from_slice(o);
    }
    v.extend_from_slice(&args[1]);
    let at = current_expiry(ctx, &args[0])?;
    write_string(ctx, &args[0], &v, at)?;
    Ok(Frame::Integer(v.len() as i64))
}

/// STRLEN key
pub fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let v = ctx.store().get_string(ctx.db(), &args[0])?;
    Ok(Frame::Integer(v.map_or(0, |v| v.len() as i64)))
}

fn incr_generic(ctx: &mut Ctx<'_>, key: &[u8], by: i64) -> CmdResult<Frame> {
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[key]);
    let cur = match ctx.store().get_string(db, key)? {
        Some(v) => parse_i64(&v).ok_or_else(CmdError::not_integer)?,
        None => 0,
    };
    let new = cur
        .checked_add(by)
        .ok_or_else(|| CmdError::err("increment or decrement would overflow"))?;
    let at = current_expiry(ctx, key)?;
    write_string(ctx, key, new.to_string().as_bytes(), at)?;
    Ok(Frame::Integer(new))
}

/// INCR key
pub fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    incr_generic(ctx, &args[0], 1)
}

/// DECR key
pub fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    incr_generic(ctx, &args[0], -1)
}

/// INCRBY key increment
pub fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let by = int_arg(&args[1])?;
    incr_generic(ctx, &args[0], by)
}

/// DECRBY key decrement
pub fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let by = int_arg(&args[1])?;
    let by = by
        .checked_neg()
        .ok_or_else(|| CmdError::err("decrement would overflow"))?;
    incr_generic(ctx, &args[0], by)
}

/// INCRBYFLOAT key increment
pub fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let by = float_arg(&args[1])?;
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[key]);
    let cur = match ctx.store().get_string(db, key)? {
        Some(v) => float_arg(&v)?,
        None => 0.0,
    };
    let new = cur + by;
    if !new.is_finite() {
        return Err(CmdError::err("increment would produce NaN or Infinity"));
    }
    let text = format_double(new);
    let at = current_expiry(ctx, key)?;
    write_string(ctx, key, text.as_bytes(), at)?;
    Ok(Frame::bulk(text))
}

/// GETRANGE key start end (and SUBSTR)
pub fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let start = int_arg(&args[1])?;
    let end = int_arg(&args[2])?;
    let v = ctx
        .store()
        .get_string(ctx.db(), &args[0])?
        .unwrap_or_default();
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Ok(Frame::bulk(Bytes::new()));
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if len == 0 || s > e {
        return Ok(Frame::bulk(Bytes::new()));
    }
    Ok(Frame::Bulk(v.slice(s as usize..=e as usize)))
}

/// SETRANGE key offset value
pub fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let offset = int_arg(&args[1])?;
    if offset < 0 {
        return Err(CmdError::err("offset is out of range"));
    }
    let val = &args[2];
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[key]);
    let old = ctx.store().get_string(db, key)?;
    if val.is_empty() {
        return Ok(Frame::Integer(old.map_or(0, |o| o.len() as i64)));
    }
    let offset = offset as u64;
    check_size(ctx, offset.saturating_add(val.len() as u64))?;
    let offset = offset as usize;
    let mut v = old.map(|o| o.to_vec()).unwrap_or_default();
    if v.len() < offset + val.len() {
        v.resize(offset + val.len(), 0);
    }
    v[offset..offset + val.len()].copy_from_slice(val);
    let at = current_expiry(ctx, key)?;
    write_string(ctx, key, &v, at)?;
    Ok(Frame::Integer(v.len() as i64))
}

fn bit_offset(ctx: &Ctx<'_>, arg: &[u8]) -> CmdResult<u64> {
    let bad = || CmdError::err("bit offset is not an integer or out of range");
    let off = parse_i64(arg).ok_or_else(bad)?;
    if off < 0 || (off as u64 >> 3) >= ctx.shared.config.limits.max_bulk_len {
        return Err(bad());
    }
    Ok(off as u64)
}

/// SETBIT key offset 0|1
pub fn setbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let offset = bit_offset(ctx, &args[1])?;
    let on = match &args[2][..] {
        b"1" => true,
        b"0" => false,
        _ => return Err(CmdError::err("bit is not an integer or out of range")),
    };
    let db = ctx.db();
    let _lock = ctx.shared.store.lock(db, &[key]);
    let mut v = ctx
        .store()
        .get_string(db, key)?
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let byte = (offset >> 3) as usize;
    let mask = 1u8 << (7 - (offset & 7));
    if v.len() <= byte {
        v.resize(byte + 1, 0);
    }
    let old = v[byte] & mask != 0;
    if on {
        v[byte] |= mask;
    } else {
        v[byte] &= !mask;
    }
    let at = current_expiry(ctx, key)?;
    write_string(ctx, key, &v, at)?;
    Ok(Frame::Integer(i64::from(old)))
}

/// GETBIT key offset
pub fn getbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let offset = bit_offset(ctx, &args[1])?;
    let v = ctx
        .store()
        .get_string(ctx.db(), &args[0])?
        .unwrap_or_default();
    let byte = (offset >> 3) as usize;
    let bit = v
        .get(byte)
        .is_some_and(|b| b & (1u8 << (7 - (offset & 7))) != 0);
    Ok(Frame::Integer(i64::from(bit)))
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]
pub fn lcs(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let db = ctx.db();
    let fetch = |k: &[u8]| -> CmdResult<Bytes> {
        match ctx.store().get(db, k)? {
            None => Ok(Bytes::new()),
            Some(v) if v.tag == TYPE_STRING => Ok(v.data),
            Some(_) => Err(CmdError::err(
                "The specified keys must contain string values",
            )),
        }
    };
    let a = fetch(&args[0])?;
    let b = fetch(&args[1])?;
    let (mut get_len, mut get_idx, mut with_len) = (false, false, false);
    let mut min_len: u64 = 0;
    let mut i = 2;
    while i < args.len() {
        let o = &args[i];
        if is(o, "IDX") {
            get_idx = true;
        } else if is(o, "LEN") {
            get_len = true;
        } else if is(o, "WITHMATCHLEN") {
            with_len = true;
        } else if is(o, "MINMATCHLEN") && i + 1 < args.len() {
            min_len = int_arg(&args[i + 1])?.max(0) as u64;
            i += 1;
        } else {
            return Err(CmdError::syntax());
        }
        i += 1;
    }
    if get_len && get_idx {
        return Err(CmdError::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1).saturating_mul(blen as u64 + 1);
    if cells.saturating_mul(4) > ctx.shared.config.limits.max_bulk_len {
        return Err(CmdError::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let w = blen + 1;
    let mut t = vec![0u32; (alen + 1) * w];
    for x in 1..=alen {
        for y in 1..=blen {
            t[x * w + y] = if a[x - 1] == b[y - 1] {
                t[(x - 1) * w + y - 1] + 1
            } else {
                t[(x - 1) * w + y].max(t[x * w + y - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    if get_len {
        return Ok(Frame::Integer(i64::from(total)));
    }
    // Walk back from the end, collecting the common string and the matching ranges.
    let mut result = vec![0u8; total as usize];
    let mut idx = total as usize;
    let mut matches = Vec::new();
    let (mut x, mut y) = (alen, blen);
    let unset = alen;
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (unset, 0, 0, 0);
    while x > 0 && y > 0 {
        let mut emit = false;
        if a[x - 1] == b[y - 1] {
            result[idx - 1] = a[x - 1];
            if a_start == unset {
                (a_start, a_end, b_start, b_end) = (x - 1, x - 1, y - 1, y - 1);
            } else if a_start == x && b_start == y {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            x -= 1;
            y -= 1;
        } else {
            if t[(x - 1) * w + y] > t[x * w + y - 1] {
                x -= 1;
            } else {
                y -= 1;
            }
            if a_start != unset {
                emit = true;
            }
        }
        let match_len = a_end.wrapping_sub(a_start).wrapping_add(1) as u64;
        if emit {
            if get_idx && (min_len == 0 || match_len >= min_len) {
                let range = |s: usize, e: usize| {
                    Frame::Array(vec![Frame::Integer(s as i64), Frame::Integer(e as i64)])
                };
                let mut m = vec![range(a_start, a_end), range(b_start, b_end)];
                if with_len {
                    m.push(Frame::Integer(match_len as i64));
                }
                matches.push(Frame::Array(m));
            }
            a_start = unset;
        }
    }
    if get_idx {
        return Ok(Frame::Map(vec![
            (Frame::bulk("matches"), Frame::Array(matches)),
            (Frame::bulk("len"), Frame::Integer(i64::from(total))),
        ]));
    }
    Ok(Frame::bulk(result))
}
