//! The keydir: an ordered in-memory index from key to the location of its newest record.
//! It holds keys and locations, never values.

use std::collections::{BTreeMap, HashMap};

/// Where a key's newest record lives, and what the index needs to know about it without I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Offset of the record in its segment.
    pub off: u64,
    /// Sequence number (the key's version).
    pub seq: u64,
    /// Expiry (ms since the epoch), 0 for none.
    pub expire: u64,
    /// Segment id.
    pub seg: u32,
    /// Record length.
    pub len: u32,
}

/// A tombstone placeholder used only while recovering (segment id never allocated).
pub const TOMBSTONE_SEG: u32 = u32::MAX;

impl Entry {
    /// Whether the entry has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expire != 0 && self.expire <= now_ms
    }

    /// The expiry as an option.
    pub fn expire_at(&self) -> Option<u64> {
        (self.expire != 0).then_some(self.expire)
    }

    /// Whether this is a recovery-time tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.seg == TOMBSTONE_SEG
    }
}

/// The ordered key index plus live-byte accounting per segment.
#[derive(Debug, Default)]
pub struct KeyDir {
    /// Key to newest record.
    pub map: BTreeMap<Box<[u8]>, Entry>,
    /// Live record bytes per segment id.
    pub live: HashMap<u32, u64>,
}

impl KeyDir {
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
        self.add_live(&e);
        let old = match self.map.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, e)),
            None => {
                self.map.insert(key.into(), e);
                None
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
            self.sub_live(old);
        }
        old
    }

    /// Moves `key` from `old` location to `new` only if it still points at `old`.
    pub fn relocate(&mut self, key: &[u8], old: (u32, u64), new: Entry) -> bool {
        let moved = match self.map.get_mut(key) {
            Some(slot) if (slot.seg, slot.off) == old => {
                let prev = std::mem::replace(slot, new);
                Some(prev)
            }
            _ => None,
        };
        match moved {
            Some(prev) => {
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
            Some(e) if (e.seg, e.off) == old => {
                self.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Recomputes live bytes from the map.
    pub fn recount_live(&mut self) {
        self.live.clear();
        for e in self.map.values() {
            if !e.is_tombstone() {
                *self.live.entry(e.seg).or_default() += e.len as u64;
            }
        }
    }
}
