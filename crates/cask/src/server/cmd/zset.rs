//! Sorted sets, one engine record per element (see `server/coll.rs`): ZADD ZINCRBY ZREM
//! ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANGE ZRANGESTORE ZRANGEBYSCORE ZREVRANGEBYSCORE
//! ZRANGEBYLEX ZREVRANGEBYLEX ZREVRANGE ZRANK ZREVRANK ZPOPMIN ZPOPMAX BZPOPMIN BZPOPMAX
//! ZMPOP BZMPOP ZUNIONSTORE ZINTERSTORE ZDIFFSTORE ZUNION ZINTER ZDIFF ZINTERCARD
//! ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX ZRANDMEMBER ZSCAN.
//!
//! Layout: every member has two sub-keys in the collection's generation,
//! `b'm' | member` -> `score_key(score)` (8 bytes) and `b's' | score_key(score) | member` ->
//! empty. The `s` sub-space is ordered by score then member, exactly Redis's order, so
//! ranges by score, by rank, pops and WITHSCORES replies walk the engine's in-memory index
//! only (the score is in the sub-key); ZSCORE reads one record. ZADD on a zset of a million
//! members writes three records and the metadata, as on one of ten.
//!
//! Costs that differ from Redis: a rank (ZRANK, ZRANGE by index) walks the index from the
//! nearer end, O(min(rank, size - rank)) index steps without I/O instead of O(log n).
//! Lexicographic ranges (BYLEX, ZLEXCOUNT, ZREMRANGEBYLEX) walk the `m` sub-space in member
//! order, which is Redis's order when all scores are equal (the only case Redis defines).
//! A score of `-0` is stored as `0`.
//!
//! Every write holds the key's stripe lock from its first read to its commit (one engine
//! batch); reads of several records (ranges, ranks, unions) take the locks of their keys too,
//! so they never see half of a concurrent command.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

use super::{
    Block, CmdError, CmdResult, Ctx, Outcome, ScanOptions, int_arg, is, parse_float, scan_options,
    timeout_arg,
};
use crate::server::coll::{Change, Coll, prefix_end, score_from_key, score_key};
use crate::server::frame::{Frame, format_d2string};
use crate::server::glob;
use crate::server::keyspace::{Store, TYPE_SET, TYPE_ZSET};

/// Sub-key tag of member records (`m | member -> score`).
const TAG_MEMBER: u8 = b'm';
/// Sub-key tag of score-index records (`s | score_key | member`).
const TAG_SCORE: u8 = b's';

/// Zsets up to this size are sampled exactly (ZRANDMEMBER reads the whole index, which is
/// in memory); larger ones are sampled by seeking random probes into the member order
/// (uniform over the probes, not exactly over the members: see [`Sampler`]).
const EXACT_SAMPLE_MAX: u64 = 4096;

// ---------------------------------------------------------------------------------------
// Encoding helpers.

fn m_sub(member: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(member.len() + 1);
    k.push(TAG_MEMBER);
    k.extend_from_slice(member);
    k
}

fn s_sub(score: f64, member: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(member.len() + 9);
    k.push(TAG_SCORE);
    k.extend_from_slice(&score_key(score));
    k.extend_from_slice(member);
    k
}

fn s_prefix(score: f64) -> Vec<u8> {
    s_sub(score, b"")
}

/// Splits an `s` sub-key into (score, member).
fn parse_s(sub: &[u8]) -> CmdResult<(f64, Vec<u8>)> {
    if sub.len() < 9 || sub[0] != TAG_SCORE {
        return Err(CmdError::err("corrupt sorted set index record"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&sub[1..9]);
    Ok((score_from_key(b), sub[9..].to_vec()))
}

fn decode_score(v: &[u8]) -> CmdResult<f64> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| CmdError::err("corrupt sorted set member record"))?;
    Ok(score_from_key(b))
}

/// A range of sub-keys.
type SubRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// What a pop took: the key and its (member, score) pairs.
type Popped = (Bytes, Vec<(Vec<u8>, f64)>);

/// The whole `s` sub-space.
fn s_all() -> SubRange {
    (
        Bound::Included(vec![TAG_SCORE]),
        Bound::Excluded(vec![TAG_SCORE + 1]),
    )
}

/// The whole `m` sub-space.
fn m_all() -> SubRange {
    (
        Bound::Included(vec![TAG_MEMBER]),
        Bound::Excluded(vec![TAG_MEMBER + 1]),
    )
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v),
        Bound::Excluded(v) => Bound::Excluded(v),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Index entries `(score, member)` of `coll` with `s` sub-keys in `range`, index only.
fn index<'a>(
    store: &'a Store,
    coll: &Coll,
    range: &SubRange,
    reverse: bool,
) -> impl Iterator<Item = CmdResult<(f64, Vec<u8>)>> + 'a {
    coll.keys(store, as_ref(&range.0), as_ref(&range.1), reverse)
        .map(|r| r.and_then(|k| parse_s(&k)))
}

/// Every (member, score) of `coll`, in score order (index only). For DUMP and SORT.
///
/// # Errors
/// Engine errors, a corrupt index record.
pub(crate) fn members_with_scores(store: &Store, coll: &Coll) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    index(store, coll, &s_all(), false)
        .map(|r| r.map(|(s, m)| (m, s)))
        .collect()
}

/// Adds `member` with `score` to a sorted set being written (RESTORE); a member given twice
/// keeps its last score.
///
/// # Errors
/// Engine errors.
pub(crate) fn restore_member(ch: &mut Change<'_>, member: &[u8], score: f64) -> CmdResult<()> {
    let old = change_score(ch, member)?;
    put_member(ch, member, old, score);
    Ok(())
}

/// The score of `member`, one record read.
fn score_of(store: &Store, coll: &Coll, member: &[u8]) -> CmdResult<Option<f64>> {
    match coll.get(store, &m_sub(member))? {
        Some(v) => Ok(Some(decode_score(&v)?)),
        None => Ok(None),
    }
}

