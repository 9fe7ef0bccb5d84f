//! List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT LREM
//! LTRIM LPOS LMOVE RPOPLPUSH LMPOP and the blocking BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP.
//!
//! A list is one metadata record (count, head, tail) plus one engine record per element
//! (see `server/coll.rs`): the element at index `i` lives at sub-key `head + i` (a u64,
//! big-endian, so sub-key order is list order). The elements occupy `[head, tail)` with no
//! gaps. LPUSH writes `head - 1`, RPUSH writes `tail`, the pops delete at the ends: every
//! push and pop costs one element record plus the metadata record, whatever the length.
//! LINDEX and LSET address one position; LRANGE scans only the requested positions.
//! LINSERT and LREM shift the shorter side of the list; LTRIM deletes what it trims.
//!
//! Every write holds its keys' stripe locks from the first read to the commit, and writes
//! as one engine batch (LMOVE's two keys included, see [`Change::commit_all`]).
//!
//! Blocking commands make one non-blocking attempt; if every list is empty they return
//! [`Outcome::Block`], and the connection retries the same attempt each time one of the
//! keys is written (see `server/blocking.rs`).

use std::ops::Bound;

use bytes::Bytes;

use super::{Block, CmdError, CmdResult, Ctx, Outcome, int_arg, is, timeout_arg};
use crate::server::coll::{Change, Coll};
use crate::server::frame::Frame;
use crate::server::keyspace::{Store, TYPE_LIST};

/// The sub-key of list position `pos`.
fn sub(pos: u64) -> [u8; 8] {
    pos.to_be_bytes()
}

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The head (LEFT, index 0).
    Left,
    /// The tail (RIGHT, index -1).
    Right,
}

/// Parses LEFT / RIGHT.
fn end_arg(b: &[u8]) -> CmdResult<End> {
    if is(b, "left") {
        Ok(End::Left)
    } else if is(b, "right") {
        Ok(End::Right)
    } else {
        Err(CmdError::syntax())
    }
}

fn corrupt() -> CmdError {
    CmdError::err("corrupt list: an element is missing")
}

/// Parses an integer in `min..=max`; `msg` (or Redis's default texts) when it is not one.
fn range_arg(b: &[u8], min: i64, max: i64, msg: Option<&str>) -> CmdResult<i64> {
    let v = match int_arg(b) {
        Ok(v) => v,
        Err(e) => return Err(msg.map(CmdError::err).unwrap_or(e)),
    };
    if v < min || v > max {
        return Err(match msg {
            Some(m) => CmdError::err(m),
            None if max == i64::MAX && min == 0 => {
                CmdError::err("value is out of range, must be positive")
            }
            None => CmdError::err(format!(
                "value is out of range, value must between {min} and {max}"
            )),
        });
    }
    Ok(v)
}

/// Reads the values at positions `[lo, hi)`, in order (or reverse); every position must
/// hold an element.
fn read_positions(
    store: &Store,
    coll: &Coll,
    lo: u64,
    hi: u64,
    reverse: bool,
) -> CmdResult<Vec<Vec<u8>>> {
    if lo >= hi {
        return Ok(Vec::new());
    }
    let (l, h) = (sub(lo), sub(hi));
    let n = (hi - lo).min(1 << 16) as usize;
    let mut out = Vec::with_capacity(n);
    for item in coll.scan_expecting(store, Bound::Included(&l), Bound::Excluded(&h), reverse, n) {
        out.push(item?.1);
    }
    if out.len() as u64 != hi - lo {
        return Err(corrupt());
    }
    Ok(out)
}

/// Normalizes Redis's inclusive `start..=end` indexes (negative from the tail) against a
/// list of `len` elements; `None` if the range is empty.
fn index_range(len: u64, start: i64, end: i64) -> Option<(u64, u64)> {
    let len = len as i64;
    let mut start = if start < 0 { start + len } else { start };
    let mut end = if end < 0 { end + len } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as u64, end as u64))
}

/// The position of index `index` (negative from the tail), if it is inside the list.
fn position(head: u64, len: u64, index: i64) -> Option<u64> {
    let len = len as i64;
    let i = if index < 0 { index + len } else { index };
    (0..len).contains(&i).then(|| head + i as u64)
}

