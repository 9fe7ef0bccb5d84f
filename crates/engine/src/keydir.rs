//! The keydir: an ordered in-memory index from key to the location of its newest record.
//! It holds keys and locations, never values.
//!
//! Memory matters here: one entry per key, for every key in the database. Keys of up to 30
//! bytes are stored inline in a 32-byte [`IndexKey`] (no heap allocation), and an [`Entry`]
//! is 28 bytes (sequence number and expiry are stored as pairs of `u32` to keep the
//! alignment at 4). Recovery builds the map from sorted input in one pass
//! ([`KeyDir::from_unsorted`]), which fills the B-tree's nodes completely.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{self, AtomicU64};

const INLINE: usize = 30;

/// A key as stored in the index: inline when short, boxed otherwise.
#[derive(Clone)]
pub enum IndexKey {
    /// Up to 30 bytes, stored in place.
    Inline {
        /// Number of bytes used.
        len: u8,
        /// The bytes (only `..len` are meaningful).
        bytes: [u8; INLINE],
    },
    /// A longer key on the heap.
    Heap(Box<[u8]>),
}

impl IndexKey {
    /// The key's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IndexKey::Inline { len, bytes } => &bytes[..*len as usize],
            IndexKey::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for IndexKey {
    fn from(k: &[u8]) -> Self {
        if k.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..k.len()].copy_from_slice(k);
            IndexKey::Inline {
                len: k.len() as u8,
                bytes,
            }
        } else {
            IndexKey::Heap(k.into())
        }
    }
}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

fn split(v: u64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

fn join(v: [u32; 2]) -> u64 {
    v[0] as u64 | ((v[1] as u64) << 32)
}

/// Where a key's newest record lives, and what the index needs to know about it without I/O.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    seq: [u32; 2],
    expire: [u32; 2],
    off: u32,
    len: u32,
    seg: u32,
}

/// A tombstone placeholder used only while recovering (segment id never allocated).
pub const TOMBSTONE_SEG: u32 = u32::MAX;

impl Entry {
    /// An entry for the record of `len` bytes at `off` in segment `seg`.
    pub fn new(seg: u32, off: u64, len: u32, seq: u64, expire: u64) -> Self {
        debug_assert!(off <= u32::MAX as u64, "segment offsets fit in 32 bits");
        Entry {
            seq: split(seq),
            expire: split(expire),
            off: off as u32,
            len,
            seg,
        }
    }

    /// A recovery-time tombstone with sequence number `seq`.
    pub fn tombstone(seq: u64) -> Self {
        Entry::new(TOMBSTONE_SEG, 0, 0, seq, 0)
    }

    /// Segment id.
    pub fn seg(&self) -> u32 {
        self.seg
    }

    /// Offset of the record in its segment.
    pub fn off(&self) -> u64 {
        self.off as u64
    }

    /// Record length.
    pub fn record_len(&self) -> u32 {
        self.len
    }

    /// Sequence number (the key's version).
    pub fn seq(&self) -> u64 {
        join(self.seq)
    }

    /// Expiry (ms since the epoch), 0 for none.
    pub fn expire(&self) -> u64 {
        join(self.expire)
    }

    /// `(segment, offset)`: the record's location.
    pub fn loc(&self) -> (u32, u64) {
        (self.seg, self.off())
    }

    /// Whether the entry has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        let e = self.expire();
        e != 0 && e <= now_ms
    }

    /// The expiry as an option.
    pub fn expire_at(&self) -> Option<u64> {
        let e = self.expire();
        (e != 0).then_some(e)
    }

    /// Whether this is a recovery-time tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.seg == TOMBSTONE_SEG
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("seg", &self.seg)
            .field("off", &self.off)
            .field("len", &self.len)
            .field("seq", &self.seq())
            .field("expire", &self.expire())
            .finish()
    }
}