/// Reads sorted set `key` (`None` if missing, `WRONGTYPE` if another type).
fn read(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult<Option<Coll>> {
    ctx.store().coll(ctx.db(), key, TYPE_ZSET)
}

// ---------------------------------------------------------------------------------------
// Writes through a Change.

/// The score of `member` as changed so far.
fn change_score(ch: &Change<'_>, member: &[u8]) -> CmdResult<Option<f64>> {
    match ch.get(&m_sub(member))? {
        Some(v) => Ok(Some(decode_score(&v)?)),
        None => Ok(None),
    }
}

/// Sets `member` to `score`; `old` is its current score (from [`change_score`]).
fn put_member(ch: &mut Change<'_>, member: &[u8], old: Option<f64>, score: f64) {
    match old {
        Some(o) => ch.delete_raw(&s_sub(o, member)),
        None => ch.meta_mut().count += 1,
    }
    ch.put_raw(&s_sub(score, member), b"");
    ch.put_raw(&m_sub(member), &score_key(score));
}

/// Deletes `member` whose score is known to be `score`.
fn delete_member(ch: &mut Change<'_>, member: &[u8], score: f64) {
    ch.delete_raw(&s_sub(score, member));
    ch.delete_raw(&m_sub(member));
    let m = ch.meta_mut();
    m.count = m.count.saturating_sub(1);
}

/// Commits a change and records its version for the durability wait.
fn commit(ctx: &mut Ctx<'_>, ch: Change<'_>) -> CmdResult<()> {
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Replies.

/// Members with scores: flat in RESP2, pairs in RESP3 (as Redis does for ZRANGE and
/// friends); members only without scores.
fn pairs_reply(proto: u8, items: Vec<(Vec<u8>, f64)>, withscores: bool) -> Frame {
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (m, s) in items {
        if !withscores {
            out.push(Frame::bulk(m));
        } else if proto >= 3 {
            out.push(Frame::Array(vec![Frame::bulk(m), Frame::Double(s)]));
        } else {
            out.push(Frame::bulk(m));
            out.push(Frame::Double(s));
        }
    }
    Frame::Array(out)
}

/// Members with scores, always flat (ZPOPMIN in RESP2 or without COUNT, BZPOPMIN).
fn flat_reply(items: Vec<(Vec<u8>, f64)>) -> Vec<Frame> {
    let mut out = Vec::with_capacity(items.len() * 2);
    for (m, s) in items {
        out.push(Frame::bulk(m));
        out.push(Frame::Double(s));
    }
    out
}

/// Members with scores, always as pairs (ZMPOP, BZMPOP).
fn nested_reply(items: Vec<(Vec<u8>, f64)>) -> Frame {
    Frame::Array(
        items
            .into_iter()
            .map(|(m, s)| Frame::Array(vec![Frame::bulk(m), Frame::Double(s)]))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Ranges.

/// A score interval (`ZRANGEBYSCORE`'s `min`/`max`, `(` for open ends).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> CmdResult<ScoreRange> {
        let one = |b: &[u8]| -> Option<(f64, bool)> {
            match b.strip_prefix(b"(") {
                Some(rest) => parse_float(rest).map(|v| (v, true)),
                None => parse_float(b).map(|v| (v, false)),
            }
        };
        match (one(min), one(max)) {
            (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
                min,
                max,
                minex,
                maxex,
            }),
            _ => Err(CmdError::err("min or max is not a float")),
        }
    }

    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }

    #[cfg(test)]
    fn contains(&self, s: f64) -> bool {
        (if self.minex {
            s > self.min
        } else {
            s >= self.min
        }) && (if self.maxex {
            s < self.max
        } else {
            s <= self.max
        })
    }

    /// The `s` sub-key bounds of the interval (`None`: empty).
    fn bounds(&self) -> Option<SubRange> {
        if self.is_empty() {
            return None;
        }
        let lo = if self.minex {
            Bound::Included(prefix_end(&s_prefix(self.min))?)
        } else {
            Bound::Included(s_prefix(self.min))
        };
        let hi = if self.maxex {
            Bound::Excluded(s_prefix(self.max))
        } else {
            Bound::Excluded(prefix_end(&s_prefix(self.max)).unwrap_or(vec![TAG_SCORE + 1]))
        };
        Some((lo, hi))
    }
}

/// One end of a lexicographic interval.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    /// `-`
    Min,
    /// `+`
    Max,
    /// `[member`
    Incl(Vec<u8>),
    /// `(member`
    Excl(Vec<u8>),
}

impl Lex {
    fn parse(b: &[u8]) -> Option<Lex> {
        match b.first()? {
            b'+' if b.len() == 1 => Some(Lex::Max),
            b'-' if b.len() == 1 => Some(Lex::Min),
            b'[' => Some(Lex::Incl(b[1..].to_vec())),
            b'(' => Some(Lex::Excl(b[1..].to_vec())),
            _ => None,
        }
    }

    /// (value, exclusive) with `-` < every string < `+`, as Redis's `sdscmplex`.
    fn cmp(&self, other: &Lex) -> Ordering {
        let rank = |l: &Lex| match l {
            Lex::Min => 0,
            Lex::Max => 2,
            _ => 1,
        };
        match (self, other) {
            (Lex::Incl(a) | Lex::Excl(a), Lex::Incl(b) | Lex::Excl(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    fn exclusive(&self) -> bool {
        !matches!(self, Lex::Incl(_))
    }
}

/// A lexicographic interval (`ZRANGEBYLEX`'s `min`/`max`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LexRange {
    min: Lex,
    max: Lex,
}

impl LexRange {
    fn parse(min: &[u8], max: &[u8]) -> CmdResult<LexRange> {
        match (Lex::parse(min), Lex::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(CmdError::err("min or max not valid string range item")),
        }
    }

    /// The `m` sub-key bounds of the interval (`None`: empty).
    fn bounds(&self) -> Option<SubRange> {
        let c = self.min.cmp(&self.max);
        if c == Ordering::Greater
            || (c == Ordering::Equal && (self.min.exclusive() || self.max.exclusive()))
        {
            return None;
        }
        let lo = match &self.min {
            Lex::Min => Bound::Included(vec![TAG_MEMBER]),
            Lex::Incl(m) => Bound::Included(m_sub(m)),
            Lex::Excl(m) => Bound::Excluded(m_sub(m)),
            Lex::Max => return None,
        };
        let hi = match &self.max {
            Lex::Max => Bound::Excluded(vec![TAG_MEMBER + 1]),
            Lex::Incl(m) => Bound::Included(m_sub(m)),
            Lex::Excl(m) => Bound::Excluded(m_sub(m)),
            Lex::Min => return None,
        };
        Some((lo, hi))
    }
}

/// Members (and scores, if `with_scores`) of `coll` in a lexicographic interval, in member
/// order (or reverse), after skipping `offset`, at most `limit` (negative: no limit).
fn lex_range(
    store: &Store,
    coll: &Coll,
    range: &LexRange,
    reverse: bool,
    offset: i64,
    limit: i64,
    with_scores: bool,
) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    let mut out = Vec::new();
    let Some((lo, hi)) = range.bounds() else {
        return Ok(out);
    };
    if offset < 0 || limit == 0 {
        return Ok(out);
    }
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    if with_scores {
        for item in coll
            .scan(store, as_ref(&lo), as_ref(&hi), reverse)
            .skip(offset as usize)
            .take(take)
        {
            let (sub, v) = item?;
            out.push((sub[1..].to_vec(), decode_score(&v)?));
        }
    } else {
        for item in coll
            .keys(store, as_ref(&lo), as_ref(&hi), reverse)
            .skip(offset as usize)
            .take(take)
        {
            let mut sub = item?;
            sub.remove(0);
            out.push((sub, 0.0));
        }
    }
    Ok(out)
}

/// Members of `coll` in a score interval, in score order (or reverse), after skipping
/// `offset`, at most `limit` (negative: no limit). Index only.
fn score_range(
    store: &Store,
    coll: &Coll,
    range: &ScoreRange,
    reverse: bool,
    offset: i64,
    limit: i64,
) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    let mut out = Vec::new();
    let Some(bounds) = range.bounds() else {
        return Ok(out);
    };
    if offset < 0 || limit == 0 || (offset > 0 && offset as u64 >= coll.meta.count) {
        return Ok(out);
    }
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    for item in index(store, coll, &bounds, reverse)
        .skip(offset as usize)
        .take(take)
    {
        let (s, m) = item?;
        out.push((m, s));
    }
    Ok(out)
}

/// Normalizes Redis rank arguments against `len`: `None` if the range is empty.
fn rank_bounds(start: i64, end: i64, len: u64) -> Option<(u64, u64)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
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

/// Members with ranks `start..=end` (already normalized) counted from the low end (or the
/// high end if `reverse`), in that order. Walks the index from the nearer end.
fn rank_range(
    store: &Store,
    coll: &Coll,
    start: u64,
    end: u64,
    reverse: bool,
) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    let n = coll.meta.count;
    let take = (end - start + 1) as usize;
    let from_far = n.saturating_sub(end + 1);
    let all = s_all();
    let mut out = Vec::with_capacity(take.min(1 << 16));
    if start <= from_far {
        for item in index(store, coll, &all, reverse)
            .skip(start as usize)
            .take(take)
        {
            let (s, m) = item?;
            out.push((m, s));
        }
    } else {
        for item in index(store, coll, &all, !reverse)
            .skip(from_far as usize)
            .take(take)
        {
            let (s, m) = item?;
            out.push((m, s));
        }
        out.reverse();
    }
    Ok(out)
}

