//! Hash commands: HSET HSETNX HGET HMGET HMSET HDEL HEXISTS HGETALL HKEYS HVALS HLEN HSTRLEN
//! HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN.
//!
//! A hash is one record per field (sub-key = field, value = the field's value; see
//! `server/coll.rs`): HSET/HDEL/HINCRBY touch one record and the metadata whatever the
//! hash's size. Every write holds the key's stripe lock from its first read to its commit,
//! so sixteen clients racing HINCRBY on one field lose nothing.

use std::ops::Bound;

use bytes::Bytes;

use super::set::{Picker, Rng, check_reply_len, scan_subkeys, signed_count};
use super::{CmdError, CmdResult, Ctx, float_arg, int_arg, is};
use crate::server::coll::{Change, Coll};
use crate::server::frame::{Frame, format_double};
use crate::server::keyspace::TYPE_HASH;
use crate::server::parse::parse_i64;

fn read(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult<Option<Coll>> {
    let c = ctx.store().coll(ctx.db(), key, TYPE_HASH)?;
    ctx.count_lookup(c.is_some());
    Ok(c)
}

/// Writes the field/value pairs of HSET and HMSET; returns how many fields were new.
fn set_fields(ctx: &mut Ctx<'_>, args: &[Bytes], name: &str) -> CmdResult<i64> {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::arity(name));
    }
    let key = &args[0];
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let mut ch = Change::open(store, db, key, TYPE_HASH)?;
    let mut added = 0;
    for pair in args[1..].chunks_exact(2) {
        if ch.insert(&pair[0], &pair[1])? {
            added += 1;
        }
    }
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(added)
}

/// HSET key field value [field value ...]
pub fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_fields(ctx, args, "hset").map(Frame::Integer)
}

/// HMSET key field value [field value ...]
pub fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_fields(ctx, args, "hmset").map(|_| Frame::ok())
}

/// HSETNX key field value
pub fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let mut ch = Change::open(store, db, key, TYPE_HASH)?;
    if ch.contains(&args[1])? {
        return Ok(Frame::Integer(0));
    }
    ch.insert(&args[1], &args[2])?;
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(Frame::Integer(1))
}

/// HGET key field
pub fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(coll) = read(ctx, &args[0])? else {
        return Ok(Frame::Null);
    };
    Ok(Frame::bulk_or_null(coll.get(ctx.store(), &args[1])?))
}

/// HMGET key field [field ...]
pub fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let coll = read(ctx, &args[0])?;
    let mut out = Vec::with_capacity(args.len() - 1);
    for f in &args[1..] {
        out.push(match &coll {
            Some(c) => Frame::bulk_or_null(c.get(ctx.store(), f)?),
            None => Frame::Null,
        });
    }
    Ok(Frame::Array(out))
}

/// HDEL key field [field ...]
pub fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    super::set::remove_elements(ctx, args, TYPE_HASH)
}

/// HEXISTS key field
pub fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(coll) = read(ctx, &args[0])? else {
        return Ok(Frame::Integer(0));
    };
    Ok(Frame::Integer(i64::from(
        coll.contains(ctx.store(), &args[1])?,
    )))
}

/// Every `(field, value)` of a hash, read under its lock (a consistent picture).
fn all_pairs(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let store = ctx.store();
    let _lock = store.lock(ctx.db(), &[key]);
    match read(ctx, key)? {
        Some(c) => c.all(store).collect(),
        None => Ok(Vec::new()),
    }
}

/// HGETALL key (a map in RESP3)
pub fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let pairs = all_pairs(ctx, &args[0])?;
    Ok(Frame::Map(
        pairs
            .into_iter()
            .map(|(f, v)| (Frame::bulk(f), Frame::bulk(v)))
            .collect(),
    ))
}

/// HKEYS key (from the index: no value is read)
pub fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let store = ctx.store();
    let _lock = store.lock(ctx.db(), &[&args[0]]);
    let Some(coll) = read(ctx, &args[0])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let keys = coll.keys(store, Bound::Unbounded, Bound::Unbounded, false);
    Ok(Frame::Array(
        keys.map(|k| k.map(Frame::bulk)).collect::<CmdResult<_>>()?,
    ))
}

/// HVALS key
pub fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let pairs = all_pairs(ctx, &args[0])?;
    Ok(Frame::Array(
        pairs.into_iter().map(|(_, v)| Frame::bulk(v)).collect(),
    ))
}

