//! SORT and SORT_RO, with Redis 7's semantics (`sort.c`):
//!
//! `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
//! [STORE destination]` sorts the elements of a list, set or sorted set, numerically (each
//! element, or the value BY names, read as a double; a value that is not one fails the
//! command) or with ALPHA byte-wise; equal numbers fall back to comparing the elements.
//! In a pattern the first `*` stands for the element: `weight_*` names a string key,
//! `obj_*->field` a hash field, and `#` the element itself. A BY pattern without `*` means
//! "do not sort": lists and sorted sets keep their order (reversed by DESC), and a set
//! being STOREd is sorted ALPHA so that the result does not depend on iteration order.
//! STORE replaces the destination (any type) with a list of the result (missing GET
//! values become empty strings), deletes it when the result is empty, and replies with
//! the number of elements stored.
//!
//! Everything SORT reads is read at once and sorted in memory, as in Redis; the keys BY
//! and GET name are read without locking them (each read sees a committed value).

use std::cmp::Ordering;

use bytes::Bytes;

use super::set::check_reply_len;
use super::{CmdError, CmdResult, Ctx, int_arg, is};
use crate::server::coll::{Change, Stored};
use crate::server::frame::Frame;
use crate::server::keyspace::{Store, TYPE_HASH, TYPE_LIST, TYPE_SET, TYPE_STRING, TYPE_ZSET};

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
/// [STORE destination]
pub fn sort(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    sort_generic(ctx, args, false)
}

/// SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
pub fn sort_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    sort_generic(ctx, args, true)
}

struct Options<'a> {
    desc: bool,
    alpha: bool,
    limit: Option<(i64, i64)>,
    by: Option<&'a [u8]>,
    gets: Vec<&'a [u8]>,
    store: Option<&'a [u8]>,
}

fn parse_options(args: &[Bytes], readonly: bool) -> CmdResult<Options<'_>> {
    let mut o = Options {
        desc: false,
        alpha: false,
        limit: None,
        by: None,
        gets: Vec::new(),
        store: None,
    };
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        let left = args.len() - i - 1;
        if is(a, "ASC") {
            o.desc = false;
        } else if is(a, "DESC") {
            o.desc = true;
        } else if is(a, "ALPHA") {
            o.alpha = true;
        } else if is(a, "LIMIT") && left >= 2 {
            o.limit = Some((int_arg(&args[i + 1])?, int_arg(&args[i + 2])?));
            i += 2;
        } else if !readonly && is(a, "STORE") && left >= 1 {
            o.store = Some(&args[i + 1]);
            i += 1;
        } else if is(a, "BY") && left >= 1 {
            o.by = Some(&args[i + 1]);
            i += 1;
        } else if is(a, "GET") && left >= 1 {
            o.gets.push(&args[i + 1]);
            i += 1;
        } else {
            return Err(CmdError::syntax());
        }
        i += 1;
    }
    Ok(o)
}