/// The 0-based rank of `member` (score `score`) from the low end, or from the high end if
/// `reverse`: walks from both ends at once and stops at the nearer one.
fn rank_of(store: &Store, coll: &Coll, member: &[u8], score: f64, reverse: bool) -> CmdResult<u64> {
    let me = s_sub(score, member);
    let below = (
        Bound::Included(vec![TAG_SCORE]),
        Bound::Excluded(me.clone()),
    );
    let above = (Bound::Excluded(me), Bound::Excluded(vec![TAG_SCORE + 1]));
    let mut up = coll.keys(store, as_ref(&below.0), as_ref(&below.1), false);
    let mut down = coll.keys(store, as_ref(&above.0), as_ref(&above.1), true);
    let (mut nb, mut na) = (0u64, 0u64);
    let n = coll.meta.count;
    let from_low = loop {
        match up.next() {
            None => break nb,
            Some(r) => {
                r?;
                nb += 1;
            }
        }
        match down.next() {
            None => break n.saturating_sub(na + 1),
            Some(r) => {
                r?;
                na += 1;
            }
        }
    };
    Ok(if reverse {
        n.saturating_sub(from_low + 1)
    } else {
        from_low
    })
}

// ---------------------------------------------------------------------------------------
// ZADD, ZINCRBY, ZREM, reads of single members.

#[derive(Default, Clone, Copy)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
pub fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let mut f = AddFlags::default();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if is(a, "NX") {
            f.nx = true;
        } else if is(a, "XX") {
            f.xx = true;
        } else if is(a, "CH") {
            f.ch = true;
        } else if is(a, "INCR") {
            f.incr = true;
        } else if is(a, "GT") {
            f.gt = true;
        } else if is(a, "LT") {
            f.lt = true;
        } else {
            break;
        }
        i += 1;
    }
    zadd_generic(ctx, &args[0], &args[i..], f)
}

/// ZINCRBY key increment member
pub fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let f = AddFlags {
        incr: true,
        ..AddFlags::default()
    };
    zadd_generic(ctx, &args[0], &args[1..], f)
}

fn zadd_generic(ctx: &mut Ctx<'_>, key: &[u8], pairs: &[Bytes], f: AddFlags) -> CmdResult<Frame> {
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CmdError::syntax());
    }
    if f.nx && f.xx {
        return Err(CmdError::err(
            "XX and NX options at the same time are not compatible",
        ));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(CmdError::err(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && pairs.len() > 2 {
        return Err(CmdError::err(
            "INCR option supports a single increment-element pair",
        ));
    }
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for p in pairs.chunks(2) {
        scores.push(parse_float(&p[0]).ok_or_else(CmdError::not_float)?);
    }
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let _lock = store.lock(db, &[key]);
    let mut ch = if f.xx {
        match Change::existing(store, db, key, TYPE_ZSET)? {
            Some(ch) => ch,
            None => {
                return Ok(if f.incr {
                    Frame::Null
                } else {
                    Frame::Integer(0)
                });
            }
        }
    } else {
        Change::open(store, db, key, TYPE_ZSET)?
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0);
    let mut last = 0.0;
    for (p, &score) in pairs.chunks(2).zip(&scores) {
        let member = &p[1];
        match change_score(&ch, member)? {
            Some(cur) => {
                if f.nx {
                    continue;
                }
                let new = if f.incr { cur + score } else { score };
                if new.is_nan() {
                    return Err(CmdError::err("resulting score is not a number (NaN)"));
                }
                if (f.lt && new >= cur) || (f.gt && new <= cur) {
                    continue;
                }
                processed += 1;
                last = new;
                if new != cur {
                    put_member(&mut ch, member, Some(cur), new);
                    updated += 1;
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                put_member(&mut ch, member, None, score);
                added += 1;
                processed += 1;
                last = score;
            }
        }
    }
    if added + updated > 0 {
        commit(ctx, ch)?;
    }
    Ok(if f.incr {
        if processed > 0 {
            Frame::Double(last)
        } else {
            Frame::Null
        }
    } else if f.ch {
        Frame::Integer(added + updated)
    } else {
        Frame::Integer(added)
    })
}

/// ZREM key member [member ...]
pub fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let _lock = store.lock(db, &[key]);
    let Some(mut ch) = Change::existing(store, db, key, TYPE_ZSET)? else {
        return Ok(Frame::Integer(0));
    };
    let mut n = 0;
    for m in &args[1..] {
        if let Some(s) = change_score(&ch, m)? {
            delete_member(&mut ch, m, s);
            n += 1;
        }
    }
    if n > 0 {
        commit(ctx, ch)?;
    }
    Ok(Frame::Integer(n))
}

/// ZSCORE key member
pub fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(coll) = read(ctx, &args[0])? else {
        ctx.count_lookup(false);
        return Ok(Frame::Null);
    };
    ctx.count_lookup(true);
    Ok(match score_of(ctx.store(), &coll, &args[1])? {
        Some(s) => Frame::Double(s),
        None => Frame::Null,
    })
}

/// ZMSCORE key member [member ...]
pub fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let coll = read(ctx, &args[0])?;
    ctx.count_lookup(coll.is_some());
    let mut out = Vec::with_capacity(args.len() - 1);
    for m in &args[1..] {
        let s = match &coll {
            Some(c) => score_of(ctx.store(), c, m)?,
            None => None,
        };
        out.push(s.map_or(Frame::Null, Frame::Double));
    }
    Ok(Frame::Array(out))
}