/// Pushes `values` one by one at `end` (so LPUSH a b c leaves c first, as in Redis).
fn push_values(change: &mut Change<'_>, end: End, values: &[Bytes]) -> CmdResult<()> {
    let full = || CmdError::err("list has no room left at this end");
    for v in values {
        let m = *change.meta();
        let pos = match end {
            End::Left => m.head.checked_sub(1).ok_or_else(full)?,
            End::Right => {
                if m.tail == u64::MAX {
                    return Err(full());
                }
                m.tail
            }
        };
        change.put_raw(&sub(pos), v);
        let m = change.meta_mut();
        match end {
            End::Left => m.head = pos,
            End::Right => m.tail = pos + 1,
        }
        m.count += 1;
    }
    Ok(())
}

/// Appends `values` at the tail of the list `change` writes (SORT ... STORE).
///
/// # Errors
/// The list has no room left at its tail.
pub(crate) fn append(change: &mut Change<'_>, values: &[Bytes]) -> CmdResult<()> {
    push_values(change, End::Right, values)
}

/// Pops up to `n` elements from `end`, in pop order. The change must have no pending
/// writes at that end (reads see the stored list).
fn pop_values(change: &mut Change<'_>, store: &Store, end: End, n: u64) -> CmdResult<Vec<Vec<u8>>> {
    let m = *change.meta();
    let n = n.min(m.count);
    if n == 0 {
        return Ok(Vec::new());
    }
    let (lo, hi) = match end {
        End::Left => (m.head, m.head + n),
        End::Right => (m.tail - n, m.tail),
    };
    let values = if n == 1 {
        vec![change.get(&sub(lo))?.ok_or_else(corrupt)?]
    } else {
        read_positions(store, change.coll(), lo, hi, end == End::Right)?
    };
    for p in lo..hi {
        change.delete_raw(&sub(p));
    }
    let m = change.meta_mut();
    match end {
        End::Left => m.head = hi,
        End::Right => m.tail = lo,
    }
    m.count -= n;
    Ok(values)
}

fn bulks(values: Vec<Vec<u8>>) -> Frame {
    Frame::Array(values.into_iter().map(Frame::bulk).collect())
}

fn commit(ctx: &mut Ctx<'_>, change: Change<'_>) -> CmdResult<()> {
    if let Some(v) = change.commit()? {
        ctx.wrote(v);
    }
    Ok(())
}

fn push(ctx: &mut Ctx<'_>, args: &[Bytes], end: End, only_existing: bool) -> CmdResult<Frame> {
    let store = &ctx.shared.store;
    let db = ctx.db();
    let key = &args[0];
    let _lock = store.lock(db, &[key]);
    let mut change = if only_existing {
        match Change::existing(store, db, key, TYPE_LIST)? {
            Some(c) => c,
            None => return Ok(Frame::Integer(0)),
        }
    } else {
        Change::open(store, db, key, TYPE_LIST)?
    };
    push_values(&mut change, end, &args[1..])?;
    let len = change.meta().count;
    commit(ctx, change)?;
    Ok(Frame::Integer(len as i64))
}

/// LPUSH key element [element ...]
pub fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    push(ctx, args, End::Left, false)
}

/// RPUSH key element [element ...]
pub fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    push(ctx, args, End::Right, false)
}

/// LPUSHX key element [element ...]
pub fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    push(ctx, args, End::Left, true)
}

