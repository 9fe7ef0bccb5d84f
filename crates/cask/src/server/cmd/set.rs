//! Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SINTER
//! SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SINTERCARD SSCAN.
//!
//! A set is one record per member (sub-key = member, empty value; see `server/coll.rs`), so
//! membership tests are index lookups without I/O and SADD/SREM cost the same on a set of
//! ten members or of millions. Every write holds the stripe locks of all its keys from its
//! first read to its commit; multi-key reads take them too, so they see each key whole.
//!
//! This module also holds what hashes (and other collections) share: a random sampler of
//! sub-keys ([`Picker`]) and the cursor-based scan of sub-keys ([`scan_subkeys`]).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::Mutex;

use bytes::Bytes;
use cask_engine::Batch;

use super::{CmdError, CmdResult, Ctx, ScanOptions, int_arg, is, scan_options};
use crate::server::coll::{Change, Coll, Meta, elem_key};
use crate::server::frame::Frame;
use crate::server::glob;
use crate::server::keyspace::{Store, TYPE_SET, engine_key};

// ---------------------------------------------------------------------------------------
// Shared helpers: randomness, sampling, sub-key scans.
// ---------------------------------------------------------------------------------------

/// A small non-cryptographic generator (xorshift64*), seeded from the process's random
/// hasher keys and the clock. Good enough for SPOP/SRANDMEMBER/HRANDFIELD.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A freshly seeded generator.
    pub fn new() -> Rng {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        h.write_u64(nanos);
        Rng(h.finish() | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for n far below 2^64.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

/// Collections of at most this many elements are sampled exactly uniformly (their sub-keys
/// are listed from the index, no I/O); larger ones are sampled by probing (see [`Picker`]).
pub const EXACT_SAMPLE_MAX: u64 = 128;

/// How many sub-keys at most [`Picker::pick`] walks on from a probe (a random number below).
const PROBE_WALK: u64 = 32;

/// Picks random sub-keys of a collection.
///
/// Small collections (up to [`EXACT_SAMPLE_MAX`]) are listed and sampled uniformly. Large
/// ones are sampled in O(log n): a probe is drawn between the first and the last sub-key
/// (same common prefix, then random bytes within the range of byte values those two keys
/// use after it, as long as the longer of them), and the first sub-key at or after the probe
/// is taken (wrapping around to the first), then a random 0..32 steps further (stopping at
/// the last). This is biased: a sub-key that follows a wide
/// gap in the key space is picked more often than one in a dense run. Redis's own sampling
/// of hash tables is not uniform either; nothing in Redis's contract promises uniformity.
pub struct Picker<'a> {
    store: &'a Store,
    coll: Coll,
    all: Option<Vec<Vec<u8>>>,
    first: Vec<u8>,
    last: Vec<u8>,
    len: u64,
}

impl<'a> Picker<'a> {
    /// A picker over `coll` as stored (`None` if it has no elements).
    ///
    /// # Errors
    /// Engine errors.
    pub fn new(store: &'a Store, coll: &Coll) -> CmdResult<Option<Picker<'a>>> {
        let len = coll.meta.count;
        if len <= EXACT_SAMPLE_MAX {
            let all: Vec<Vec<u8>> = coll
                .keys(store, Bound::Unbounded, Bound::Unbounded, false)
                .collect::<CmdResult<_>>()?;
            if all.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Picker {
                store,
                coll: coll.clone(),
                len: all.len() as u64,
                first: Vec::new(),
                last: Vec::new(),
                all: Some(all),
            }));
        }
        let ends = |reverse| {
            coll.keys(store, Bound::Unbounded, Bound::Unbounded, reverse)
                .next()
                .transpose()
        };
        let (Some(first), Some(last)) = (ends(false)?, ends(true)?) else {
            return Ok(None);
        };
        Ok(Some(Picker {
            store,
            coll: coll.clone(),
            all: None,
            first,
            last,
            len,
        }))
    }

    /// The number of elements sampled from.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is nothing to pick (never true for a picker that [`Picker::new`] gave).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn probe(&self, rng: &mut Rng) -> Vec<u8> {
        let (a, b) = (&self.first, &self.last);
        let p = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
        let tail = a[p..].iter().chain(b[p..].iter());
        let lo = tail.clone().copied().min().unwrap_or(0);
        let hi = tail.copied().max().unwrap_or(255);
        let n = a.len().max(b.len()).saturating_sub(p).max(1);
        let mut probe = a[..p].to_vec();
        for _ in 0..n {
            probe.push(lo + rng.below(u64::from(hi - lo) + 1) as u8);
        }
        probe
    }

    /// The first sub-key at or after `from` (excluded if `strict`), wrapping around.
    fn at_or_after(&self, from: &[u8], strict: bool) -> CmdResult<Vec<u8>> {
        let lo = if strict {
            Bound::Excluded(from)
        } else {
            Bound::Included(from)
        };
        if let Some(k) = self
            .coll
            .keys(self.store, lo, Bound::Unbounded, false)
            .next()
        {
            return k;
        }
        Ok(self.first.clone())
    }

    /// One random sub-key.
    ///
    /// # Errors
    /// Engine errors.
    pub fn pick(&self, rng: &mut Rng) -> CmdResult<Vec<u8>> {
        if let Some(all) = &self.all {
            return Ok(all[rng.below(all.len() as u64) as usize].clone());
        }
        // Walk a few sub-keys on from where the probe lands: spreads the weight of a key
        // that follows a wide gap over its neighbours (with variable-length keys such as
        // `member:N`, the probe alone would never land on the longer ones).
        let steps = rng.below(PROBE_WALK) as usize;
        let probe = self.probe(rng);
        let mut keys = self.coll.keys(
            self.store,
            Bound::Included(&probe[..]),
            Bound::Unbounded,
            false,
        );
        let mut last = None;
        for k in keys.by_ref().take(steps + 1) {
            last = Some(k?);
        }
        Ok(last.unwrap_or_else(|| self.first.clone()))
    }

    /// `n` distinct random sub-keys (`n` at most [`Picker::len`]), in random order.
    ///
    /// # Errors
    /// Engine errors.
    pub fn pick_distinct(&self, rng: &mut Rng, n: u64) -> CmdResult<Vec<Vec<u8>>> {
        let n = n.min(self.len);
        if self.all.is_some() || n.saturating_mul(3) >= self.len {
            let mut all = match &self.all {
                Some(all) => all.clone(),
                None => self
                    .coll
                    .keys(self.store, Bound::Unbounded, Bound::Unbounded, false)
                    .collect::<CmdResult<Vec<_>>>()?,
            };
            // Partial Fisher-Yates: the first n slots become a uniform sample.
            let n = (n as usize).min(all.len());
            for i in 0..n {
                let j = i + rng.below((all.len() - i) as u64) as usize;
                all.swap(i, j);
            }
            all.truncate(n);
            return Ok(all);
        }
        // Few picks from a big collection: probe; on a repeat walk on to the next unpicked
        // sub-key (there are plenty: n < len / 3).
        let mut seen = HashSet::with_capacity(n as usize);
        let mut out = Vec::with_capacity(n as usize);
        while (out.len() as u64) < n {
            let mut k = self.pick(rng)?;
            while seen.contains(&k) {
                k = self.at_or_after(&k, true)?;
            }
            seen.insert(k.clone());
            out.push(k);
        }
        Ok(out)
    }
}

