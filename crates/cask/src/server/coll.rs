//! Collections (hashes, lists, sets, sorted sets) on the engine: one metadata record per
//! key plus one engine record per element, as Apache Kvrocks lays Redis out on RocksDB.
//!
//! - The top-level record `b'k' | db | key` holds the type tag and a [`Meta`]: the element
//!   count, a *generation*, and for lists the head and tail positions. Its `expire_at` is
//!   the key's TTL.
//! - Each element is the record `b'e' | db | len(key) u32 BE | key | generation u64 BE |
//!   sub-key` (see [`elem_key`]); the sub-key is the hash field, the set member, the list
//!   position, or for sorted sets a member record and a score-index record.
//! - A generation is never reused for a key: it is taken from the engine's version counter
//!   when the collection is created (see [`Change::open`]), and versions only grow, across
//!   crashes and compactions too. So deleting, overwriting or expiring a collection costs one
//!   record, and the old elements, whose generation no metadata names any more, can never
//!   reappear. The sweeper (`sweep.rs`) deletes them in the background so that compaction
//!   reclaims their space.
//! - A command's changes to one collection are buffered in a [`Change`] and written as one
//!   engine batch (elements and metadata together), so they survive a crash whole or not at
//!   all. Every change rewrites the metadata record, so the key's engine version changes
//!   with every write (WATCH relies on it).

use std::collections::BTreeMap;
use std::ops::Bound;

use cask_engine::Batch;

use super::cmd::{CmdError, CmdResult};
use super::keyspace::{Store, TYPE_LIST, TYPE_STRING, engine_key};

/// Namespace byte of element records.
pub const NS_ELEM: u8 = b'E';

/// Namespace byte of element records in the first layout (fixed-width `u32` key length and
/// `u64` generation); [`migrate_v0_elements`] rewrites them at start.
pub const NS_ELEM_V0: u8 = b'e';

/// The first position of a new list: its elements grow down (LPUSH) and up (RPUSH) from here.
pub const LIST_MID: u64 = 1 << 63;

/// Largest metadata payload (a list's), after the type tag.
pub const MAX_META_LEN: usize = 32;

/// The metadata of a collection: the payload of its top-level record, after the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Type tag (`TYPE_HASH`, `TYPE_LIST`, `TYPE_SET`, `TYPE_ZSET`).
    pub tag: u8,
    /// Generation of the element records.
    pub generation: u64,
    /// Number of elements (for sorted sets: members).
    pub count: u64,
    /// Lists: position of the first element.
    pub head: u64,
    /// Lists: one past the position of the last element.
    pub tail: u64,
    /// The key's expiry, ms since the epoch.
    pub expire_at: Option<u64>,
}

impl Meta {
    /// A new, empty collection of type `tag` with generation `generation`.
    pub fn new(tag: u8, generation: u64) -> Meta {
        Meta {
            tag,
            generation,
            count: 0,
            head: LIST_MID,
            tail: LIST_MID,
            expire_at: None,
        }
    }

    /// The payload stored after the type tag.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(MAX_META_LEN);
        v.extend_from_slice(&self.generation.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        if self.tag == TYPE_LIST {
            v.extend_from_slice(&self.head.to_be_bytes());
            v.extend_from_slice(&self.tail.to_be_bytes());
        }
        v
    }

    /// Decodes a payload written by [`Meta::encode`].
    ///
    /// # Errors
    /// `ERR` if the payload is malformed (it is checksummed on disk, so this means a bug).
    pub fn decode(tag: u8, data: &[u8], expire_at: Option<u64>) -> CmdResult<Meta> {
        let want = if tag == TYPE_LIST { 32 } else { 16 };
        if data.len() != want {
            return Err(CmdError::err("corrupt collection metadata"));
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        let mut m = Meta::new(tag, word(0));
        m.count = word(1);
        if tag == TYPE_LIST {
            m.head = word(2);
            m.tail = word(3);
        }
        m.expire_at = expire_at;
        Ok(m)
    }
}

/// Appends `v` as a LEB128 varint (7 bits per byte, low bits first; prefix-free).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint written by [`put_varint`]: `(value, bytes used)`.
fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The prefix of every element record of `key` in `db`, any generation:
/// `b'E' | db | varint(len(key)) | key`. The varints keep short keys' element records short
/// (the engine's index stores keys of up to 30 bytes inline); the length makes the prefix of
/// one key never a prefix of another's.
pub fn key_elems_prefix(db: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 16);
    k.push(NS_ELEM);
    k.push(db);
    put_varint(&mut k, key.len() as u64);
    k.extend_from_slice(key);
    k
}