/// RPUSHX key element [element ...]
pub fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    push(ctx, args, End::Right, true)
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], end: End, name: &str) -> CmdResult<Frame> {
    if args.len() > 2 {
        return Err(CmdError::arity(name));
    }
    let count = match args.get(1) {
        Some(c) => Some(range_arg(c, 0, i64::MAX, None)? as u64),
        None => None,
    };
    let store = &ctx.shared.store;
    let db = ctx.db();
    let key = &args[0];
    let _lock = store.lock(db, &[key]);
    let Some(mut change) = Change::existing(store, db, key, TYPE_LIST)? else {
        return Ok(if count.is_some() {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    if count == Some(0) {
        return Ok(Frame::Array(Vec::new()));
    }
    let mut values = pop_values(&mut change, store, end, count.unwrap_or(1))?;
    commit(ctx, change)?;
    Ok(match count {
        Some(_) => bulks(values),
        None => values.pop().map(Frame::bulk).ok_or_else(corrupt)?,
    })
}

/// LPOP key [count]
pub fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    pop(ctx, args, End::Left, "lpop")
}

/// RPOP key [count]
pub fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    pop(ctx, args, End::Right, "rpop")
}

/// Reads list `key` for a read-only command, counting the lookup.
fn read_list(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult<Option<Coll>> {
    let coll = ctx.store().coll(ctx.db(), key, TYPE_LIST)?;
    ctx.count_lookup(coll.is_some());
    Ok(coll)
}

/// LLEN key
pub fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let n = read_list(ctx, &args[0])?.map_or(0, |c| c.meta.count);
    Ok(Frame::Integer(n as i64))
}

/// LINDEX key index
pub fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(coll) = read_list(ctx, &args[0])? else {
        return Ok(Frame::Null);
    };
    let index = int_arg(&args[1])?;
    match position(coll.meta.head, coll.meta.count, index) {
        Some(p) => Ok(Frame::bulk(
            coll.get(ctx.store(), &sub(p))?.ok_or_else(corrupt)?,
        )),
        None => Ok(Frame::Null),
    }
}

/// LSET key index element
pub fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let store = &ctx.shared.store;
    let db = ctx.db();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(mut change) = Change::existing(store, db, &args[0], TYPE_LIST)? else {
        return Err(CmdError::no_such_key());
    };
    let index = int_arg(&args[1])?;
    let m = *change.meta();
    let p = position(m.head, m.count, index).ok_or_else(|| CmdError::err("index out of range"))?;
    change.put_raw(&sub(p), &args[2]);
    commit(ctx, change)?;
    Ok(Frame::ok())
}

/// LRANGE key start stop
pub fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let start = int_arg(&args[1])?;
    let end = int_arg(&args[2])?;
    let Some(coll) = read_list(ctx, &args[0])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let Some((s, e)) = index_range(coll.meta.count, start, end) else {
        return Ok(Frame::Array(Vec::new()));
    };
    let head = coll.meta.head;
    Ok(bulks(read_positions(
        ctx.store(),
        &coll,
        head + s,
        head + e + 1,
        false,
    )?))
}

/// LTRIM key start stop
pub fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let start = int_arg(&args[1])?;
    let end = int_arg(&args[2])?;
    let store = &ctx.shared.store;
    let db = ctx.db();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(mut change) = Change::existing(store, db, &args[0], TYPE_LIST)? else {
        return Ok(Frame::ok());
    };
    let m = *change.meta();
    match index_range(m.count, start, end) {
        None => {
            // Everything goes: the key is deleted and the sweeper takes the elements.
            change.meta_mut().count = 0;
        }
        Some((s, e)) => {
            let (new_head, new_tail) = (m.head + s, m.head + e + 1);
            if new_head == m.head && new_tail == m.tail {
                return Ok(Frame::ok());
            }
            for p in (m.head..new_head).chain(new_tail..m.tail) {
                change.delete_raw(&sub(p));
            }
            let mm = change.meta_mut();
            mm.head = new_head;
            mm.tail = new_tail;
            mm.count = new_tail - new_head;
        }
    }
    commit(ctx, change)?;
    Ok(Frame::ok())
}

/// Rewrites index range `[from, len)` of the list as `kept` (shorter or longer by
/// `len - from - kept.len()`), keeping the head: positions at the tail end move.
fn rewrite_tail_side(change: &mut Change<'_>, from: u64, kept: &[Vec<u8>]) {
    let m = *change.meta();
    let start = m.head + from;
    for (j, v) in kept.iter().enumerate() {
        change.put_raw(&sub(start + j as u64), v);
    }
    let new_tail = start + kept.len() as u64;
    for p in new_tail..m.tail {
        change.delete_raw(&sub(p));
    }
    let mm = change.meta_mut();
    mm.tail = new_tail;
    mm.count = new_tail - mm.head;
}