/// ZCARD key
pub fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let coll = read(ctx, &args[0])?;
    ctx.count_lookup(coll.is_some());
    Ok(Frame::Integer(coll.map_or(0, |c| c.meta.count as i64)))
}

/// ZCOUNT key min max
pub fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let range = ScoreRange::parse(&args[1], &args[2])?;
    count_in(ctx, &args[0], range.bounds())
}

/// ZLEXCOUNT key min max
pub fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let range = LexRange::parse(&args[1], &args[2])?;
    count_in(ctx, &args[0], range.bounds())
}

/// ZCOUNT / ZLEXCOUNT: the members of `key` whose sub-keys fall in `bounds` (`None`: an
/// empty range).
fn count_in(ctx: &mut Ctx<'_>, key: &[u8], bounds: Option<SubRange>) -> CmdResult<Frame> {
    let db = ctx.db();
    let store = ctx.store();
    let _lock = store.lock(db, &[key]);
    let (Some(coll), Some(bounds)) = (store.coll(db, key, TYPE_ZSET)?, bounds) else {
        return Ok(Frame::Integer(0));
    };
    let n = coll.count(store, as_ref(&bounds.0), as_ref(&bounds.1))?;
    Ok(Frame::Integer(n as i64))
}

/// ZRANK key member [WITHSCORE]
pub fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    rank_generic(ctx, args, false, "zrank")
}

/// ZREVRANK key member [WITHSCORE]
pub fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    rank_generic(ctx, args, true, "zrevrank")
}

fn rank_generic(ctx: &mut Ctx<'_>, args: &[Bytes], reverse: bool, name: &str) -> CmdResult<Frame> {
    if args.len() > 3 {
        return Err(CmdError::arity(name));
    }
    let withscore = match args.get(2) {
        Some(a) if is(a, "WITHSCORE") => true,
        Some(_) => return Err(CmdError::syntax()),
        None => false,
    };
    let none = if withscore {
        Frame::NullArray
    } else {
        Frame::Null
    };
    let db = ctx.db();
    let store = ctx.store();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(coll) = store.coll(db, &args[0], TYPE_ZSET)? else {
        return Ok(none);
    };
    let Some(score) = score_of(store, &coll, &args[1])? else {
        return Ok(none);
    };
    let rank = rank_of(store, &coll, &args[1], score, reverse)? as i64;
    Ok(if withscore {
        Frame::Array(vec![Frame::Integer(rank), Frame::Double(score)])
    } else {
        Frame::Integer(rank)
    })
}

// ---------------------------------------------------------------------------------------
// ZRANGE and its older forms.

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

enum Query {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

struct RangeArgs {
    query: Query,
    reverse: bool,
    offset: i64,
    limit: i64,
    withscores: bool,
}

/// Parses `min max [BYSCORE|BYLEX] [REV] [WITHSCORES] [LIMIT offset count]` (`args[0]` is
/// `min`) as Redis's `zrangeGenericCommand` does, errors in its order. `by` and `reverse`
/// are fixed by the older commands (ZRANGEBYSCORE, ZREVRANGE, ...).
fn parse_range(
    args: &[Bytes],
    store: bool,
    mut by: By,
    reverse: Option<bool>,
) -> CmdResult<RangeArgs> {
    let mut withscores = false;
    let mut offset = 0;
    let mut limit = -1;
    let mut limited = false;
    let mut rev = reverse;
    let mut j = 2;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if !store && is(a, "WITHSCORES") {
            withscores = true;
        } else if is(a, "LIMIT") && left >= 2 {
            offset = int_arg(&args[j + 1])?;
            limit = int_arg(&args[j + 2])?;
            limited = true;
            j += 2;
        } else if reverse.is_none() && is(a, "REV") {
            rev = Some(true);
        } else if by == By::Auto && is(a, "BYLEX") {
            by = By::Lex;
        } else if by == By::Auto && is(a, "BYSCORE") {
            by = By::Score;
        } else {
            return Err(CmdError::syntax());
        }
        j += 1;
    }
    let reverse = rev.unwrap_or(false);
    if by == By::Auto {
        by = By::Rank;
    }
    if limited && by == By::Rank {
        return Err(CmdError::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(CmdError::err(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (lo, hi) = if reverse && by != By::Rank {
        (&args[1], &args[0])
    } else {
        (&args[0], &args[1])
    };
    let query = match by {
        By::Score => Query::Score(ScoreRange::parse(lo, hi)?),
        By::Lex => Query::Lex(LexRange::parse(lo, hi)?),
        _ => Query::Rank(int_arg(lo)?, int_arg(hi)?),
    };
    Ok(RangeArgs {
        query,
        reverse,
        offset,
        limit,
        withscores,
    })
}

/// Runs a parsed range on `coll`; lexicographic ranges read scores only if `scores`.
fn run_range(
    store: &Store,
    coll: &Coll,
    r: &RangeArgs,
    scores: bool,
) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    match &r.query {
        Query::Rank(start, end) => match rank_bounds(*start, *end, coll.meta.count) {
            Some((s, e)) => rank_range(store, coll, s, e, r.reverse),
            None => Ok(Vec::new()),
        },
        Query::Score(range) => score_range(store, coll, range, r.reverse, r.offset, r.limit),
        Query::Lex(range) => lex_range(store, coll, range, r.reverse, r.offset, r.limit, scores),
    }
}

fn range_reply(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    by: By,
    reverse: Option<bool>,
) -> CmdResult<Frame> {
    let r = parse_range(&args[1..], false, by, reverse)?;
    let db = ctx.db();
    let proto = ctx.client.proto;
    let store = ctx.store();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(coll) = store.coll(db, &args[0], TYPE_ZSET)? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let items = run_range(store, &coll, &r, false)?;
    Ok(pairs_reply(proto, items, r.withscores))
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
pub fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    range_reply(ctx, args, By::Auto, None)
}

/// ZREVRANGE key start stop [WITHSCORES]
pub fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    range_reply(ctx, args, By::Rank, Some(true))
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
pub fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    range_reply(ctx, args, By::Score, Some(false))
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
pub fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    range_reply(ctx, args, By::Score, Some(true))
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
pub fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    range_reply(ctx, args, By::Lex, Some(false))
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
pub fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    range_reply(ctx, args, By::Lex, Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
pub fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (dst, src) = (&args[0], &args[1]);
    let r = parse_range(&args[2..], true, By::Auto, None)?;
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let _lock = store.lock(db, &[dst, src]);
    let items = match store.coll(db, src, TYPE_ZSET)? {
        Some(coll) => run_range(store, &coll, &r, true)?,
        None => Vec::new(),
    };
    let n = items.len() as i64;
    store_result(ctx, dst, items)?;
    Ok(Frame::Integer(n))
}

/// Replaces `dst` (any type) with a sorted set of `items` (distinct members); an empty
/// result deletes it.
fn store_result(ctx: &mut Ctx<'_>, dst: &[u8], items: Vec<(Vec<u8>, f64)>) -> CmdResult<()> {
    let shared = ctx.shared;
    let mut ch = Change::create(&shared.store, ctx.db(), dst, TYPE_ZSET);
    for (m, s) in items {
        put_member(&mut ch, &m, None, s);
    }
    commit(ctx, ch)
}

// ---------------------------------------------------------------------------------------
// ZREMRANGEBY*.

/// ZREMRANGEBYSCORE key min max
pub fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let range = ScoreRange::parse(&args[1], &args[2])?;
    remrange(ctx, &args[0], |store, coll| {
        score_range(store, coll, &range, false, 0, -1)
    })
}

/// ZREMRANGEBYRANK key start stop
pub fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let start = int_arg(&args[1])?;
    let end = int_arg(&args[2])?;
    remrange(ctx, &args[0], |store, coll| {
        match rank_bounds(start, end, coll.meta.count) {
            Some((s, e)) => rank_range(store, coll, s, e, false),
            None => Ok(Vec::new()),
        }
    })
}

/// ZREMRANGEBYLEX key min max
pub fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let range = LexRange::parse(&args[1], &args[2])?;
    remrange(ctx, &args[0], |store, coll| {
        lex_range(store, coll, &range, false, 0, -1, true)
    })
}