/// The prefix of the element records of generation `generation` of `key`
/// (`key_elems_prefix | varint(generation)`).
pub fn elem_prefix(db: u8, key: &[u8], generation: u64) -> Vec<u8> {
    let mut k = key_elems_prefix(db, key);
    put_varint(&mut k, generation);
    k
}

/// The engine key of element `sub` of generation `generation` of `key`.
pub fn elem_key(db: u8, key: &[u8], generation: u64, sub: &[u8]) -> Vec<u8> {
    let mut k = elem_prefix(db, key, generation);
    k.extend_from_slice(sub);
    k
}

/// Splits an element engine key into `(db, key, generation, sub-key)`.
pub fn parse_elem_key(k: &[u8]) -> Option<(u8, &[u8], u64, &[u8])> {
    if k.len() < 3 || k[0] != NS_ELEM {
        return None;
    }
    let db = k[1];
    let (len, n) = get_varint(&k[2..])?;
    let start = 2 + n;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    let key = k.get(start..end)?;
    let (generation, m) = get_varint(k.get(end..)?)?;
    Some((db, key, generation, &k[end + m..]))
}

/// Splits an element key of the first layout (`b'e' | db | u32 BE len | key | u64 BE
/// generation | sub`).
fn parse_v0_elem_key(k: &[u8]) -> Option<(u8, &[u8], u64, &[u8])> {
    if k.len() < 6 || k[0] != NS_ELEM_V0 {
        return None;
    }
    let db = k[1];
    let len = u32::from_be_bytes(k[2..6].try_into().ok()?) as usize;
    let key = k.get(6..6 + len)?;
    let generation = u64::from_be_bytes(k.get(6 + len..14 + len)?.try_into().ok()?);
    Some((db, key, generation, &k[14 + len..]))
}

/// Rewrites element records of the first layout into the current one, 10,000 per engine
/// batch (each batch puts the new records and deletes the old ones, so a crash midway
/// leaves every element in exactly one layout and the next start goes on). Returns how
/// many records were moved. Runs before the sweeper, which knows only the current layout.
///
/// # Errors
/// Engine errors; a record whose key does not parse is left in place (and reported).
pub fn migrate_v0_elements(db: &cask_engine::Db) -> Result<u64, cask_engine::Error> {
    let mut moved = 0u64;
    let mut skipped = 0u64;
    let mut lo = Bound::Included(vec![NS_ELEM_V0]);
    loop {
        let hi = Bound::Excluded(vec![NS_ELEM_V0 + 1]);
        let chunk: Vec<(Vec<u8>, Vec<u8>)> = db
            .scan((lo.clone(), hi))
            .take(10_000)
            .collect::<Result<_, _>>()?;
        let Some((last, _)) = chunk.last() else { break };
        lo = Bound::Excluded(last.clone());
        let mut batch = Batch::new();
        for (k, v) in &chunk {
            match parse_v0_elem_key(k) {
                Some((d, key, generation, sub)) => {
                    batch.put(elem_key(d, key, generation, sub), v.clone());
                    batch.delete(k.clone());
                    moved += 1;
                }
                None => skipped += 1,
            }
        }
        if !batch.is_empty() {
            db.write(&batch)?;
        }
    }
    if moved > 0 || skipped > 0 {
        tracing::info!(
            moved,
            skipped,
            "element records moved to the current layout"
        );
    }
    Ok(moved)
}