/// What a pattern names for `elem`: the element itself (`#`), a string key's value or a
/// hash field (`...->field`); `None` when the pattern has no `*` or the key or field is
/// missing or of another type.
fn lookup(store: &Store, db: u8, pattern: &[u8], elem: &[u8]) -> CmdResult<Option<Vec<u8>>> {
    if pattern == b"#" {
        return Ok(Some(elem.to_vec()));
    }
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return Ok(None);
    };
    // A hash dereference is a `->` after the `*` followed by a non-empty field name.
    let after = &pattern[star + 1..];
    let (postfix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(p) if p + 2 < after.len() => (&after[..p], Some(&after[p + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + elem.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(postfix);
    match field {
        None => match store.get(db, &key)? {
            Some(v) if v.tag == TYPE_STRING => Ok(Some(v.data.to_vec())),
            _ => Ok(None),
        },
        Some(field) => match store.any_coll(db, &key)? {
            Some(coll) if coll.meta.tag == TYPE_HASH => coll.get(store, field),
            _ => Ok(None),
        },
    }
}

/// Reads a sort weight like C's `strtod` with nothing left over: leading white space is
/// skipped, the empty string is 0, NaN, overflow and trailing junk are errors.
fn weight(b: &[u8]) -> Option<f64> {
    if b.is_empty() {
        return Some(0.0);
    }
    let s = std::str::from_utf8(b).ok()?;
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let v: f64 = t.parse().ok()?;
    if v.is_nan() || (v.is_infinite() && !t.to_ascii_lowercase().contains("inf")) {
        return None;
    }
    Some(v)
}

/// One element to sort and what it sorts by.
struct Item {
    elem: Vec<u8>,
    score: f64,
    /// ALPHA with BY: the value BY named (`None`: missing, sorts first).
    by: Option<Vec<u8>>,
}

fn sort_generic(ctx: &mut Ctx<'_>, args: &[Bytes], readonly: bool) -> CmdResult<Frame> {
    let o = parse_options(args, readonly)?;
    let key = &args[0];
    let db = ctx.db();
    let shared = ctx.shared;
    let store = &shared.store;
    let _lock = match o.store {
        Some(dst) => store.lock(db, &[key, dst]),
        None => store.lock(db, &[key]),
    };
    let coll = match store.read_value(db, key)? {
        None => None,
        Some(Stored::Coll(c)) if matches!(c.meta.tag, TYPE_LIST | TYPE_SET | TYPE_ZSET) => Some(c),
        Some(_) => return Err(CmdError::wrong_type()),
    };
    let tag = coll.as_ref().map(|c| c.meta.tag);
    ctx.count_lookup(tag.is_some());
    // A BY pattern without `*` means "do not sort".
    let mut dontsort = o.by.is_some_and(|p| !p.contains(&b'*'));
    let (mut alpha, mut by) = (o.alpha, o.by);
    if dontsort && tag == Some(TYPE_SET) && o.store.is_some() {
        // Sets have no order of their own: give a stored result a deterministic one.
        dontsort = false;
        alpha = true;
        by = None;
    }
    // The elements in the collection's own order (lists: list order; sets: member order;
    // sorted sets: score order).
    let mut elems: Vec<Vec<u8>> = match coll {
        None => Vec::new(),
        Some(coll) => match coll.meta.tag {
            TYPE_LIST => coll
                .all(store)
                .map(|r| r.map(|(_, v)| v))
                .collect::<CmdResult<_>>()?,
            TYPE_ZSET => super::zset::members_with_scores(store, &coll)?
                .into_iter()
                .map(|(m, _)| m)
                .collect(),
            _ => coll
                .keys(
                    store,
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                    false,
                )
                .collect::<CmdResult<_>>()?,
        },
    };
    if dontsort && o.desc && matches!(tag, Some(TYPE_LIST | TYPE_ZSET)) {
        elems.reverse();
    }
    if !dontsort {
        let mut items = Vec::with_capacity(elems.len());
        let mut bad_weight = false;
        for elem in elems {
            let val = match by {
                Some(p) => lookup(store, db, p, &elem)?,
                None => None,
            };
            let mut item = Item {
                elem,
                score: 0.0,
                by: None,
            };
            if alpha {
                item.by = val;
            } else if by.is_none() || val.is_some() {
                match weight(val.as_deref().unwrap_or(&item.elem)) {
                    Some(s) => item.score = s,
                    None => bad_weight = true,
                }
            }
            items.push(item);
        }
        if bad_weight {
            return Err(CmdError::err(
                "One or more scores can't be converted into double",
            ));
        }
        let by_pattern = by.is_some();
        items.sort_by(|a, b| {
            let c = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.elem.cmp(&b.elem))
            } else if by_pattern {
                // Missing values sort first.
                a.by.cmp(&b.by)
            } else {
                a.elem.cmp(&b.elem)
            };
            if o.desc { c.reverse() } else { c }
        });
        elems = items.into_iter().map(|i| i.elem).collect();
    }
    // LIMIT, clamped as Redis clamps it.
    let len = elems.len() as i64;
    let (mut start, mut end) = (0, len - 1);
    if let Some((offset, count)) = o.limit {
        start = offset.clamp(0, len);
        let count = count.clamp(-1, len);
        end = if count < 0 {
            len - 1
        } else {
            start + count - 1
        };
        if start >= len {
            start = len - 1;
            end = len - 2;
        }
        end = end.min(len - 1);
    }
    let picked: &[Vec<u8>] = if end >= start {
        &elems[start as usize..=end as usize]
    } else {
        &[]
    };
    let per = o.gets.len().max(1) as u64;
    check_reply_len(ctx, picked.len() as u64 * per)?;
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(picked.len() * per as usize);
    for elem in picked {
        if o.gets.is_empty() {
            out.push(Some(elem.clone()));
        }
        for p in &o.gets {
            out.push(lookup(store, db, p, elem)?);
        }
    }
    let Some(dst) = o.store else {
        return Ok(Frame::Array(
            out.into_iter().map(Frame::bulk_or_null).collect(),
        ));
    };
    let n = out.len() as i64;
    let values: Vec<Bytes> = out
        .into_iter()
        .map(|v| Bytes::from(v.unwrap_or_default()))
        .collect();
    let mut ch = Change::create(store, db, dst, TYPE_LIST);
    super::list::append(&mut ch, &values)?;
    // Committed empty, the change deletes the destination.
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(Frame::Integer(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_like_strtod_with_nothing_left_over() {
        assert_eq!(weight(b""), Some(0.0));
        assert_eq!(weight(b"  1.5"), Some(1.5));
        assert_eq!(weight(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(weight(b"+3"), Some(3.0));
        assert_eq!(weight(b"1e3"), Some(1000.0));
        assert_eq!(weight(b"1.5 "), None);
        assert_eq!(weight(b"abc"), None);
        assert_eq!(weight(b"nan"), None);
        assert_eq!(weight(b"1e400"), None);
        assert_eq!(weight(b" "), None);
    }
}