/// Most sub-key scan cursors remembered at once (as keys.rs's SCAN table): a forgotten
/// cursor restarts its scan, which may then return elements twice but never misses one.
const MAX_SUB_CURSORS: usize = 16 * 1024;

/// Collections up to this size are returned by one SSCAN/HSCAN call whatever its COUNT,
/// as Redis does for its compact encodings (128 entries by default).
const SCAN_WHOLE_MAX: u64 = 128;

struct SubCursor {
    db: u8,
    key: Vec<u8>,
    generation: u64,
    last: Vec<u8>,
}

struct SubCursorTable {
    map: BTreeMap<u64, SubCursor>,
    order: VecDeque<u64>,
    next: u64,
}

static SUB_CURSORS: Mutex<SubCursorTable> = Mutex::new(SubCursorTable {
    map: BTreeMap::new(),
    order: VecDeque::new(),
    next: 0,
});

fn issue_cursor(c: SubCursor) -> u64 {
    let mut t = SUB_CURSORS.lock().unwrap_or_else(|e| e.into_inner());
    // Never 0, which means "start" and "done".
    t.next = t.next.wrapping_add(1).max(1);
    let id = t.next;
    if t.order.len() >= MAX_SUB_CURSORS
        && let Some(old) = t.order.pop_front()
    {
        t.map.remove(&old);
    }
    t.order.push_back(id);
    t.map.insert(id, c);
    id
}