/// Rewrites index range `[0, to)` of the list as `kept`, keeping the tail: positions at
/// the head end move.
fn rewrite_head_side(change: &mut Change<'_>, to: u64, kept: &[Vec<u8>]) {
    let m = *change.meta();
    let end = m.head + to;
    let new_head = end - kept.len() as u64;
    for (j, v) in kept.iter().enumerate() {
        change.put_raw(&sub(new_head + j as u64), v);
    }
    for p in m.head..new_head {
        change.delete_raw(&sub(p));
    }
    let mm = change.meta_mut();
    mm.head = new_head;
    mm.count = mm.tail - new_head;
}

/// LINSERT key BEFORE|AFTER pivot element
pub fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let after = if is(&args[1], "after") {
        true
    } else if is(&args[1], "before") {
        false
    } else {
        return Err(CmdError::syntax());
    };
    let store = &ctx.shared.store;
    let db = ctx.db();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(mut change) = Change::existing(store, db, &args[0], TYPE_LIST)? else {
        return Ok(Frame::Integer(0));
    };
    let m = *change.meta();
    if m.head == 0 || m.tail == u64::MAX {
        return Err(CmdError::err("list has no room left at this end"));
    }
    // Walk from the head to the pivot, keeping what was read: it is the head side.
    let mut seen = Vec::new();
    let mut found = None;
    for item in change.coll().all(store) {
        let v = item?.1;
        let hit = v == args[2][..];
        seen.push(v);
        if hit {
            found = Some(seen.len() as u64 - 1);
            break;
        }
    }
    let Some(i) = found else {
        return Ok(Frame::Integer(-1));
    };
    let idx = if after { i + 1 } else { i };
    let elem = args[3].to_vec();
    if idx <= m.count - idx {
        // Shift the head side one step towards the head.
        seen.truncate(idx as usize);
        seen.push(elem);
        rewrite_head_side(&mut change, idx, &seen);
    } else {
        let mut right = vec![elem];
        right.extend(read_positions(
            store,
            change.coll(),
            m.head + idx,
            m.tail,
            false,
        )?);
        rewrite_tail_side(&mut change, idx, &right);
    }
    let len = change.meta().count;
    commit(ctx, change)?;
    Ok(Frame::Integer(len as i64))
}