/// Deletes the members `pick` selects, in one batch; replies how many.
fn remrange(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    pick: impl FnOnce(&Store, &Coll) -> CmdResult<Vec<(Vec<u8>, f64)>>,
) -> CmdResult<Frame> {
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let _lock = store.lock(db, &[key]);
    let Some(mut ch) = Change::existing(store, db, key, TYPE_ZSET)? else {
        return Ok(Frame::Integer(0));
    };
    let victims = pick(store, ch.coll())?;
    let n = victims.len() as i64;
    for (m, s) in victims {
        delete_member(&mut ch, &m, s);
    }
    if n > 0 {
        commit(ctx, ch)?;
    }
    Ok(Frame::Integer(n))
}

// ---------------------------------------------------------------------------------------
// Pops, blocking and not.

/// Pops up to `count` members of the lowest (or highest, if `max`) scores from the first
/// non-empty sorted set among `keys`; `WRONGTYPE` stops at the first key of another type,
/// as in Redis.
fn pop_first(
    ctx: &mut Ctx<'_>,
    keys: &[Bytes],
    max: bool,
    count: u64,
) -> CmdResult<Option<Popped>> {
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    for key in keys {
        let _lock = store.lock(db, &[key]);
        let Some(mut ch) = Change::existing(store, db, key, TYPE_ZSET)? else {
            continue;
        };
        let items = {
            let coll = ch.coll();
            let mut items = Vec::new();
            for item in
                index(store, coll, &s_all(), max).take(count.min(usize::MAX as u64) as usize)
            {
                let (s, m) = item?;
                items.push((m, s));
            }
            items
        };
        for (m, s) in &items {
            delete_member(&mut ch, m, *s);
        }
        commit(ctx, ch)?;
        return Ok(Some((key.clone(), items)));
    }
    Ok(None)
}

/// ZPOPMIN key [count]
pub fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    zpop(ctx, args, false)
}

/// ZPOPMAX key [count]
pub fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    zpop(ctx, args, true)
}

fn positive_count(b: &[u8]) -> CmdResult<u64> {
    let n = int_arg(b)?;
    if n < 0 {
        return Err(CmdError::err("value is out of range, must be positive"));
    }
    Ok(n as u64)
}

fn zpop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult<Frame> {
    if args.len() > 2 {
        return Err(CmdError::syntax());
    }
    let count = args.get(1).map(|c| positive_count(c)).transpose()?;
    let proto = ctx.client.proto;
    if count == Some(0) {
        // Redis still checks the type.
        read(ctx, &args[0])?;
        return Ok(Frame::Array(Vec::new()));
    }
    let Some((_, items)) = pop_first(ctx, &args[..1], max, count.unwrap_or(1))? else {
        return Ok(Frame::Array(Vec::new()));
    };
    Ok(if proto >= 3 && count.is_some() {
        nested_reply(items)
    } else {
        Frame::Array(flat_reply(items))
    })
}

/// BZPOPMIN key [key ...] timeout
pub fn bzpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    bzpop(ctx, args, false, bzpopmin_retry)
}

/// BZPOPMAX key [key ...] timeout
pub fn bzpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    bzpop(ctx, args, true, bzpopmax_retry)
}

type Retry = fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult<Option<Frame>>;

fn bzpop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool, retry: Retry) -> CmdResult<Outcome> {
    let timeout = timeout_arg(&args[args.len() - 1])?;
    if let Some(f) = bzpop_try(ctx, args, max)? {
        return Ok(Outcome::Reply(f));
    }
    Ok(Outcome::Block(Block {
        keys: args[..args.len() - 1].to_vec(),
        timeout,
        retry,
        args: args.to_vec(),
        timeout_reply: Frame::NullArray,
    }))
}

fn bzpop_try(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult<Option<Frame>> {
    let keys = &args[..args.len() - 1];
    Ok(pop_first(ctx, keys, max, 1)?.map(|(key, items)| {
        let mut out = vec![Frame::Bulk(key)];
        out.extend(flat_reply(items));
        Frame::Array(out)
    }))
}

/// A blocked client woken by a key that now holds another type keeps waiting, as in Redis
/// (ZADD + DEL + SET in one transaction must not serve it a WRONGTYPE error).
fn keep_waiting_on_wrong_type(r: CmdResult<Option<Frame>>) -> CmdResult<Option<Frame>> {
    match r {
        Err(e) if e == CmdError::wrong_type() => Ok(None),
        other => other,
    }
}

fn bzpopmin_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    keep_waiting_on_wrong_type(bzpop_try(ctx, args, false))
}

fn bzpopmax_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    keep_waiting_on_wrong_type(bzpop_try(ctx, args, true))
}

/// `numkeys key... MIN|MAX [COUNT count]` of ZMPOP and BZMPOP: (keys, max, count).
fn parse_mpop(args: &[Bytes]) -> CmdResult<(&[Bytes], bool, u64)> {
    let numkeys = int_arg(&args[0])
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| CmdError::err("numkeys should be greater than 0"))?;
    let where_idx = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(1))
        .filter(|&w| w < args.len())
        .ok_or_else(CmdError::syntax)?;
    let max = if is(&args[where_idx], "MIN") {
        false
    } else if is(&args[where_idx], "MAX") {
        true
    } else {
        return Err(CmdError::syntax());
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "COUNT") && j + 1 < args.len() {
            let c = int_arg(&args[j + 1])
                .ok()
                .filter(|&c| c > 0)
                .ok_or_else(|| CmdError::err("count should be greater than 0"))?;
            count = Some(c as u64);
            j += 2;
        } else {
            return Err(CmdError::syntax());
        }
    }
    Ok((&args[1..where_idx], max, count.unwrap_or(1)))
}