/// The ordered key index plus live-byte accounting per segment.
#[derive(Debug, Default)]
pub struct KeyDir {
    /// Key to newest record.
    pub map: BTreeMap<IndexKey, Entry>,
    /// Live record bytes per segment id.
    pub live: HashMap<u32, u64>,
    /// Bumped by every change of an entry (insert, remove, relocate), under the write lock
    /// that the change needs. Shared (`Db` holds a clone): a reader that saw the same count
    /// under the read lock knows that nothing it copied from the map since has changed,
    /// without taking the lock again.
    pub changes: Arc<AtomicU64>,
}

impl KeyDir {
    /// Builds the index from recovered records in the order they were read: for each key
    /// the highest sequence number wins (on a tie, the later one); tombstones and entries
    /// expired at `now` are dropped.
    pub fn from_unsorted(mut entries: Vec<(IndexKey, Entry)>, now: u64) -> KeyDir {
        // A stable sort keeps equal keys in read order and merges the sorted runs that
        // hint files provide in close to linear time. Everything after it works in place.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        // `dedup_by` hands (current, previous kept); keep the higher sequence number in the
        // kept slot (on a tie, the later record).
        entries.dedup_by(|cur, kept| {
            if cur.0 != kept.0 {
                return false;
            }
            if cur.1.seq() >= kept.1.seq() {
                kept.1 = cur.1;
            }
            true
        });
        entries.retain(|(_, e)| !e.is_tombstone() && !e.expired(now));
        let live = count_live(entries.iter().map(|(_, e)| e));
        KeyDir {
            map: entries.into_iter().collect(),
            live,
            changes: Arc::default(),
        }
    }

    fn changed(&self) {
        self.changes.fetch_add(1, atomic::Ordering::Release);
    }

    fn add_live(&mut self, e: &Entry) {
        if !e.is_tombstone() {
            *self.live.entry(e.seg).or_default() += e.len as u64;
        }
    }

    fn sub_live(&mut self, e: &Entry) {
        if !e.is_tombstone()
            && let Some(l) = self.live.get_mut(&e.seg)
        {
            *l = l.saturating_sub(e.len as u64);
        }
    }