/// LREM key count element
pub fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let to_remove = int_arg(&args[1])?;
    let store = &ctx.shared.store;
    let db = ctx.db();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(mut change) = Change::existing(store, db, &args[0], TYPE_LIST)? else {
        return Ok(Frame::Integer(0));
    };
    let m = *change.meta();
    let len = m.count;
    let reverse = to_remove < 0;
    let limit = to_remove.unsigned_abs();
    // Scan from the chosen end until enough matches; `seen` holds what was read, in scan
    // order, `hits` the matching offsets in scan order.
    let mut seen = Vec::new();
    let mut hits = Vec::new();
    for item in change
        .coll()
        .scan(store, Bound::Unbounded, Bound::Unbounded, reverse)
    {
        let v = item?.1;
        if v == args[2][..] {
            hits.push(seen.len() as u64);
        }
        seen.push(v);
        if limit != 0 && hits.len() as u64 == limit {
            break;
        }
    }
    let removed = hits.len() as u64;
    if removed == 0 {
        return Ok(Frame::Integer(0));
    }
    if removed == len {
        change.meta_mut().count = 0;
        commit(ctx, change)?;
        return Ok(Frame::Integer(removed as i64));
    }
    let scanned = seen.len() as u64;
    // In head order: the window [wlo, len or scanned) that was read, and removed indexes.
    let (mut window, wlo) = if reverse {
        seen.reverse();
        (seen, len - scanned)
    } else {
        (seen, 0)
    };
    let mut gone: Vec<u64> = hits
        .iter()
        .map(|&h| if reverse { len - 1 - h } else { h })
        .collect();
    gone.sort_unstable();
    let (first, last) = (gone[0], gone[gone.len() - 1]);
    // Keep the head (rewrite [first, len)) or keep the tail (rewrite [0, last]).
    let tail_cost = len - first;
    let head_cost = last + 1;
    let is_gone = |i: u64| gone.binary_search(&i).is_ok();
    if tail_cost < head_cost {
        if !reverse && scanned < len {
            window.extend(read_positions(
                store,
                change.coll(),
                m.head + scanned,
                m.tail,
                false,
            )?);
        }
        let kept: Vec<Vec<u8>> = window
            .into_iter()
            .enumerate()
            .map(|(j, v)| (wlo + j as u64, v))
            .filter(|&(i, _)| i >= first && !is_gone(i))
            .map(|(_, v)| v)
            .collect();
        rewrite_tail_side(&mut change, first, &kept);
    } else {
        let mut base = wlo;
        if reverse && wlo > 0 {
            let mut front = read_positions(store, change.coll(), m.head, m.head + wlo, false)?;
            front.extend(window);
            window = front;
            base = 0;
        }
        let kept: Vec<Vec<u8>> = window
            .into_iter()
            .enumerate()
            .map(|(j, v)| (base + j as u64, v))
            .filter(|&(i, _)| i <= last && !is_gone(i))
            .map(|(_, v)| v)
            .collect();
        rewrite_head_side(&mut change, last + 1, &kept);
    }
    commit(ctx, change)?;
    Ok(Frame::Integer(removed as i64))
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
pub fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let mut rank: i64 = 1;
    let mut count: Option<u64> = None;
    let mut maxlen: u64 = 0;
    let mut j = 2;
    while j < args.len() {
        let more = j + 1 < args.len();
        if is(&args[j], "rank") && more {
            j += 1;
            rank = range_arg(&args[j], -i64::MAX, i64::MAX, None)?;
            if rank == 0 {
                return Err(CmdError::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(&args[j], "count") && more {
            j += 1;
            count = Some(range_arg(&args[j], 0, i64::MAX, Some("COUNT can't be negative"))? as u64);
        } else if is(&args[j], "maxlen") && more {
            j += 1;
            maxlen = range_arg(&args[j], 0, i64::MAX, Some("MAXLEN can't be negative"))? as u64;
        } else {
            return Err(CmdError::syntax());
        }
        j += 1;
    }
    let Some(coll) = read_list(ctx, &args[0])? else {
        return Ok(match count {
            Some(_) => Frame::Array(Vec::new()),
            None => Frame::Null,
        });
    };
    let reverse = rank < 0;
    let skip = rank.unsigned_abs() - 1;
    let len = coll.meta.count;
    let mut matches = 0u64;
    let mut out = Vec::new();
    for (index, item) in coll
        .scan(ctx.store(), Bound::Unbounded, Bound::Unbounded, reverse)
        .enumerate()
    {
        let index = index as u64;
        if maxlen != 0 && index >= maxlen {
            break;
        }
        if item?.1 != args[1][..] {
            continue;
        }
        matches += 1;
        if matches <= skip {
            continue;
        }
        let at = if reverse { len - index - 1 } else { index };
        out.push(Frame::Integer(at as i64));
        match count {
            None => break,
            Some(c) if c != 0 && out.len() as u64 >= c => break,
            Some(_) => {}
        }
    }
    Ok(match count {
        Some(_) => Frame::Array(out),
        None => out.pop().unwrap_or(Frame::Null),
    })
}

/// Moves one element from `src`'s `from` end to `dst`'s `to` end. `Ok(None)`: `src` is
/// missing (nothing written), or, for a blocked client's `retry`, not a list (as in Redis,
/// a blocked client is only served by a key of the type it waits for).
fn move_one(
    ctx: &mut Ctx<'_>,
    src: &[u8],
    dst: &[u8],
    (from, to): (End, End),
    mode: Mode,
) -> CmdResult<Option<Frame>> {
    let store = &ctx.shared.store;
    let db = ctx.db();
    let _lock = store.lock(db, &[src, dst]);
    if !in_line(ctx, src, mode) {
        return Ok(None);
    }
    let source = match Change::existing(store, db, src, TYPE_LIST) {
        Err(e) if mode == Mode::Retry && e == CmdError::wrong_type() => return Ok(None),
        r => r?,
    };
    let Some(mut source) = source else {
        return Ok(None);
    };
    let mut value = pop_values(&mut source, store, from, 1)?;
    let value = value.pop().ok_or_else(corrupt)?;
    let elem = [Bytes::from(value.clone())];
    let v = if src == dst {
        push_values(&mut source, to, &elem)?;
        source.commit()?
    } else {
        let mut dest = Change::open(store, db, dst, TYPE_LIST)?;
        push_values(&mut dest, to, &elem)?;
        Change::commit_all(vec![source, dest])?
    };
    if let Some(v) = v {
        ctx.wrote(v);
    }
    Ok(Some(Frame::bulk(value)))
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
pub fn lmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let from = end_arg(&args[2])?;
    let to = end_arg(&args[3])?;
    Ok(move_one(ctx, &args[0], &args[1], (from, to), Mode::Plain)?.unwrap_or(Frame::Null))
}

/// RPOPLPUSH source destination
pub fn rpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    Ok(move_one(
        ctx,
        &args[0],
        &args[1],
        (End::Right, End::Left),
        Mode::Plain,
    )?
    .unwrap_or(Frame::Null))
}

/// Whether a blocking command may take from `key` now: not while a client that blocked
/// earlier waits on it (its wake-up may still be on its way), so blocked clients are served
/// in arrival order, also against a client that pipelines a push and a blocking pop.
fn in_line(ctx: &Ctx<'_>, key: &[u8], mode: Mode) -> bool {
    let me = match mode {
        Mode::Plain => return true,
        Mode::First => u64::MAX,
        Mode::Retry => ctx.client.handle.id,
    };
    !ctx.store().ready.waiting_before(ctx.db(), key, me)
}

/// Who is popping: a plain command, a blocking command's first attempt, or a blocked
/// client's retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    First,
    Retry,
}

