//! Lazy, ordered scans over the keydir.
//!
//! A scan never holds the keydir lock while reading values: it copies the next chunk of
//! entries under a short read lock, then reads their values without any lock. Scans are not
//! snapshots: each key is read at its newest version when the scan reaches it, keys written
//! behind the cursor are not seen, and keys deleted ahead of it are skipped.
//!
//! Values of a chunk whose records lie close together in one segment (a list's elements,
//! a hash written in one command) are read with one `pread` per run of nearby records
//! instead of one per record; a prefetched value is used only if the key still points at
//! the very record it came from when the scan reaches it.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::Ordering;

use crate::db::Db;
use crate::error::Result;
use crate::keydir::Entry;
use crate::record::{self, HEADER_LEN};

/// Records at most this far apart are read by one `pread` (the bytes between are read
/// and dropped).
const COALESCE_GAP: u64 = 4096;
/// The most bytes one coalesced `pread` covers.
const COALESCE_SPAN: u64 = 256 << 10;

/// Entries copied by the first chunk; each later chunk doubles, up to [`MAX_CHUNK`], so short
/// scans stay cheap and long ones take the lock rarely.
const FIRST_CHUNK: usize = 16;
const MAX_CHUNK: usize = 1024;

/// A key with its index entry as a chunk copied it, and its value if it was read ahead.
type Copied = (Vec<u8>, Entry, Option<Vec<u8>>);

/// An ordered iterator of `(key, value)` pairs; see [`Db::scan`].
#[derive(Debug)]
pub struct Scan {
    db: Db,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    pending: VecDeque<Copied>,
    exhausted: bool,
    chunk: usize,
    /// Whether values will be read (false for a listing of keys).
    values: bool,
    /// [`crate::db::Inner::keydir_changes`] when the pending chunk was copied.
    copied_at: u64,
}

impl Scan {
    pub(crate) fn new(db: Db, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Self {
        Scan {
            db,
            lo,
            hi,
            reverse: false,
            pending: VecDeque::new(),
            exhausted: false,
            chunk: FIRST_CHUNK,
            values: true,
            copied_at: 0,
        }
    }

    /// Tells the scan how many entries the caller will take (an LRANGE of 100 elements),
    /// so that its first chunk copies them all under one lock hold instead of growing
    /// from [`FIRST_CHUNK`] (call before iterating).
    pub fn expect(mut self, n: usize) -> Self {
        self.chunk = n.clamp(FIRST_CHUNK, MAX_CHUNK);
        self
    }

    /// Iterate from the last key down (call before iterating).
    pub fn reverse(mut self) -> Self {
        self.reverse = !self.reverse;
        self
    }

    /// Turns this scan into a listing of keys only (no value reads).
    pub fn into_keys(mut self) -> Keys {
        self.values = false;
        Keys { scan: self }
    }

    fn fill(&mut self) -> Result<()> {
        self.db.inner.check_open()?;
        let now = self.db.now_ms();
        let kd = self.db.inner.keydir.read();
        if empty_range(&self.lo, &self.hi) {
            self.exhausted = true;
            return Ok(());
        }
        let range = kd
            .map
            .range::<[u8], _>((as_slice(&self.lo), as_slice(&self.hi)));
        let mut taken = 0;
        let mut last: Option<&[u8]> = None;
        let mut push = |k: &'_ [u8], e: &Entry| {
            taken += 1;
            if !e.expired(now) {
                self.pending.push_back((k.to_vec(), *e, None));
            }
        };
        if self.reverse {
            for (k, e) in range.rev().take(self.chunk) {
                push(k.as_slice(), e);
                last = Some(k.as_slice());
            }
        } else {
            for (k, e) in range.take(self.chunk) {
                push(k.as_slice(), e);
                last = Some(k.as_slice());
            }
        }
        let last = last.map(<[u8]>::to_vec);
        self.copied_at = self.db.inner.keydir_changes.load(Ordering::Acquire);
        drop(kd);
        match last {
            Some(k) if taken == self.chunk => {
                self.chunk = (self.chunk * 2).min(MAX_CHUNK);
                if self.reverse {
                    self.hi = Bound::Excluded(k);
                } else {
                    self.lo = Bound::Excluded(k);
                }
            }
            _ => self.exhausted = true,
        }
        if self.values {
            read_ahead(&self.db, self.pending.make_contiguous());
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Option<Result<Copied>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            if self.exhausted {
                return None;
            }
            if let Err(e) = self.fill() {
                self.exhausted = true;
                return Some(Err(e));
            }
        }
    }
}