/// HLEN key
pub fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let n = read(ctx, &args[0])?.map_or(0, |c| c.meta.count);
    Ok(Frame::Integer(n as i64))
}

/// HSTRLEN key field
pub fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(coll) = read(ctx, &args[0])? else {
        return Ok(Frame::Integer(0));
    };
    let n = coll.get(ctx.store(), &args[1])?.map_or(0, |v| v.len());
    Ok(Frame::Integer(n as i64))
}

/// HINCRBY key field increment
pub fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (key, field) = (&args[0], &args[1]);
    let by = int_arg(&args[2])?;
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let mut ch = Change::open(store, db, key, TYPE_HASH)?;
    let cur = match ch.get(field)? {
        Some(v) => parse_i64(&v).ok_or_else(|| CmdError::err("hash value is not an integer"))?,
        None => 0,
    };
    let new = cur
        .checked_add(by)
        .ok_or_else(|| CmdError::err("increment or decrement would overflow"))?;
    ch.insert(field, new.to_string().as_bytes())?;
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(Frame::Integer(new))
}

/// HINCRBYFLOAT key field increment (the reply is a bulk string, in RESP3 too)
pub fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (key, field) = (&args[0], &args[1]);
    let by = float_arg(&args[2])?;
    if !by.is_finite() {
        return Err(CmdError::err("value is NaN or Infinity"));
    }
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let mut ch = Change::open(store, db, key, TYPE_HASH)?;
    let cur = match ch.get(field)? {
        Some(v) => {
            super::parse_float(&v).ok_or_else(|| CmdError::err("hash value is not a float"))?
        }
        None => 0.0,
    };
    let new = cur + by;
    if !new.is_finite() {
        return Err(CmdError::err("increment would produce NaN or Infinity"));
    }
    let text = format_double(new);
    ch.insert(field, text.as_bytes())?;
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(Frame::bulk(text))
}

/// HRANDFIELD key [count [WITHVALUES]]
///
/// With WITHVALUES, RESP2 gets a flat array of fields and values, RESP3 an array of
/// `[field, value]` pairs (as Redis replies). A negative count may repeat fields.
pub fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let mut count = None;
    let mut withvalues = false;
    if let Some(c) = args.get(1) {
        let n = signed_count(c)?;
        match &args[2..] {
            [] => {}
            [w] if is(w, "WITHVALUES") => {
                withvalues = true;
                if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) {
                    return Err(CmdError::err("value is out of range"));
                }
            }
            _ => return Err(CmdError::syntax()),
        }
        count = Some(n);
    }
    let store = &ctx.shared.store;
    // Held so that the values read after the fields are picked are still there.
    let _lock = store.lock(ctx.db(), &[&args[0]]);
    let coll = read(ctx, &args[0])?;
    let picker = match &coll {
        Some(c) => Picker::new(store, c)?,
        None => None,
    };
    let mut rng = Rng::new();
    let Some(n) = count else {
        return Ok(match picker {
            Some(p) => Frame::bulk(p.pick(&mut rng)?),
            None => Frame::Null,
        });
    };
    let (Some(p), Some(coll)) = (picker, coll) else {
        return Ok(Frame::Array(Vec::new()));
    };
    let fields = if n < 0 {
        let n = n.unsigned_abs();
        check_reply_len(ctx, n.saturating_mul(if withvalues { 2 } else { 1 }))?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(p.pick(&mut rng)?);
        }
        out
    } else {
        p.pick_distinct(&mut rng, n as u64)?
    };
    if !withvalues {
        return Ok(Frame::Array(fields.into_iter().map(Frame::bulk).collect()));
    }
    let resp3 = ctx.client.proto >= 3;
    let mut out = Vec::with_capacity(fields.len() * if resp3 { 1 } else { 2 });
    for f in fields {
        let v = coll.get(store, &f)?.unwrap_or_default();
        if resp3 {
            out.push(Frame::Array(vec![Frame::bulk(f), Frame::bulk(v)]));
        } else {
            out.push(Frame::bulk(f));
            out.push(Frame::bulk(v));
        }
    }
    Ok(Frame::Array(out))
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
pub fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    scan_subkeys(ctx, args, TYPE_HASH, true, &|k, v, out| {
        out.push(Frame::bulk(k));
        out.push(Frame::bulk(v));
    })
}