fn mpop_try(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    let (keys, max, count) = parse_mpop(args)?;
    Ok(pop_first(ctx, keys, max, count)?
        .map(|(key, items)| Frame::Array(vec![Frame::Bulk(key), nested_reply(items)])))
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]
pub fn zmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    Ok(mpop_try(ctx, args)?.unwrap_or(Frame::NullArray))
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]
pub fn bzmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    let (keys, _, _) = parse_mpop(&args[1..])?;
    let keys = keys.to_vec();
    let timeout = timeout_arg(&args[0])?;
    if let Some(f) = mpop_try(ctx, &args[1..])? {
        return Ok(Outcome::Reply(f));
    }
    Ok(Outcome::Block(Block {
        keys,
        timeout,
        retry: bzmpop_retry,
        args: args.to_vec(),
        timeout_reply: Frame::NullArray,
    }))
}

fn bzmpop_retry(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Option<Frame>> {
    keep_waiting_on_wrong_type(mpop_try(ctx, &args[1..]))
}

// ---------------------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD.

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, target: &mut f64, val: f64) {
        match self {
            Aggregate::Sum => {
                *target += val;
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if val < *target {
                    *target = val;
                }
            }
            Aggregate::Max => {
                if val > *target {
                    *target = val;
                }
            }
        }
    }
}

/// An input of a set operation: a sorted set, or a set (every member scores 1).
struct Source {
    coll: Option<Coll>,
    weight: f64,
}

impl Source {
    fn open(store: &Store, db: u8, key: &[u8]) -> CmdResult<Source> {
        let coll = match store.any_coll(db, key)? {
            Some(c) if c.meta.tag == TYPE_ZSET || c.meta.tag == TYPE_SET => Some(c),
            Some(_) => return Err(CmdError::wrong_type()),
            None if store.meta(db, key)?.is_some() => return Err(CmdError::wrong_type()),
            None => None,
        };
        Ok(Source { coll, weight: 1.0 })
    }

    fn len(&self) -> u64 {
        self.coll.as_ref().map_or(0, |c| c.meta.count)
    }

    /// Every (member, score), index only.
    fn members(&self, store: &Store) -> CmdResult<Vec<(Vec<u8>, f64)>> {
        let mut out = Vec::new();
        let Some(c) = &self.coll else {
            return Ok(out);
        };
        if c.meta.tag == TYPE_SET {
            for k in c.keys(store, Bound::Unbounded, Bound::Unbounded, false) {
                out.push((k?, 1.0));
            }
        } else {
            for item in index(store, c, &s_all(), false) {
                let (s, m) = item?;
                out.push((m, s));
            }
        }
        Ok(out)
    }

    fn find(&self, store: &Store, member: &[u8]) -> CmdResult<Option<f64>> {
        match &self.coll {
            None => Ok(None),
            Some(c) if c.meta.tag == TYPE_SET => Ok(c.contains(store, member)?.then_some(1.0)),
            Some(c) => score_of(store, c, member),
        }
    }
}

/// The common body of the set operations; `args[0]` is `numkeys`.
fn setop(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    dst: Option<&Bytes>,
    op: SetOp,
    card_only: bool,
    name: &str,
) -> CmdResult<Frame> {
    let setnum = int_arg(&args[0])?;
    if setnum < 1 {
        return Err(CmdError::err(format!(
            "at least 1 input key is needed for '{name}' command"
        )));
    }
    if setnum > (args.len() - 1) as i64 {
        return Err(CmdError::syntax());
    }
    let setnum = setnum as usize;
    let keys = &args[1..=setnum];
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let mut lock_keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    if let Some(d) = dst {
        lock_keys.push(d);
    }
    let _lock = store.lock(db, &lock_keys);
    let mut srcs = Vec::with_capacity(setnum);
    for k in keys {
        srcs.push(Source::open(store, db, k)?);
    }
    // Options.
    let mut aggregate = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0u64;
    let mut j = setnum + 1;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != SetOp::Diff && !card_only && remaining > setnum && is(a, "WEIGHTS") {
            for (i, src) in srcs.iter_mut().enumerate() {
                src.weight = parse_float(&args[j + 1 + i])
                    .ok_or_else(|| CmdError::err("weight value is not a float"))?;
            }
            j += setnum + 1;
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && is(a, "AGGREGATE") {
            let v = &args[j + 1];
            aggregate = if is(v, "SUM") {
                Aggregate::Sum
            } else if is(v, "MIN") {
                Aggregate::Min
            } else if is(v, "MAX") {
                Aggregate::Max
            } else {
                return Err(CmdError::syntax());
            };
            j += 2;
        } else if dst.is_none() && !card_only && is(a, "WITHSCORES") {
            withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && is(a, "LIMIT") {
            limit = int_arg(&args[j + 1])
                .ok()
                .filter(|&l| l >= 0)
                .ok_or_else(|| CmdError::err("LIMIT can't be negative"))?
                as u64;
            j += 2;
        } else {
            return Err(CmdError::syntax());
        }
    }
    if op != SetOp::Diff {
        srcs.sort_by_key(Source::len);
    }
    let mut result: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut cardinality = 0u64;
    match op {
        SetOp::Inter => {
            if srcs[0].len() > 0 {
                'outer: for (m, s) in srcs[0].members(store)? {
                    let mut score = srcs[0].weight * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    for src in &srcs[1..] {
                        match src.find(store, &m)? {
                            Some(v) => aggregate.apply(&mut score, v * src.weight),
                            None => continue 'outer,
                        }
                    }
                    if card_only {
                        cardinality += 1;
                        if limit > 0 && cardinality >= limit {
                            break;
                        }
                    } else {
                        result.push((m, score));
                    }
                }
            }
        }
        SetOp::Union => {
            let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
            for src in &srcs {
                for (m, s) in src.members(store)? {
                    let mut score = src.weight * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(&m) {
                        Some(t) => aggregate.apply(t, score),
                        None => {
                            acc.insert(m, score);
                        }
                    }
                }
            }
            result = acc.into_iter().collect();
        }
        SetOp::Diff => {
            'members: for (m, s) in srcs[0].members(store)? {
                for src in &srcs[1..] {
                    if src.find(store, &m)?.is_some() {
                        continue 'members;
                    }
                }
                result.push((m, s));
            }
        }
    }
    if card_only {
        return Ok(Frame::Integer(cardinality as i64));
    }
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    match dst {
        Some(d) => {
            let n = result.len() as i64;
            store_result(ctx, d, result)?;
            Ok(Frame::Integer(n))
        }
        None => Ok(pairs_reply(ctx.client.proto, result, withscores)),
    }
}

/// ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX]
pub fn zunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(
        ctx,
        &args[1..],
        Some(&args[0]),
        SetOp::Union,
        false,
        "zunionstore",
    )
}