/// Pops from the first non-empty list of `keys`: `[key, value]` when `count` is `None`,
/// `[key, [values...]]` otherwise; `Ok(None)` when every list is empty. A key of another
/// type is `WRONGTYPE`, except for a blocked client's `retry`, which skips it (Redis serves
/// a blocked client only from a key of the type it waits for).
fn pop_first(
    ctx: &mut Ctx<'_>,
    keys: &[Bytes],
    end: End,
    count: Option<u64>,
    mode: Mode,
) -> CmdResult<Option<Frame>> {
    let store = &ctx.shared.store;
    let db = ctx.db();
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let _lock = store.lock(db, &refs);
    for key in keys {
        if !in_line(ctx, key, mode) {
            continue;
        }
        let change = match Change::existing(store, db, key, TYPE_LIST) {
            Err(e) if mode == Mode::Retry && e == CmdError::wrong_type() => continue,
            r => r?,
        };
        let Some(mut change) = change else {
            continue;
        };
        let mut values = pop_values(&mut change, store, end, count.unwrap_or(1))?;
        if values.is_empty() {
            continue;
        }
        commit(ctx, change)?;
        let reply = match count {
            None => vec![
                Frame::bulk(key.clone()),
                Frame::bulk(values.pop().ok_or_else(corrupt)?),
            ],
            Some(_) => vec![Frame::bulk(key.clone()), bulks(values)],
        };
        return Ok(Some(Frame::Array(reply)));
    }
    Ok(None)
}

/// The parsed arguments of LMPOP (after `numkeys_at`): keys, end, count.
fn mpop_args(args: &[Bytes], numkeys_at: usize) -> CmdResult<(&[Bytes], End, u64)> {
    let numkeys = range_arg(
        &args[numkeys_at],
        1,
        i64::MAX,
        Some("numkeys should be greater than 0"),
    )? as u64;
    let first = numkeys_at + 1;
    let where_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| first.checked_add(n))
        .filter(|&w| w < args.len())
        .ok_or_else(CmdError::syntax)?;
    let end = end_arg(&args[where_at])?;
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "count") && j + 1 < args.len() {
            j += 1;
            count = Some(range_arg(
                &args[j],
                1,
                i64::MAX,
                Some("count should be greater than 0"),
            )? as u64);
        } else {
            return Err(CmdError::syntax());
        }
        j += 1;
    }
    Ok((&args[first..where_at], end, count.unwrap_or(1)))
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
pub fn lmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (keys, end, count) = mpop_args(args, 0)?;
    Ok(pop_first(ctx, keys, end, Some(count), Mode::Plain)?.unwrap_or(Frame::NullArray))
}

type Retry = fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult<Option<Frame>>;