fn resolve_cursor(id: u64, coll: &Coll) -> Option<Vec<u8>> {
    let t = SUB_CURSORS.lock().unwrap_or_else(|e| e.into_inner());
    t.map
        .get(&id)
        .filter(|c| c.db == coll.db && c.key == coll.key && c.generation == coll.meta.generation)
        .map(|c| c.last.clone())
}

/// Turns one scanned `(sub-key, value)` into reply entries (pushes none to skip it).
pub type ScanItem = dyn Fn(Vec<u8>, Vec<u8>, &mut Vec<Frame>);

type ElemIter<'a> = dyn Iterator<Item = CmdResult<(Vec<u8>, Vec<u8>)>> + 'a;

/// HSCAN/SSCAN (and ZSCAN-like) `key cursor [MATCH pattern] [COUNT count]` over the
/// sub-keys of a collection of type `tag`. `item` turns one visited `(sub-key, value)` into
/// the reply's entries (none to skip it); it gets values only when `values` is set.
///
/// A cursor names the last sub-key returned (in a bounded table, see
/// [`MAX_SUB_CURSORS`]); an unknown or stale cursor (the key was replaced) restarts the
/// scan. Elements present for the whole scan are returned at least once.
///
/// # Errors
/// `invalid cursor`, syntax errors, `WRONGTYPE`, engine errors.
pub fn scan_subkeys(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    tag: u8,
    values: bool,
    item: &ScanItem,
) -> CmdResult<Frame> {
    let key = &args[0];
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CmdError::err("invalid cursor"))?;
    let store = &ctx.shared.store;
    let empty = || {
        Frame::Array(vec![
            Frame::bulk(Bytes::from_static(b"0")),
            Frame::Array(Vec::new()),
        ])
    };
    let Some(coll) = store.coll(ctx.db(), key, tag)? else {
        return Ok(empty());
    };
    let ScanOptions {
        pattern, mut count, ..
    } = scan_options(args, 2, false)?;
    // Redis returns small (listpack-encoded) collections whole whatever COUNT says.
    if coll.meta.count <= SCAN_WHOLE_MAX {
        count = i64::MAX;
    }
    let after = if cursor == 0 {
        None
    } else {
        resolve_cursor(cursor, &coll)
    };
    let lo = match &after {
        Some(k) => Bound::Excluded(&k[..]),
        None => Bound::Unbounded,
    };
    let mut iter: Box<ElemIter<'_>> = if values {
        Box::new(coll.scan(store, lo, Bound::Unbounded, false))
    } else {
        Box::new(
            coll.keys(store, lo, Bound::Unbounded, false)
                .map(|r| r.map(|k| (k, Vec::new()))),
        )
    };
    let mut out = Vec::new();
    let mut visited = 0i64;
    let mut last = None;
    for r in iter.by_ref() {
        let (k, v) = r?;
        visited += 1;
        if visited >= count {
            last = Some(k.clone());
        }
        if pattern.is_none_or(|p| glob::matches(p, &k)) {
            item(k, v, &mut out);
        }
        if last.is_some() {
            break;
        }
    }
    let next = match last {
        Some(k) if iter.next().is_some() => issue_cursor(SubCursor {
            db: coll.db,
            key: coll.key.clone(),
            generation: coll.meta.generation,
            last: k,
        }),
        _ => 0,
    };
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(out),
    ]))
}

/// The most elements a reply with repeats (negative SRANDMEMBER/HRANDFIELD counts) may
/// hold: the server's `proto-max-multibulk-len`, the bound on a request's size.
///
/// # Errors
/// An error when `n` exceeds it.
pub fn check_reply_len(ctx: &Ctx<'_>, n: u64) -> CmdResult<()> {
    let max = ctx.shared.config.limits.max_multibulk_len;
    if n > max {
        return Err(CmdError::err(format!(
            "count exceeds the reply limit ({max} elements, proto-max-multibulk-len)"
        )));
    }
    Ok(())
}