    /// Points `key` at `e`, returning the previous entry.
    pub fn insert(&mut self, key: &[u8], e: Entry) -> Option<Entry> {
        use std::collections::btree_map::Entry as Slot;
        self.changed();
        self.add_live(&e);
        let old = if key.len() <= INLINE {
            // An inline key costs nothing to build: one walk finds the slot or the place
            // for a new one.
            match self.map.entry(IndexKey::from(key)) {
                Slot::Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), e)),
                Slot::Vacant(slot) => {
                    slot.insert(e);
                    None
                }
            }
        } else {
            // A long key would be allocated for nothing when it exists: look it up first.
            match self.map.get_mut(key) {
                Some(slot) => Some(std::mem::replace(slot, e)),
                None => {
                    self.map.insert(key.into(), e);
                    None
                }
            }
        };
        if let Some(old) = &old {
            self.sub_live(old);
        }
        old
    }

    /// Removes `key`, returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.map.remove(key);
        if let Some(old) = &old {
            self.changed();
            self.sub_live(old);
        }
        old
    }

    /// Moves `key` from `old` location to `new` only if it still points at `old`.
    pub fn relocate(&mut self, key: &[u8], old: (u32, u64), new: Entry) -> bool {
        let moved = match self.map.get_mut(key) {
            Some(slot) if slot.loc() == old => Some(std::mem::replace(slot, new)),
            _ => None,
        };
        match moved {
            Some(prev) => {
                self.changed();
                self.sub_live(&prev);
                self.add_live(&new);
                true
            }
            None => false,
        }
    }

    /// Removes `key` only if it still points at `old`.
    pub fn remove_if_at(&mut self, key: &[u8], old: (u32, u64)) -> bool {
        match self.map.get(key) {
            Some(e) if e.loc() == old => {
                self.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Recomputes live bytes from the map.
    pub fn recount_live(&mut self) {
        self.live = count_live(self.map.values());
    }
}

/// Sums record bytes per segment. Segment ids are small and dense, so a vector indexed by id
/// beats hashing once per key.
fn count_live<'a>(entries: impl Iterator<Item = &'a Entry>) -> HashMap<u32, u64> {
    let mut dense: Vec<u64> = Vec::new();
    let mut sparse: HashMap<u32, u64> = HashMap::new();
    for e in entries {
        if e.is_tombstone() {
            continue;
        }
        let id = e.seg as usize;
        if id < 1 << 16 {
            if id >= dense.len() {
                dense.resize(id + 1, 0);
            }
            dense[id] += e.len as u64;
        } else {
            *sparse.entry(e.seg).or_default() += e.len as u64;
        }
    }
    sparse.extend(
        dense
            .into_iter()
            .enumerate()
            .filter(|(_, b)| *b > 0)
            .map(|(id, b)| (id as u32, b)),
    );
    sparse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_layout() {
        assert_eq!(std::mem::size_of::<IndexKey>(), 32);
        assert_eq!(std::mem::size_of::<Entry>(), 28);
    }

    #[test]
    fn key_order_is_byte_order() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
            b"abcdefgh\xff\xff",
            b"\xff\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x7f\xff\xff\xff\xff\xff\xff\xff",
            &[0x80; 40],
            &[0x80; 39],
        ];
        for a in &keys {
            for b in &keys {
                let (ka, kb) = (IndexKey::from(*a), IndexKey::from(*b));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn every_change_of_an_entry_bumps_the_change_count_and_nothing_else_does() {
        let mut kd = KeyDir::default();
        let count = |kd: &KeyDir| kd.changes.load(atomic::Ordering::Acquire);
        let e = |off| Entry::new(1, off, 10, off, 0);
        kd.insert(b"a", e(0));
        kd.insert(&[b'l'; 40], e(1)); // a long (heap) key takes the other path
        kd.insert(b"a", e(2));
        assert_eq!(count(&kd), 3);
        assert!(kd.remove(b"missing").is_none());
        assert!(!kd.relocate(b"a", (1, 0), e(3))); // no longer at offset 0
        assert!(!kd.remove_if_at(b"a", (1, 0)));
        assert_eq!(count(&kd), 3);
        assert!(kd.relocate(b"a", (1, 2), e(4)));
        assert!(kd.remove_if_at(b"a", (1, 4)));
        assert!(kd.remove(&[b'l'; 40]).is_some());
        assert_eq!(count(&kd), 6);
    }

    #[test]
    fn keys_order_as_bytes() {
        let short = IndexKey::from(&b"ab"[..]);
        let long = IndexKey::from(&[b'a'; 40][..]);
        assert!(matches!(long, IndexKey::Heap(_)));
        assert!(long < short);
        assert_eq!(IndexKey::from(&b""[..]).as_slice(), b"");
    }

    #[test]
    fn bulk_build_keeps_highest_seq_and_drops_tombstones() {
        let k = |s: &str| IndexKey::from(s.as_bytes());
        let kd = KeyDir::from_unsorted(
            vec![
                (k("b"), Entry::new(1, 16, 40, 5, 0)),
                (k("a"), Entry::new(1, 56, 40, 6, 0)),
                (k("b"), Entry::tombstone(7)),
                (k("c"), Entry::new(2, 16, 40, 9, 0)),
                (k("c"), Entry::new(1, 96, 40, 3, 0)),
                (k("d"), Entry::new(1, 136, 40, 8, 100)),
            ],
            200,
        );
        let keys: Vec<_> = kd.map.keys().map(|k| k.as_slice().to_vec()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(kd.map.get(&b"c"[..]).unwrap().seq(), 9);
        assert_eq!(kd.live.get(&1), Some(&40));
        assert_eq!(kd.live.get(&2), Some(&40));
    }
}