/// The command's first attempt, and if it found nothing, the block on `keys`.
fn attempt_or_block(
    args: &[Bytes],
    first: CmdResult<Option<Frame>>,
    keys: &[Bytes],
    timeout: Option<std::time::Duration>,
    retry: Retry,
) -> CmdResult<Outcome> {
    Ok(match first? {
        Some(f) => Outcome::Reply(f),
        None => Outcome::Block(Block {
            keys: keys.to_vec(),
            timeout,
            retry,
            args: args.to_vec(),
            // Redis 7 answers every timed-out list pop, BLMOVE included, with a null
            // array (`replyToBlockedClientTimedOut`).
            timeout_reply: Frame::NullArray,
        }),
    })
}

fn blpop_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    pop_first(ctx, &args[..args.len() - 1], End::Left, None, Mode::Retry)
}

fn brpop_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    pop_first(ctx, &args[..args.len() - 1], End::Right, None, Mode::Retry)
}

fn bpop(ctx: &mut Ctx<'_>, args: &[Bytes], end: End, retry: Retry) -> CmdResult<Outcome> {
    let keys = &args[..args.len() - 1];
    let timeout = timeout_arg(&args[args.len() - 1])?;
    let first = pop_first(ctx, keys, end, None, Mode::First);
    attempt_or_block(args, first, keys, timeout, retry)
}

/// BLPOP key [key ...] timeout
pub fn blpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    bpop(ctx, args, End::Left, blpop_retry)
}

/// BRPOP key [key ...] timeout
pub fn brpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    bpop(ctx, args, End::Right, brpop_retry)
}

fn blmove_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    let ends = (end_arg(&args[2])?, end_arg(&args[3])?);
    move_one(ctx, &args[0], &args[1], ends, Mode::Retry)
}

fn brpoplpush_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    move_one(
        ctx,
        &args[0],
        &args[1],
        (End::Right, End::Left),
        Mode::Retry,
    )
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout
pub fn blmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    let ends = (end_arg(&args[2])?, end_arg(&args[3])?);
    let timeout = timeout_arg(&args[4])?;
    let first = move_one(ctx, &args[0], &args[1], ends, Mode::First);
    attempt_or_block(args, first, &args[..1], timeout, blmove_retry)
}

/// BRPOPLPUSH source destination timeout
pub fn brpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    let timeout = timeout_arg(&args[2])?;
    let first = move_one(
        ctx,
        &args[0],
        &args[1],
        (End::Right, End::Left),
        Mode::First,
    );
    attempt_or_block(args, first, &args[..1], timeout, brpoplpush_retry)
}

fn blmpop_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    let (keys, end, count) = mpop_args(args, 1)?;
    pop_first(ctx, keys, end, Some(count), Mode::Retry)
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]
pub fn blmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    let (keys, end, count) = mpop_args(args, 1)?;
    let timeout = timeout_arg(&args[0])?;
    let first = pop_first(ctx, keys, end, Some(count), Mode::First);
    attempt_or_block(args, first, keys, timeout, blmpop_retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_ranges_follow_redis() {
        assert_eq!(index_range(5, 0, -1), Some((0, 4)));
        assert_eq!(index_range(5, -100, 100), Some((0, 4)));
        assert_eq!(index_range(5, 3, 1), None);
        assert_eq!(index_range(5, 5, 10), None);
        assert_eq!(index_range(5, -2, -1), Some((3, 4)));
        assert_eq!(index_range(5, 0, -6), None);
        assert_eq!(index_range(0, 0, -1), None);
    }

    #[test]
    fn positions_are_head_relative() {
        assert_eq!(position(100, 3, 0), Some(100));
        assert_eq!(position(100, 3, -1), Some(102));
        assert_eq!(position(100, 3, 3), None);
        assert_eq!(position(100, 3, -4), None);
        assert_eq!(position(100, 3, i64::MIN), None);
    }

    #[test]
    fn range_args_use_redis_texts() {
        assert_eq!(range_arg(b"5", 0, i64::MAX, None), Ok(5));
        assert_eq!(
            range_arg(b"-1", 0, i64::MAX, None).unwrap_err().0,
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            range_arg(b"x", 1, i64::MAX, Some("count should be greater than 0"))
                .unwrap_err()
                .0,
            "ERR count should be greater than 0"
        );
        assert!(
            range_arg(b"-9223372036854775808", -i64::MAX, i64::MAX, None)
                .unwrap_err()
                .0
                .contains("value is out of range")
        );
    }
}