/// Parses a count in Redis's `-LONG_MAX..=LONG_MAX` range (SRANDMEMBER, HRANDFIELD).
///
/// # Errors
/// Redis's texts for a non-integer and for `LONG_MIN`.
pub fn signed_count(b: &[u8]) -> CmdResult<i64> {
    let n = int_arg(b)?;
    if n == i64::MIN {
        return Err(CmdError::err(format!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    Ok(n)
}

fn bulks(items: impl IntoIterator<Item = Vec<u8>>) -> Vec<Frame> {
    items.into_iter().map(Frame::bulk).collect()
}

// ---------------------------------------------------------------------------------------
// Set commands.
// ---------------------------------------------------------------------------------------

fn read(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult<Option<Coll>> {
    let c = ctx.store().coll(ctx.db(), key, TYPE_SET)?;
    ctx.count_lookup(c.is_some());
    Ok(c)
}

fn members(store: &Store, coll: &Coll) -> CmdResult<Vec<Vec<u8>>> {
    coll.keys(store, Bound::Unbounded, Bound::Unbounded, false)
        .collect()
}

/// SADD key member [member ...]
pub fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let key = &args[0];
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let mut ch = Change::open(store, db, key, TYPE_SET)?;
    let mut added = 0;
    for m in &args[1..] {
        if ch.insert(m, b"")? {
            added += 1;
        }
    }
    if added > 0
        && let Some(v) = ch.commit()?
    {
        ctx.wrote(v);
    }
    Ok(Frame::Integer(added))
}

/// SREM key member [member ...]
pub fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    remove_elements(ctx, args, TYPE_SET)
}

/// `key sub...`: removes the named elements (set members, hash fields) of a collection of
/// type `tag`, one record each; replies with how many existed (SREM, HDEL).
pub(super) fn remove_elements(ctx: &mut Ctx<'_>, args: &[Bytes], tag: u8) -> CmdResult<Frame> {
    let key = &args[0];
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let Some(mut ch) = Change::existing(store, db, key, tag)? else {
        return Ok(Frame::Integer(0));
    };
    let mut removed = 0;
    for sub in &args[1..] {
        if ch.remove(sub)? {
            removed += 1;
        }
    }
    if removed > 0
        && let Some(v) = ch.commit()?
    {
        ctx.wrote(v);
    }
    Ok(Frame::Integer(removed))
}

/// SMEMBERS key
pub fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let store = &ctx.shared.store;
    let _lock = store.lock(ctx.db(), &[&args[0]]);
    let Some(coll) = read(ctx, &args[0])? else {
        return Ok(Frame::Set(Vec::new()));
    };
    Ok(Frame::Set(bulks(members(store, &coll)?)))
}

/// SISMEMBER key member
pub fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let Some(coll) = read(ctx, &args[0])? else {
        return Ok(Frame::Integer(0));
    };
    Ok(Frame::Integer(i64::from(
        coll.contains(ctx.store(), &args[1])?,
    )))
}

/// SMISMEMBER key member [member ...]
pub fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let coll = read(ctx, &args[0])?;
    let mut out = Vec::with_capacity(args.len() - 1);
    for m in &args[1..] {
        let hit = match &coll {
            Some(c) => c.contains(ctx.store(), m)?,
            None => false,
        };
        out.push(Frame::Integer(i64::from(hit)));
    }
    Ok(Frame::Array(out))
}

/// SCARD key
pub fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let n = read(ctx, &args[0])?.map_or(0, |c| c.meta.count);
    Ok(Frame::Integer(n as i64))
}

/// SPOP key [count]
pub fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    if args.len() > 2 {
        return Err(CmdError::syntax());
    }
    let key = &args[0];
    let count = match args.get(1) {
        None => None,
        Some(c) => {
            let n = int_arg(c)?;
            if n < 0 {
                return Err(CmdError::err("value is out of range, must be positive"));
            }
            Some(n as u64)
        }
    };
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[key]);
    let Some(mut ch) = Change::existing(store, db, key, TYPE_SET)? else {
        return Ok(match count {
            None => Frame::Null,
            Some(_) => Frame::Set(Vec::new()),
        });
    };
    if count == Some(0) {
        return Ok(Frame::Set(Vec::new()));
    }
    let mut rng = Rng::new();
    let picked = match count {
        Some(n) if n >= ch.meta().count => {
            // Everything: reply with the whole set and drop the key (one metadata delete;
            // the sweeper removes the members).
            let all = members(store, ch.coll())?;
            ch.meta_mut().count = 0;
            if let Some(v) = ch.commit()? {
                ctx.wrote(v);
            }
            return Ok(Frame::Set(bulks(all)));
        }
        Some(n) => match Picker::new(store, ch.coll())? {
            Some(p) => p.pick_distinct(&mut rng, n)?,
            None => Vec::new(),
        },
        None => match Picker::new(store, ch.coll())? {
            Some(p) => vec![p.pick(&mut rng)?],
            None => Vec::new(),
        },
    };
    for m in &picked {
        ch.remove(m)?;
    }
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(match count {
        None => Frame::bulk_or_null(picked.into_iter().next()),
        Some(_) => Frame::Set(bulks(picked)),
    })
}