/// ZINTERSTORE destination numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX]
pub fn zinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(
        ctx,
        &args[1..],
        Some(&args[0]),
        SetOp::Inter,
        false,
        "zinterstore",
    )
}

/// ZDIFFSTORE destination numkeys key [key ...]
pub fn zdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(
        ctx,
        &args[1..],
        Some(&args[0]),
        SetOp::Diff,
        false,
        "zdiffstore",
    )
}

/// ZUNION numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
pub fn zunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(ctx, args, None, SetOp::Union, false, "zunion")
}

/// ZINTER numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
pub fn zinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(ctx, args, None, SetOp::Inter, false, "zinter")
}

/// ZDIFF numkeys key [key ...] [WITHSCORES]
pub fn zdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(ctx, args, None, SetOp::Diff, false, "zdiff")
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn zintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    setop(ctx, args, None, SetOp::Inter, true, "zintercard")
}

// ---------------------------------------------------------------------------------------
// ZRANDMEMBER.

/// A small non-cryptographic generator (splitmix64), seeded per command from the
/// process's random hasher keys.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        Rng(h.finish())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Random members of one sorted set. Up to [`EXACT_SAMPLE_MAX`] members the whole index is
/// read (it is in memory) and draws are exactly uniform. Above, a draw descends the member
/// order like a trie: under the current prefix, the first and the last member bound the
/// next byte, which is picked uniformly between them (two index seeks per byte, no I/O
/// until the chosen member's score). Each branch weighs by its byte range, not by how many
/// members it holds, and a byte with no member leads to the next member after it: members
/// of sparse branches come up more often than members of crowded ones. For keys like
/// `user:12345` that is close to uniform; that bias is the price of not walking a
/// million-member index per draw.
struct Sampler<'a> {
    store: &'a Store,
    coll: &'a Coll,
    rng: Rng,
    all: Option<Vec<(Vec<u8>, f64)>>,
}

impl<'a> Sampler<'a> {
    fn new(store: &'a Store, coll: &'a Coll, salt: u64) -> CmdResult<Sampler<'a>> {
        let mut s = Sampler {
            store,
            coll,
            rng: Rng::new(salt),
            all: None,
        };
        if coll.meta.count <= EXACT_SAMPLE_MAX {
            s.all = Some(s.everything()?);
        }
        Ok(s)
    }

    /// Every member with its score, in score order (index only).
    fn everything(&self) -> CmdResult<Vec<(Vec<u8>, f64)>> {
        let mut out = Vec::with_capacity(self.coll.meta.count.min(1 << 16) as usize);
        for item in index(self.store, self.coll, &s_all(), false) {
            let (s, m) = item?;
            out.push((m, s));
        }
        Ok(out)
    }

    /// One random member (`None` only if the set vanished).
    fn draw(&mut self) -> CmdResult<Option<(Vec<u8>, f64)>> {
        if let Some(all) = &self.all {
            if all.is_empty() {
                return Ok(None);
            }
            let i = self.rng.below(all.len() as u64) as usize;
            return Ok(Some(all[i].clone()));
        }
        // Descend the member order like a trie: at each step, the first and the last member
        // under the current prefix bound the next byte; pick one at random between them.
        let mut prefix = vec![TAG_MEMBER];
        let found = loop {
            let hi = prefix_end(&prefix).unwrap_or(vec![TAG_MEMBER + 1]);
            let first = self
                .coll
                .keys(
                    self.store,
                    Bound::Included(&prefix),
                    Bound::Excluded(&hi),
                    false,
                )
                .next()
                .transpose()?;
            let last = self
                .coll
                .keys(
                    self.store,
                    Bound::Included(&prefix),
                    Bound::Excluded(&hi),
                    true,
                )
                .next()
                .transpose()?;
            let (Some(first), Some(last)) = (first, last) else {
                // A gap in the byte values: take the next member after it (wrapping around).
                let (lo, end) = m_all();
                let next = self
                    .coll
                    .keys(self.store, Bound::Included(&prefix), as_ref(&end), false)
                    .next()
                    .transpose()?;
                match next {
                    Some(k) => break Some(k),
                    None => {
                        break self
                            .coll
                            .keys(self.store, as_ref(&lo), as_ref(&end), false)
                            .next()
                            .transpose()?;
                    }
                }
            };
            if first == last {
                break Some(first);
            }
            let common = first.iter().zip(&last).take_while(|(a, b)| a == b).count();
            let top = u64::from(last[common]);
            let next = match first.get(common) {
                Some(&b) => {
                    let b = u64::from(b);
                    b + self.rng.below(top - b + 1)
                }
                // `first` is the common prefix itself: one more slot for it.
                None => match self.rng.below(top + 2) {
                    0 => break Some(first),
                    r => r - 1,
                },
            };
            prefix = first[..common].to_vec();
            prefix.push(next as u8);
        };
        let Some(sub) = found else {
            return Ok(None);
        };
        let score = match self.coll.get(self.store, &sub)? {
            Some(v) => decode_score(&v)?,
            None => return Ok(None),
        };
        Ok(Some((sub[1..].to_vec(), score)))
    }

    /// `n` distinct members (n < size).
    fn distinct(&mut self, n: usize) -> CmdResult<Vec<(Vec<u8>, f64)>> {
        if let Some(all) = self.all.as_mut() {
            // Partial Fisher-Yates.
            let len = all.len();
            for i in 0..n.min(len) {
                let j = i + self.rng.below((len - i) as u64) as usize;
                all.swap(i, j);
            }
            return Ok(all[..n.min(len)].to_vec());
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(n);
        let mut attempts = 0usize;
        while out.len() < n && attempts < n.saturating_mul(8).saturating_add(64) {
            attempts += 1;
            let Some((m, s)) = self.draw()? else { break };
            if seen.insert(m.clone()) {
                out.push((m, s));
            }
        }
        if out.len() < n {
            // Unlucky probes: complete from the index.
            for item in index(self.store, self.coll, &s_all(), false) {
                let (s, m) = item?;
                if out.len() >= n {
                    break;
                }
                if seen.insert(m.clone()) {
                    out.push((m, s));
                }
            }
        }
        Ok(out)
    }
}