/// The smallest key greater than every key starting with `prefix` (`None`: no bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Encodes a score so that byte order is numeric order (`-inf` < ... < `-0` = `0` < ... <
/// `inf`). NaN never reaches here (commands refuse it).
pub fn score_key(score: f64) -> [u8; 8] {
    let s = if score == 0.0 { 0.0 } else { score };
    let bits = s.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Inverse of [`score_key`].
pub fn score_from_key(b: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(b);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

/// A key's value as [`Store::read_value`] found it.
#[derive(Debug)]
pub enum Stored {
    /// A string.
    String(bytes::Bytes),
    /// A collection (its metadata; the elements are read through it).
    Coll(Coll),
}

/// A collection as read at the start of a command (no locks held by this value).
#[derive(Debug, Clone)]
pub struct Coll {
    /// Database.
    pub db: u8,
    /// The user key.
    pub key: Vec<u8>,
    /// Its metadata.
    pub meta: Meta,
    prefix: Vec<u8>,
}

impl Coll {
    fn new(db: u8, key: &[u8], meta: Meta) -> Coll {
        Coll {
            db,
            key: key.to_vec(),
            prefix: elem_prefix(db, key, meta.generation),
            meta,
        }
    }

    /// A collection from its parts (for tools reading a data directory directly).
    pub fn from_meta(db: u8, key: &[u8], meta: Meta) -> Coll {
        Coll::new(db, key, meta)
    }

    /// The engine key range of its element records.
    pub fn range(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        self.bounds(Bound::Unbounded, Bound::Unbounded)
    }

    /// Length of the engine key prefix before each element's sub-key.
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }

    /// The engine key of element `sub`.
    pub fn elem_key(&self, sub: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(sub);
        k
    }

    /// Reads element `sub`.
    ///
    /// # Errors
    /// Engine errors.
    pub fn get(&self, store: &Store, sub: &[u8]) -> CmdResult<Option<Vec<u8>>> {
        Ok(store.db.get(&self.elem_key(sub))?)
    }

    /// Whether element `sub` exists (index only, no I/O).
    ///
    /// # Errors
    /// Engine errors.
    pub fn contains(&self, store: &Store, sub: &[u8]) -> CmdResult<bool> {
        Ok(store.db.metadata(&self.elem_key(sub))?.is_some())
    }

    /// How many elements have sub-keys in `lo..hi` (index only, no key copies).
    ///
    /// # Errors
    /// Engine errors.
    pub fn count(&self, store: &Store, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> CmdResult<u64> {
        Ok(store.db.count(self.bounds(lo, hi))?)
    }

    fn bounds(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let lo = match lo {
            Bound::Included(s) => Bound::Included(self.elem_key(s)),
            Bound::Excluded(s) => Bound::Excluded(self.elem_key(s)),
            Bound::Unbounded => Bound::Included(self.prefix.clone()),
        };
        let hi = match hi {
            Bound::Included(s) => Bound::Included(self.elem_key(s)),
            Bound::Excluded(s) => Bound::Excluded(self.elem_key(s)),
            Bound::Unbounded => match prefix_end(&self.prefix) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        };
        (lo, hi)
    }

    /// Elements `(sub-key, value)` with sub-keys in `lo..hi`, in sub-key order (or reverse).
    pub fn scan<'a>(
        &self,
        store: &'a Store,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        reverse: bool,
    ) -> impl Iterator<Item = CmdResult<(Vec<u8>, Vec<u8>)>> + 'a {
        self.scan_expecting(store, lo, hi, reverse, 0)
    }

    /// [`Coll::scan`] for a caller that knows it will take `n` elements (see
    /// [`cask_engine::scan::Scan::expect`]).
    pub fn scan_expecting<'a>(
        &self,
        store: &'a Store,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        reverse: bool,
        n: usize,
    ) -> impl Iterator<Item = CmdResult<(Vec<u8>, Vec<u8>)>> + 'a {
        let skip = self.prefix.len();
        let mut scan = store.db.scan(self.bounds(lo, hi)).expect(n);
        if reverse {
            scan = scan.reverse();
        }
        scan.map(move |r| {
            // Dropping the prefix in place: no second allocation per element.
            r.map(|(mut k, v)| {
                k.drain(..skip);
                (k, v)
            })
            .map_err(CmdError::from)
        })
    }

    /// Every element, in sub-key order.
    pub fn all<'a>(
        &self,
        store: &'a Store,
    ) -> impl Iterator<Item = CmdResult<(Vec<u8>, Vec<u8>)>> + 'a {
        self.scan(store, Bound::Unbounded, Bound::Unbounded, false)
    }

    /// Sub-keys in `lo..hi` without reading values (index only), in order (or reverse).
    pub fn keys<'a>(
        &self,
        store: &'a Store,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        reverse: bool,
    ) -> impl Iterator<Item = CmdResult<Vec<u8>>> + 'a {
        let skip = self.prefix.len();
        let mut keys = store.db.keys(self.bounds(lo, hi));
        if reverse {
            keys = keys.reverse();
        }
        keys.map(move |r| {
            r.map(|mut k| {
                k.drain(..skip);
                k
            })
            .map_err(CmdError::from)
        })
    }
}