/// SRANDMEMBER key [count]
pub fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    if args.len() > 2 {
        return Err(CmdError::syntax());
    }
    let count = args.get(1).map(|c| signed_count(c)).transpose()?;
    let coll = read(ctx, &args[0])?;
    let store = ctx.store();
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
    let Some(p) = picker else {
        return Ok(Frame::Array(Vec::new()));
    };
    if n < 0 {
        let n = n.unsigned_abs();
        check_reply_len(ctx, n)?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(Frame::bulk(p.pick(&mut rng)?));
        }
        return Ok(Frame::Array(out));
    }
    Ok(Frame::Array(bulks(p.pick_distinct(&mut rng, n as u64)?)))
}

/// SMOVE source destination member: the removal and the addition are one engine batch.
pub fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let (src, dst, member) = (&args[0], &args[1], &args[2]);
    let db = ctx.db();
    let store = &ctx.shared.store;
    let _lock = store.lock(db, &[src, dst]);
    let Some(s) = store.coll(db, src, TYPE_SET)? else {
        return Ok(Frame::Integer(0));
    };
    let d = store.coll(db, dst, TYPE_SET)?;
    if src == dst {
        return Ok(Frame::Integer(i64::from(s.contains(store, member)?)));
    }
    if !s.contains(store, member)? {
        return Ok(Frame::Integer(0));
    }
    // Both changes in one batch (Change commits one key at a time): the member leaves the
    // source and enters the destination together, or neither happens.
    let mut batch = Batch::new();
    batch.delete(s.elem_key(member));
    let mut sm = s.meta;
    sm.count -= 1;
    if sm.count == 0 {
        batch.delete(engine_key(db, src));
    } else {
        Store::batch_put(&mut batch, db, src, TYPE_SET, &sm.encode(), sm.expire_at);
    }
    let dm = match &d {
        Some(d) if d.contains(store, member)? => None,
        Some(d) => {
            let mut m = d.meta;
            m.count += 1;
            Some(m)
        }
        // A generation never used before, as `Change::create` takes one.
        None => {
            let mut m = Meta::new(TYPE_SET, store.db.last_version() + 1);
            m.count = 1;
            Some(m)
        }
    };
    if let Some(m) = dm {
        batch.put(elem_key(db, dst, m.generation, member), Vec::new());
        Store::batch_put(&mut batch, db, dst, TYPE_SET, &m.encode(), m.expire_at);
    }
    let v = store.write(&batch)?;
    ctx.wrote(v);
    Ok(Frame::Integer(1))
}

/// Reads the sets named by `keys` (`None` for missing ones); `WRONGTYPE` if any is another
/// type.
fn load_sets(store: &Store, db: u8, keys: &[Bytes]) -> CmdResult<Vec<Option<Coll>>> {
    keys.iter().map(|k| store.coll(db, k, TYPE_SET)).collect()
}

/// The intersection, stopping after `limit` members (0: no limit): walks the smallest set
/// and probes the others' indexes.
fn inter(store: &Store, sets: &[Option<Coll>], limit: u64) -> CmdResult<Vec<Vec<u8>>> {
    let mut sets: Vec<&Coll> = match sets.iter().map(Option::as_ref).collect::<Option<_>>() {
        Some(s) => s,
        None => return Ok(Vec::new()),
    };
    sets.sort_by_key(|c| c.meta.count);
    let Some((smallest, rest)) = sets.split_first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    'members: for m in smallest.keys(store, Bound::Unbounded, Bound::Unbounded, false) {
        let m = m?;
        for other in rest {
            if !other.contains(store, &m)? {
                continue 'members;
            }
        }
        out.push(m);
        if limit > 0 && out.len() as u64 >= limit {
            break;
        }
    }
    Ok(out)
}

