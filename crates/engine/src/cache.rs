//! A small cache of recently written and read values, so that reading a hot key (a counter,
//! a collection's metadata record, rewritten by every change to the collection) does not
//! cost a `pread`.
//!
//! Slots are chosen by a hash of the key, one value per slot. A slot remembers the record
//! it holds (segment, offset, sequence number), and a read uses it only if the index still
//! points at that very record, so a value overwritten, deleted, expired or moved by
//! compaction is never served from here: the read goes to the file as without the cache.
//! Values are cached as written or as read after the record's checks passed.

use std::hash::{BuildHasher, Hasher};

use parking_lot::Mutex;

use crate::keydir::Entry;

struct Cached {
    /// Hash of the key.
    hash: u64,
    seg: u32,
    off: u64,
    seq: u64,
    value: Box<[u8]>,
}

/// The cache (see the module docs). With 0 slots it holds nothing.
pub(crate) struct ValueCache {
    slots: Box<[Mutex<Option<Cached>>]>,
    max_value: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for ValueCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueCache")
            .field("slots", &self.slots.len())
            .field("max_value", &self.max_value)
            .finish()
    }
}

impl ValueCache {
    /// A cache of `slots` values of at most `max_value` bytes each.
    pub fn new(slots: usize, max_value: usize) -> ValueCache {
        ValueCache {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            max_value,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The key's hash and slot.
    fn slot(&self, key: &[u8]) -> Option<(u64, &Mutex<Option<Cached>>)> {
        if self.slots.is_empty() {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        h.write(key);
        let hash = h.finish();
        Some((hash, &self.slots[(hash % self.slots.len() as u64) as usize]))
    }

    /// The value of the record `e` points at, if this cache holds that record.
    pub fn get(&self, key: &[u8], e: &Entry) -> Option<Vec<u8>> {
        let slot = self.slot(key)?.1.lock();
        let c = slot.as_ref()?;
        (c.seg == e.seg() && c.off == e.off() && c.seq == e.seq()).then(|| c.value.to_vec())
    }

    /// Remembers `value`, just read, as the value of the record of `key` at `seg`/`off`
    /// with sequence number `seq` (values over the size limit are not cached).
    pub fn put(&self, key: &[u8], seg: u32, off: u64, seq: u64, value: &[u8]) {
        self.store(key, seg, off, seq, value, false);
    }

    /// Like [`ValueCache::put`] for a value just written, cached only if the slot holds
    /// an earlier value of the same key: a key read since it was last evicted is hot, and
    /// a stream of writes to keys nobody reads does not churn the cache.
    pub fn put_written(&self, key: &[u8], seg: u32, off: u64, seq: u64, value: &[u8]) {
        self.store(key, seg, off, seq, value, true);
    }

    fn store(&self, key: &[u8], seg: u32, off: u64, seq: u64, value: &[u8], same_key: bool) {
        if value.len() > self.max_value {
            return;
        }
        let Some((hash, slot)) = self.slot(key) else {
            return;
        };
        let mut slot = slot.lock();
        match slot.as_mut() {
            Some(c) if c.hash == hash => {
                if c.value.len() == value.len() {
                    c.value.copy_from_slice(value);
                } else {
                    c.value = value.into();
                }
                (c.seg, c.off, c.seq) = (seg, off, seq);
            }
            _ if same_key => {}
            _ => {
                *slot = Some(Cached {
                    hash,
                    seg,
                    off,
                    seq,
                    value: value.into(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_served_only_for_the_record_it_was_cached_for() {
        let c = ValueCache::new(64, 8);
        // A write of a key not read yet is not cached; a read is; a write of it then is.
        c.put_written(b"k", 1, 50, 6, b"w");
        assert_eq!(c.get(b"k", &Entry::new(1, 50, 30, 6, 0)), None);
        c.put(b"k", 1, 50, 6, b"w");
        assert_eq!(
            c.get(b"k", &Entry::new(1, 50, 30, 6, 0)),
            Some(b"w".to_vec())
        );
        c.put_written(b"k", 1, 100, 7, b"v");
        assert_eq!(
            c.get(b"k", &Entry::new(1, 100, 30, 7, 0)),
            Some(b"v".to_vec())
        );
        assert_eq!(c.get(b"k", &Entry::new(1, 50, 30, 6, 0)), None);
        // Same key, another record: an overwrite, a compaction's copy, a later sequence.
        assert_eq!(c.get(b"k", &Entry::new(1, 200, 30, 8, 0)), None);
        assert_eq!(c.get(b"k", &Entry::new(2, 100, 30, 7, 0)), None);
        assert_eq!(c.get(b"k", &Entry::new(1, 100, 30, 9, 0)), None);
        // Too large to cache: the slot keeps what it had.
        c.put(b"k", 1, 300, 10, b"123456789");
        assert_eq!(c.get(b"k", &Entry::new(1, 300, 30, 10, 0)), None);
        assert_eq!(
            c.get(b"k", &Entry::new(1, 100, 30, 7, 0)),
            Some(b"v".to_vec())
        );
        // No slots: nothing is cached.
        let off = ValueCache::new(0, 8);
        off.put(b"k", 1, 100, 7, b"v");
        assert_eq!(off.get(b"k", &Entry::new(1, 100, 30, 7, 0)), None);
    }
}