/// ZRANDMEMBER key [count [WITHSCORES]]
pub fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let mut count = None;
    let mut withscores = false;
    if let Some(c) = args.get(1) {
        let l = int_arg(c)?;
        if l == i64::MIN {
            return Err(CmdError::err(format!(
                "value is out of range, value must between {} and {}",
                -i64::MAX,
                i64::MAX
            )));
        }
        match args.get(2) {
            Some(w) if args.len() == 3 && is(w, "WITHSCORES") => {
                withscores = true;
                if !(-i64::MAX / 2..=i64::MAX / 2).contains(&l) {
                    return Err(CmdError::err("value is out of range"));
                }
            }
            Some(_) => return Err(CmdError::syntax()),
            None => {}
        }
        count = Some(l);
    }
    let db = ctx.db();
    let proto = ctx.client.proto;
    let salt = ctx.now_ms() ^ ctx.client.handle.id;
    let limit = ctx.shared.config.limits.max_multibulk_len;
    let store = ctx.store();
    let _lock = store.lock(db, &[&args[0]]);
    let Some(coll) = store.coll(db, &args[0], TYPE_ZSET)? else {
        return Ok(if count.is_some() {
            Frame::Array(Vec::new())
        } else {
            Frame::Null
        });
    };
    let mut sampler = Sampler::new(store, &coll, salt)?;
    let Some(l) = count else {
        return Ok(match sampler.draw()? {
            Some((m, _)) => Frame::bulk(m),
            None => Frame::Null,
        });
    };
    if l == 0 {
        return Ok(Frame::Array(Vec::new()));
    }
    let size = coll.meta.count;
    let items = if l < 0 {
        let n = l.unsigned_abs();
        if n > limit {
            return Err(CmdError::err(format!(
                "count is larger than the reply limit ({limit} elements, \
                 proto-max-multibulk-len)"
            )));
        }
        let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
        for _ in 0..n {
            match sampler.draw()? {
                Some(x) => out.push(x),
                None => break,
            }
        }
        out
    } else if l as u64 >= size {
        sampler.everything()?
    } else {
        sampler.distinct(l as usize)?
    };
    Ok(pairs_reply(proto, items, withscores))
}

// ---------------------------------------------------------------------------------------
// ZSCAN.

/// Most ZSCAN cursors remembered at once (as SCAN's table in keys.rs).
const MAX_CURSORS: usize = 16 * 1024;

/// ZSCAN cursors: number -> (db, key, last member returned). A cursor that fell out of the
/// table restarts the iteration: members may be returned twice, never missed.
#[derive(Default)]
struct Cursors {
    map: HashMap<u64, (u8, Vec<u8>, Vec<u8>)>,
    order: VecDeque<u64>,
    next: u64,
}

fn cursors() -> &'static Mutex<Cursors> {
    static CURSORS: OnceLock<Mutex<Cursors>> = OnceLock::new();
    CURSORS.get_or_init(Mutex::default)
}

fn issue_cursor(db: u8, key: &[u8], last: Vec<u8>) -> u64 {
    let mut t = cursors().lock().unwrap_or_else(|e| e.into_inner());
    t.next = t.next.wrapping_add(1).max(1);
    let id = t.next;
    if t.order.len() >= MAX_CURSORS
        && let Some(old) = t.order.pop_front()
    {
        t.map.remove(&old);
    }
    t.order.push_back(id);
    t.map.insert(id, (db, key.to_vec(), last));
    id
}

fn resolve_cursor(db: u8, key: &[u8], id: u64) -> Option<Vec<u8>> {
    let t = cursors().lock().unwrap_or_else(|e| e.into_inner());
    t.map
        .get(&id)
        .filter(|(d, k, _)| *d == db && k == key)
        .map(|(_, _, last)| last.clone())
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]
pub fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CmdError::err("invalid cursor"))?;
    let empty = || Frame::Array(vec![Frame::bulk("0"), Frame::Array(Vec::new())]);
    let Some(coll) = read(ctx, key)? else {
        return Ok(empty());
    };
    let ScanOptions { pattern, count, .. } = scan_options(args, 2, false)?;
    let db = ctx.db();
    let after = if cursor == 0 {
        None
    } else {
        resolve_cursor(db, key, cursor)
    };
    let (lo, hi) = m_all();
    let lo = match &after {
        Some(m) => Bound::Excluded(m_sub(m)),
        None => lo,
    };
    let store = ctx.store();
    let mut out = Vec::new();
    let mut visited = 0i64;
    let mut last = None;
    let mut iter = coll.scan(store, as_ref(&lo), as_ref(&hi), false);
    for item in iter.by_ref() {
        let (sub, v) = item?;
        let member = &sub[1..];
        visited += 1;
        if pattern.is_none_or(|p| glob::matches(p, member)) {
            out.push(Frame::bulk(member.to_vec()));
            out.push(Frame::bulk(format_d2string(decode_score(&v)?)));
        }
        if visited >= count {
            last = Some(member.to_vec());
            break;
        }
    }
    let next = match last {
        Some(m) if iter.next().is_some() => issue_cursor(db, key, m),
        _ => 0,
    };
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(out),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bounds_agree_with_the_interval() {
        let scores = [
            f64::NEG_INFINITY,
            -2.0,
            -1.0,
            0.0,
            0.5,
            1.0,
            2.0,
            f64::INFINITY,
        ];
        let ends: Vec<&[u8]> = vec![
            b"-inf", b"-1", b"(-1", b"0", b"(0", b"1", b"(1", b"+inf", b"(+inf", b"(-inf",
        ];
        for lo in &ends {
            for hi in &ends {
                let r = ScoreRange::parse(lo, hi).unwrap();
                for &s in &scores {
                    let sub = s_sub(s, b"member");
                    let inside = match r.bounds() {
                        None => false,
                        Some((a, b)) => {
                            let after_lo = match &a {
                                Bound::Included(k) => sub >= *k,
                                Bound::Excluded(k) => sub > *k,
                                Bound::Unbounded => true,
                            };
                            let before_hi = match &b {
                                Bound::Included(k) => sub <= *k,
                                Bound::Excluded(k) => sub < *k,
                                Bound::Unbounded => true,
                            };
                            after_lo && before_hi
                        }
                    };
                    assert_eq!(inside, r.contains(s), "{s} in {r:?}");
                }
            }
        }
        assert!(ScoreRange::parse(b"x", b"1").is_err());
        assert!(ScoreRange::parse(b"1", b"(nan").is_err());
    }

    #[test]
    fn lex_ranges_parse_like_redis() {
        assert!(LexRange::parse(b"foo", b"+").is_err());
        assert!(LexRange::parse(b"+x", b"+").is_err());
        assert!(LexRange::parse(b"-", b"+").unwrap().bounds().is_some());
        assert!(LexRange::parse(b"+", b"-").unwrap().bounds().is_none());
        assert!(LexRange::parse(b"-", b"-").unwrap().bounds().is_none());
        assert!(LexRange::parse(b"[a", b"[a").unwrap().bounds().is_some());
        assert!(LexRange::parse(b"(a", b"[a").unwrap().bounds().is_none());
        assert!(LexRange::parse(b"[b", b"[a").unwrap().bounds().is_none());
    }

    #[test]
    fn rank_bounds_follow_redis() {
        assert_eq!(rank_bounds(0, -1, 5), Some((0, 4)));
        assert_eq!(rank_bounds(-100, 100, 5), Some((0, 4)));
        assert_eq!(rank_bounds(3, 1, 5), None);
        assert_eq!(rank_bounds(5, 10, 5), None);
        assert_eq!(rank_bounds(0, -6, 5), None);
        assert_eq!(rank_bounds(0, 0, 0), None);
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut r = Rng::new(7);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
    }
}