fn union(store: &Store, sets: &[Option<Coll>]) -> CmdResult<Vec<Vec<u8>>> {
    let mut out = BTreeSet::new();
    for c in sets.iter().flatten() {
        for m in c.keys(store, Bound::Unbounded, Bound::Unbounded, false) {
            out.insert(m?);
        }
    }
    Ok(out.into_iter().collect())
}

fn diff(store: &Store, sets: &[Option<Coll>]) -> CmdResult<Vec<Vec<u8>>> {
    let Some((Some(first), rest)) = sets.split_first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    'members: for m in first.keys(store, Bound::Unbounded, Bound::Unbounded, false) {
        let m = m?;
        for other in rest.iter().flatten() {
            if other.key == first.key || other.contains(store, &m)? {
                continue 'members;
            }
        }
        out.push(m);
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

fn compute(store: &Store, sets: &[Option<Coll>], op: SetOp) -> CmdResult<Vec<Vec<u8>>> {
    match op {
        SetOp::Inter => inter(store, sets, 0),
        SetOp::Union => union(store, sets),
        SetOp::Diff => diff(store, sets),
    }
}

fn set_op(ctx: &mut Ctx<'_>, keys: &[Bytes], op: SetOp) -> CmdResult<Frame> {
    let db = ctx.db();
    let store = &ctx.shared.store;
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let _lock = store.lock(db, &refs);
    let sets = load_sets(store, db, keys)?;
    Ok(Frame::Set(bulks(compute(store, &sets, op)?)))
}

fn set_op_store(ctx: &mut Ctx<'_>, args: &[Bytes], op: SetOp) -> CmdResult<Frame> {
    let (dst, keys) = (&args[0], &args[1..]);
    let db = ctx.db();
    let store = &ctx.shared.store;
    let refs: Vec<&[u8]> = args.iter().map(|k| &k[..]).collect();
    let _lock = store.lock(db, &refs);
    let sets = load_sets(store, db, keys)?;
    let result = compute(store, &sets, op)?;
    let mut ch = Change::create(store, db, dst, TYPE_SET);
    for m in &result {
        ch.put_raw(m, b"");
    }
    ch.meta_mut().count = result.len() as u64;
    if let Some(v) = ch.commit()? {
        ctx.wrote(v);
    }
    Ok(Frame::Integer(result.len() as i64))
}

/// SINTER key [key ...]
pub fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_op(ctx, args, SetOp::Inter)
}

/// SUNION key [key ...]
pub fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_op(ctx, args, SetOp::Union)
}

/// SDIFF key [key ...]
pub fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_op(ctx, args, SetOp::Diff)
}

/// SINTERSTORE destination key [key ...]
pub fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_op_store(ctx, args, SetOp::Inter)
}

/// SUNIONSTORE destination key [key ...]
pub fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_op_store(ctx, args, SetOp::Union)
}

/// SDIFFSTORE destination key [key ...]
pub fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    set_op_store(ctx, args, SetOp::Diff)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn sintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let numkeys = int_arg(&args[0])
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| CmdError::err("numkeys should be greater than 0"))?;
    if numkeys > (args.len() - 1) as i64 {
        return Err(CmdError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let numkeys = numkeys as usize;
    let keys = &args[1..=numkeys];
    let mut limit = 0u64;
    let mut i = numkeys + 1;
    while i < args.len() {
        if is(&args[i], "LIMIT") && i + 1 < args.len() {
            let l = int_arg(&args[i + 1])
                .ok()
                .filter(|&l| l >= 0)
                .ok_or_else(|| CmdError::err("LIMIT can't be negative"))?;
            limit = l as u64;
            i += 2;
        } else {
            return Err(CmdError::syntax());
        }
    }
    let db = ctx.db();
    let store = &ctx.shared.store;
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let _lock = store.lock(db, &refs);
    let sets = load_sets(store, db, keys)?;
    Ok(Frame::Integer(inter(store, &sets, limit)?.len() as i64))
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]
pub fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    scan_subkeys(ctx, args, TYPE_SET, false, &|k, _, out| {
        out.push(Frame::bulk(k));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_stays_in_range_and_varies() {
        let mut r = Rng::new();
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = r.below(7);
            assert!(v < 7);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn signed_count_refuses_long_min() {
        assert_eq!(signed_count(b"-5").unwrap(), -5);
        assert!(
            signed_count(b"-9223372036854775808")
                .unwrap_err()
                .0
                .contains("out of range")
        );
        assert_eq!(signed_count(b"x").unwrap_err(), CmdError::not_integer());
    }
}
