//! DUMP and RESTORE, in Redis's payload format (`server/rdb.rs`): a value dumped by cask
//! restores into Redis, and one dumped by Redis (up to 7.2) restores into cask.

use std::ops::Bound;

use bytes::Bytes;

use super::{CmdError, CmdResult, Ctx, int_arg, is};
use crate::server::coll::{Change, Stored};
use crate::server::frame::Frame;
use crate::server::keyspace::{TYPE_HASH, TYPE_LIST, TYPE_SET, TYPE_STRING, TYPE_ZSET};
use crate::server::rdb::{self, Object, RdbError};

/// DUMP key
pub fn dump(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let (db, store) = (ctx.db(), ctx.store());
    let Some(value) = store.read_value(db, key)? else {
        ctx.count_lookup(false);
        return Ok(Frame::Null);
    };
    ctx.count_lookup(true);
    let obj = match value {
        Stored::String(s) => Object::String(s.to_vec()),
        Stored::Coll(coll) => match coll.meta.tag {
            TYPE_HASH => Object::Hash(coll.all(store).collect::<CmdResult<_>>()?),
            TYPE_LIST => Object::List(
                coll.all(store)
                    .map(|r| r.map(|(_, v)| v))
                    .collect::<CmdResult<_>>()?,
            ),
            TYPE_SET => Object::Set(
                coll.keys(store, Bound::Unbounded, Bound::Unbounded, false)
                    .collect::<CmdResult<_>>()?,
            ),
            TYPE_ZSET => Object::Zset(super::zset::members_with_scores(store, &coll)?),
            _ => return Err(CmdError::err("unknown value type")),
        },
    };
    Ok(Frame::bulk(rdb::dump(&obj)))
}

/// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]
///
/// IDLETIME and FREQ are checked and ignored (cask keeps no LRU or LFU data).
pub fn restore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (key, payload) = (&args[0], &args[2]);
    let (mut replace, mut absttl, mut idle, mut freq) = (false, false, false, false);
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        if is(&args[i], "REPLACE") {
            replace = true;
        } else if is(&args[i], "ABSTTL") {
            absttl = true;
        } else if is(&args[i], "IDLETIME") && more && !freq {
            if int_arg(&args[i + 1])? < 0 {
                return Err(CmdError::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle = true;
            i += 1;
        } else if is(&args[i], "FREQ") && more && !idle {
            let f = int_arg(&args[i + 1])?;
            if !(0..=255).contains(&f) {
                return Err(CmdError::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = true;
            i += 1;
        } else {
            return Err(CmdError::syntax());
        }
        i += 1;
    }
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let _lock = store.lock(db, &[key]);
    if !replace && store.meta(db, key)?.is_some() {
        return Err(CmdError("BUSYKEY Target key name already exists.".into()));
    }
    let ttl = int_arg(&args[1])?;
    if ttl < 0 {
        return Err(CmdError::err("Invalid TTL value, must be >= 0"));
    }
    let obj = match rdb::restore(payload) {
        Ok(o) => o,
        Err(RdbError::Footer) => {
            return Err(CmdError::err("DUMP payload version or checksum are wrong"));
        }
        Err(RdbError::Format) => return Err(CmdError::err("Bad data format")),
    };
    let empty = match &obj {
        Object::String(_) => false,
        Object::List(v) | Object::Set(v) => v.is_empty(),
        Object::Hash(v) => v.is_empty(),
        Object::Zset(v) => v.is_empty(),
    };
    if empty {
        return Err(CmdError::err("Bad data format"));
    }
    let now = ctx.now_ms();
    let expire_at = match ttl {
        0 => None,
        t if absttl => Some(t as u64),
        t => Some(now.saturating_add(t as u64)),
    };
    if expire_at.is_some_and(|at| at <= now) {
        // Already expired: Redis deletes the key it would have replaced and stores nothing.
        if replace && store.delete(db, key)? {
            ctx.wrote(store.db.last_version());
        }
        return Ok(Frame::ok());
    }
    let tag = match &obj {
        Object::String(s) => {
            let v = store.put(db, key, TYPE_STRING, s, expire_at)?;
            ctx.wrote(v);
            return Ok(Frame::ok());
        }
        Object::List(_) => TYPE_LIST,
        Object::Set(_) => TYPE_SET,
        Object::Hash(_) => TYPE_HASH,
        Object::Zset(_) => TYPE_ZSET,
    };
    let mut ch = Change::create(store, db, key, tag);
    match obj {
        Object::String(_) => {}
        Object::List(items) => {
            let items: Vec<Bytes> = items.into_iter().map(Bytes::from).collect();
            super::list::append(&mut ch, &items)?;
        }
        Object::Set(members) => {
            for m in members {
                ch.insert(&m, b"")?;
            }
        }
        Object::Hash(pairs) => {
            for (f, v) in pairs {
                ch.insert(&f, &v)?;
            }
        }
        Object::Zset(pairs) => {
            for (m, s) in pairs {
                super::zset::restore_member(&mut ch, &m, s)?;
            }
        }
    }
    ch.meta_mut().expire_at = expire_at;
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(Frame::ok())
}