/// A pending change to one collection: element writes buffered until [`Change::commit`],
/// which writes them and the metadata as one atomic engine batch. Reads through the change
/// see its own pending writes. Hold the key's lock ([`Store::lock`]) from [`Change::open`]
/// to `commit`.
#[derive(Debug)]
pub struct Change<'s> {
    store: &'s Store,
    coll: Coll,
    existed: bool,
    replace: bool,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    meta_dirty: bool,
}

impl<'s> Change<'s> {
    /// Opens `key` for writing as a collection of type `tag`: the existing one, or a new
    /// empty one (generation: a version never used before). `WRONGTYPE` if the key holds
    /// another type.
    ///
    /// # Errors
    /// Engine errors, `WRONGTYPE`.
    pub fn open(store: &'s Store, db: u8, key: &[u8], tag: u8) -> CmdResult<Change<'s>> {
        match store.coll(db, key, tag)? {
            Some(coll) => Ok(Change {
                store,
                coll,
                existed: true,
                replace: false,
                pending: BTreeMap::new(),
                meta_dirty: false,
            }),
            None => Ok(Change::create(store, db, key, tag)),
        }
    }

    /// Opens `key` only if it exists (`None` otherwise).
    ///
    /// # Errors
    /// Engine errors, `WRONGTYPE`.
    pub fn existing(
        store: &'s Store,
        db: u8,
        key: &[u8],
        tag: u8,
    ) -> CmdResult<Option<Change<'s>>> {
        Ok(store.coll(db, key, tag)?.map(|coll| Change {
            store,
            coll,
            existed: true,
            replace: false,
            pending: BTreeMap::new(),
            meta_dirty: false,
        }))
    }