/// Reads ahead the values of `chunk`: entries in one segment at most [`COALESCE_GAP`] bytes
/// apart are read with one `pread`. Anything unusual (a segment gone, an I/O error, a record
/// that does not check out) just leaves the value to the ordinary read, which reports it.
fn read_ahead(db: &Db, chunk: &mut [Copied]) {
    if chunk.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..chunk.len()).collect();
    order.sort_by_key(|&i| chunk[i].1.loc());
    let mut start = 0;
    while start < order.len() {
        let first = &chunk[order[start]].1;
        let (seg_id, lo) = first.loc();
        let mut hi = lo + first.record_len() as u64;
        let mut end = start + 1;
        while end < order.len() {
            let e = &chunk[order[end]].1;
            let e_end = e.off() + e.record_len() as u64;
            if e.seg() != seg_id || e.off() > hi + COALESCE_GAP || e_end - lo > COALESCE_SPAN {
                break;
            }
            hi = hi.max(e_end);
            end += 1;
        }
        if end - start >= 2 {
            read_run(db, chunk, &order[start..end], seg_id, lo, hi);
        }
        start = end;
    }
}

/// One `pread` of `lo..hi` in segment `seg_id`, then each record of `run` cut out of it and
/// checked as [`crate::db::Inner::read_value`] checks a record.
fn read_run(db: &Db, chunk: &mut [Copied], run: &[usize], seg_id: u32, lo: u64, hi: u64) {
    let Some(seg) = db.inner.segments.read().get(&seg_id).cloned() else {
        return;
    };
    let mut buf = vec![0u8; (hi - lo) as usize];
    if seg.file.read_exact_at(&mut buf, lo).is_err() {
        return;
    }
    for &i in run {
        let (key, e, value) = &mut chunk[i];
        let at = (e.off() - lo) as usize;
        let rec = &buf[at..at + e.record_len() as usize];
        if rec.len() < HEADER_LEN || !record::verify(rec) {
            continue;
        }
        let Ok(h) = record::Header::decode(rec[..HEADER_LEN].try_into().expect("header")) else {
            continue;
        };
        let kend = HEADER_LEN + h.key_len as usize;
        if h.kind.is_put() && h.seq == e.seq() && rec.get(HEADER_LEN..kend) == Some(key) {
            *value = Some(rec[kend..].to_vec());
        }
    }
}

/// Whether `lo..hi` is empty in a way `BTreeMap::range` would panic on.
pub(crate) fn empty_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    matches!((lo, hi), (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) if a > b)
        || matches!((lo, hi), (Bound::Excluded(a), Bound::Excluded(b)) if a == b)
}

/// Entries counted per keydir lock hold by [`count`].
const COUNT_CHUNK: usize = 64 * 1024;

/// The number of live keys in `lo..hi`, from the index, taking its lock in chunks so that
/// writers are never held up for long.
pub(crate) fn count(db: &Db, mut lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Result<u64> {
    db.inner.check_open()?;
    let now = db.now_ms();
    let mut n = 0;
    loop {
        if empty_range(&lo, &hi) {
            return Ok(n);
        }
        let kd = db.inner.keydir.read();
        let mut taken = 0;
        let mut last = None;
        for (k, e) in kd
            .map
            .range::<[u8], _>((as_slice(&lo), as_slice(&hi)))
            .take(COUNT_CHUNK)
        {
            taken += 1;
            if !e.expired(now) {
                n += 1;
            }
            last = Some(k);
        }
        match last {
            Some(k) if taken == COUNT_CHUNK => lo = Bound::Excluded(k.as_slice().to_vec()),
            _ => return Ok(n),
        }
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, copied, ahead) = match self.next_entry()? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            // The chunk's entries were copied under an earlier lock: the key may have been
            // deleted, overwritten or moved by compaction since. A value read ahead counts
            // only if the key still points at the record it came from: certainly so if the
            // keydir has not changed at all since the copy (one atomic load), else look it
            // up afresh.
            if let Some(v) = ahead {
                let unchanged =
                    self.db.inner.keydir_changes.load(Ordering::Acquire) == self.copied_at;
                let live = if unchanged {
                    copied.expire() == 0 || !copied.expired(self.db.now_ms())
                } else {
                    let now = self.db.now_ms();
                    let current = self.db.inner.keydir.read().map.get(key.as_slice()).copied();
                    current.is_some_and(|e| e == copied && !e.expired(now))
                };
                if live {
                    return Some(Ok((key, v)));
                }
            }
            let value = self.db.inner.read_live(&key).map(|o| o.map(|(v, _)| v));
            match value {
                Ok(Some(v)) => return Some(Ok((key, v))),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// An ordered iterator of live keys; see [`Db::keys`].
#[derive(Debug)]
pub struct Keys {
    scan: Scan,
}

impl Keys {
    /// Iterate from the last key down (call before iterating).
    pub fn reverse(self) -> Self {
        Keys {
            scan: self.scan.reverse(),
        }
    }
}

impl Iterator for Keys {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let key = match self.scan.next_entry()? {
                Ok((k, _, _)) => k,
                Err(e) => return Some(Err(e)),
            };
            // Skip keys deleted (or expired) since the chunk was copied.
            match self.scan.db.metadata(&key) {
                Ok(Some(_)) => return Some(Ok(key)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