    /// A new empty collection replacing whatever `key` holds (any type) when committed;
    /// committed empty, it deletes the key (SINTERSTORE and friends with an empty result).
    pub fn create(store: &'s Store, db: u8, key: &[u8], tag: u8) -> Change<'s> {
        // Versions only grow: the next write gets at least last_version + 1, and every
        // earlier generation of this key was taken before an earlier write.
        let generation = store.db.last_version() + 1;
        Change {
            store,
            coll: Coll::new(db, key, Meta::new(tag, generation)),
            existed: false,
            replace: true,
            pending: BTreeMap::new(),
            meta_dirty: true,
        }
    }

    /// Whether the collection existed before this change.
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The collection's metadata (count, list positions, expiry) as changed so far.
    pub fn meta(&self) -> &Meta {
        &self.coll.meta
    }

    /// Mutable metadata; the caller keeps `count` (and list positions) right.
    pub fn meta_mut(&mut self) -> &mut Meta {
        self.meta_dirty = true;
        &mut self.coll.meta
    }

    /// The collection as of the start of the change (for scans; pending writes not seen).
    pub fn coll(&self) -> &Coll {
        &self.coll
    }

    /// Reads element `sub`, pending writes included.
    ///
    /// # Errors
    /// Engine errors.
    pub fn get(&self, sub: &[u8]) -> CmdResult<Option<Vec<u8>>> {
        match self.pending.get(sub) {
            Some(v) => Ok(v.clone()),
            None if !self.existed => Ok(None),
            None => self.coll.get(self.store, sub),
        }
    }

    /// Whether element `sub` exists, pending writes included (no I/O).
    ///
    /// # Errors
    /// Engine errors.
    pub fn contains(&self, sub: &[u8]) -> CmdResult<bool> {
        match self.pending.get(sub) {
            Some(v) => Ok(v.is_some()),
            None if !self.existed => Ok(false),
            None => self.coll.contains(self.store, sub),
        }
    }

    /// Writes element `sub` without touching the count.
    pub fn put_raw(&mut self, sub: &[u8], value: &[u8]) {
        self.meta_dirty = true;
        self.pending.insert(sub.to_vec(), Some(value.to_vec()));
    }

    /// Deletes element `sub` without touching the count.
    pub fn delete_raw(&mut self, sub: &[u8]) {
        self.meta_dirty = true;
        self.pending.insert(sub.to_vec(), None);
    }

    /// Sets element `sub`, counting it if it is new; returns whether it was new.
    ///
    /// # Errors
    /// Engine errors.
    pub fn insert(&mut self, sub: &[u8], value: &[u8]) -> CmdResult<bool> {
        let new = !self.contains(sub)?;
        if new {
            self.coll.meta.count += 1;
        }
        self.put_raw(sub, value);
        Ok(new)
    }

    /// Removes element `sub` if present, uncounting it; returns whether it was present.
    ///
    /// # Errors
    /// Engine errors.
    pub fn remove(&mut self, sub: &[u8]) -> CmdResult<bool> {
        if !self.contains(sub)? {
            return Ok(false);
        }
        self.coll.meta.count = self.coll.meta.count.saturating_sub(1);
        self.delete_raw(sub);
        Ok(true)
    }

    /// Writes everything as one batch: the elements, then the metadata, or a delete of the
    /// key when the collection became empty. Returns the batch's version, or `None` if there
    /// was nothing to write. Wakes clients blocked on the key when it is not empty.
    ///
    /// # Errors
    /// Engine errors (nothing was written).
    pub fn commit(self) -> CmdResult<Option<u64>> {
        Change::commit_all(vec![self])
    }

    /// Commits changes to several collections (distinct keys) as ONE engine batch, so that
    /// a command writing two keys (LMOVE, SMOVE) survives a crash whole or not at all.
    /// Returns the batch's version, or `None` if none of them had anything to write.
    ///
    /// # Errors
    /// Engine errors (nothing was written).
    pub fn commit_all(changes: Vec<Change<'s>>) -> CmdResult<Option<u64>> {
        let Some(store) = changes.first().map(|c| c.store) else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        let mut after = Vec::with_capacity(changes.len());
        for c in changes {
            if let Some(a) = c.stage(&mut batch)? {
                after.push(a);
            }
        }
        if after.is_empty() {
            return Ok(None);
        }
        let v = store.write(&batch)?;
        for a in after {
            if a.sweep {
                store.sweep_later(a.db, &a.key);
            }
            if a.signal {
                store.ready.signal(a.db, &a.key);
            }
        }
        Ok(Some(v))
    }

    /// Adds this change's writes to `batch`; returns what to do once it is written (`None`:
    /// nothing to write).
    fn stage(self, batch: &mut Batch) -> CmdResult<Option<AfterCommit>> {
        if !self.meta_dirty && self.pending.is_empty() {
            return Ok(None);
        }
        let Change {
            store,
            coll,
            existed,
            replace,
            pending,
            ..
        } = self;
        let meta = coll.meta;
        if meta.count == 0 && !existed {
            // Nothing to create (SREM on a missing key), or an empty result replacing
            // whatever the key held (SINTERSTORE with no members deletes it).
            if replace && store.meta(coll.db, &coll.key)?.is_some() {
                let sweep = store.may_hold_collection(coll.db, &coll.key)?;
                batch.delete(engine_key(coll.db, &coll.key));
                return Ok(Some(AfterCommit {
                    db: coll.db,
                    key: coll.key,
                    sweep,
                    signal: false,
                }));
            }
            return Ok(None);
        }
        if meta.count == 0 {
            // The collection is gone: drop the metadata; any element not deleted
            // explicitly is garbage of a dead generation, for the sweeper.
            for (sub, v) in pending {
                if v.is_none() {
                    batch.delete(coll.elem_key(&sub));
                }
            }
            batch.delete(engine_key(coll.db, &coll.key));
        } else {
            for (sub, v) in pending {
                match v {
                    Some(v) => batch.put(coll.elem_key(&sub), v),
                    None => batch.delete(coll.elem_key(&sub)),
                };
            }
            Store::batch_put(
                batch,
                coll.db,
                &coll.key,
                meta.tag,
                &meta.encode(),
                meta.expire_at,
            );
        }
        // Elements left behind: an overwritten key's, or an emptied collection's that the
        // command did not delete one by one.
        let sweep = (meta.count == 0 && existed)
            || (!existed && store.may_hold_collection(coll.db, &coll.key)?);
        Ok(Some(AfterCommit {
            db: coll.db,
            key: coll.key,
            sweep,
            signal: meta.count > 0,
        }))
    }
}

/// What a staged change does once its batch is written.
struct AfterCommit {
    db: u8,
    key: Vec<u8>,
    sweep: bool,
    signal: bool,
}

impl Store {
    /// Reads collection `key` of type `tag`: `None` if absent, `WRONGTYPE` if the key holds
    /// another type.
    ///
    /// # Errors
    /// Engine errors, `WRONGTYPE`.
    pub fn coll(&self, db: u8, key: &[u8], tag: u8) -> CmdResult<Option<Coll>> {
        let Some((val, expire_at)) = self.get_with_expiry(db, key)? else {
            return Ok(None);
        };
        if val.tag != tag {
            return Err(CmdError::wrong_type());
        }
        let meta = Meta::decode(tag, &val.data, expire_at)?;
        Ok(Some(Coll::new(db, key, meta)))
    }

    /// Reads a key of any type, in one read: its string, or its collection.
    ///
    /// # Errors
    /// Engine errors, corrupt metadata.
    pub fn read_value(&self, db: u8, key: &[u8]) -> CmdResult<Option<Stored>> {
        let Some((val, expire_at)) = self.get_with_expiry(db, key)? else {
            return Ok(None);
        };
        if val.tag == TYPE_STRING {
            return Ok(Some(Stored::String(val.data)));
        }
        let meta = Meta::decode(val.tag, &val.data, expire_at)?;
        Ok(Some(Stored::Coll(Coll::new(db, key, meta))))
    }

    /// Reads any collection (`None` for a missing key or a string).
    ///
    /// # Errors
    /// Engine errors.
    pub fn any_coll(&self, db: u8, key: &[u8]) -> CmdResult<Option<Coll>> {
        Ok(match self.read_value(db, key)? {
            Some(Stored::Coll(c)) => Some(c),
            _ => None,
        })
    }

    /// Whether `key` may hold a collection (its record is small enough to be metadata):
    /// index only, no I/O. Used to decide whether an overwrite leaves elements to sweep.
    ///
    /// # Errors
    /// Engine errors.
    pub fn may_hold_collection(&self, db: u8, key: &[u8]) -> CmdResult<bool> {
        Ok(self.meta(db, key)?.is_some_and(|m| {
            let overhead = cask_engine::record::HEADER_LEN as u64 + 2 + key.len() as u64;
            m.size <= overhead + 1 + MAX_META_LEN as u64
        }))
    }

    /// Adds to `batch` a copy of `src` (any type) as `dst` with expiry `ttl`: strings are
    /// one record, collections get a new generation and a copy of every element.
    ///
    /// # Errors
    /// Engine errors.
    pub fn batch_copy(
        &self,
        batch: &mut Batch,
        (src_db, src): (u8, &[u8]),
        (dst_db, dst): (u8, &[u8]),
        val: &super::keyspace::Value,
        ttl: Option<u64>,
    ) -> CmdResult<()> {
        if val.tag == TYPE_STRING {
            Store::batch_put(batch, dst_db, dst, val.tag, &val.data, ttl);
            return Ok(());
        }
        let src_meta = Meta::decode(val.tag, &val.data, ttl)?;
        let coll = Coll::new(src_db, src, src_meta);
        let mut meta = src_meta;
        meta.generation = self.db.last_version() + 1;
        let prefix = elem_prefix(dst_db, dst, meta.generation);
        for item in coll.all(self) {
            let (sub, v) = item?;
            let mut k = prefix.clone();
            k.extend_from_slice(&sub);
            batch.put(k, v);
        }
        Store::batch_put(batch, dst_db, dst, meta.tag, &meta.encode(), ttl);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_keys_sort_numerically() {
        let scores = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        for w in scores.windows(2) {
            assert!(score_key(w[0]) < score_key(w[1]), "{} < {}", w[0], w[1]);
        }
        for s in scores {
            assert_eq!(score_from_key(score_key(s)), s);
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
    }

    #[test]
    fn element_keys_of_prefix_keys_are_disjoint() {
        // "a" with a sub-key must never fall inside the range of "ab".
        let a = elem_key(0, b"a", 7, b"bzzzz");
        let ab = elem_prefix(0, b"ab", 7);
        assert!(!a.starts_with(&ab));
        let (db, key, generation, sub) = parse_elem_key(&a).unwrap();
        assert_eq!((db, key, generation, sub), (0, &b"a"[..], 7, &b"bzzzz"[..]));
        assert_eq!(parse_elem_key(b"E\0\x09ab"), None);
        assert_eq!(
            parse_elem_key(b"E\0\x02ab\x80"),
            None,
            "unterminated generation"
        );
    }

    #[test]
    fn element_keys_round_trip_long_keys_and_large_generations() {
        let long = vec![b'x'; 300];
        for (key, generation) in [
            (&b""[..], 0u64),
            (b"k", 127),
            (b"k", 128),
            (&long[..], 1 << 35),
            (b"big:zset", u64::MAX),
        ] {
            let k = elem_key(3, key, generation, b"sub");
            assert_eq!(
                parse_elem_key(&k),
                Some((3, key, generation, &b"sub"[..])),
                "{} bytes, generation {generation}",
                key.len()
            );
            assert!(k.starts_with(&elem_prefix(3, key, generation)));
            assert!(k.starts_with(&key_elems_prefix(3, key)));
        }
        // The short layout is what keeps a 7-byte zset member's score-index record inline
        // in the engine's index (up to 30 bytes): 1 + 1 + 1 + 8 + 2 + 1 + 8 + 7 = 29.
        assert_eq!(elem_key(0, b"big:zset", 14_000, &[0u8; 16]).len(), 29);
    }

    #[test]
    fn first_layout_elements_are_moved_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = cask_engine::Db::open(dir.path(), cask_engine::Options::default()).unwrap();
        let v0 = |db: u8, key: &[u8], generation: u64, sub: &[u8]| {
            let mut k = vec![NS_ELEM_V0, db];
            k.extend_from_slice(&(key.len() as u32).to_be_bytes());
            k.extend_from_slice(key);
            k.extend_from_slice(&generation.to_be_bytes());
            k.extend_from_slice(sub);
            k
        };
        for i in 0..25_000u32 {
            let sub = i.to_be_bytes();
            db.set(&v0(0, b"h", 9, &sub), format!("v{i}").as_bytes())
                .unwrap();
        }
        db.set(&v0(2, b"s", 1 << 40, b"m"), b"").unwrap();
        db.set(b"k\0plain", b"untouched").unwrap();
        // The hash's metadata (generation 9, 25,000 fields), as the first layout wrote it.
        let mut meta = Meta::new(super::super::keyspace::TYPE_HASH, 9);
        meta.count = 25_000;
        let mut batch = Batch::new();
        Store::batch_put(&mut batch, 0, b"h", meta.tag, &meta.encode(), None);
        db.write(&batch).unwrap();
        // Opening a store (what `cask serve` does) moves the records before its sweeper
        // starts, which would otherwise see no live elements of generation 9.
        let store = Store::new(db.clone());
        let coll = store
            .coll(0, b"h", super::super::keyspace::TYPE_HASH)
            .unwrap()
            .expect("the hash");
        assert_eq!(
            coll.get(&store, &7u32.to_be_bytes()).unwrap(),
            Some(b"v7".to_vec())
        );
        drop(store);
        assert_eq!(
            migrate_v0_elements(&db).unwrap(),
            0,
            "a second start moves nothing"
        );
        let old: Vec<_> = db
            .keys((
                Bound::Included(vec![NS_ELEM_V0]),
                Bound::Excluded(vec![NS_ELEM_V0 + 1]),
            ))
            .collect();
        assert!(old.is_empty());
        assert_eq!(
            db.get(&elem_key(0, b"h", 9, &24_999u32.to_be_bytes()))
                .unwrap(),
            Some(b"v24999".to_vec())
        );
        assert_eq!(
            db.get(&elem_key(2, b"s", 1 << 40, b"m")).unwrap(),
            Some(vec![])
        );
        assert_eq!(db.get(b"k\0plain").unwrap(), Some(b"untouched".to_vec()));
    }

    #[test]
    fn meta_round_trips() {
        let mut m = Meta::new(TYPE_LIST, 42);
        m.count = 3;
        m.head = LIST_MID - 1;
        m.tail = LIST_MID + 2;
        m.expire_at = Some(99);
        assert_eq!(Meta::decode(TYPE_LIST, &m.encode(), Some(99)).unwrap(), m);
        assert!(Meta::decode(TYPE_LIST, &m.encode()[..16], None).is_err());
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
