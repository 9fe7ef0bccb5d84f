//! How Redis keys and values are laid out in the engine.
//!
//! Engine key of a Redis key: `b'k' | db | key` (namespace byte, database index 0..16, the
//! user key's bytes). Engine value: a type tag byte ([`TYPE_STRING`] = 0) followed by the
//! payload. A key's TTL is the engine record's `expire_at`, so expired keys vanish from
//! reads and scans without any work from the server. See docs/SERVER.md for the plan for
//! hashes, lists, sets and sorted sets (metadata record + one record per element).
//!
//! Read-modify-write commands serialize on a striped lock table: every writer to a key holds
//! the stripe of that key, chosen by hash, for the duration of its read and write. Locks
//! are taken in stripe order, so multi-key commands cannot deadlock.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use cask_engine::{Batch, Db, KeyMeta, WriteOptions};

use super::cmd::{CmdError, CmdResult};

/// Namespace byte of top-level keys.
pub const NS_KEY: u8 = b'k';
/// Type tag of strings.
pub const TYPE_STRING: u8 = 0;
/// Number of logical databases (SELECT 0..16).
pub const DATABASES: usize = 16;
const STRIPES: usize = 1024;

/// The engine key for `key` in database `db`.
pub fn engine_key(db: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(NS_KEY);
    k.push(db);
    k.extend_from_slice(key);
    k
}

/// The prefix shared by every key of database `db`.
pub fn db_prefix(db: u8) -> [u8; 2] {
    [NS_KEY, db]
}

/// A stored value: its type tag and payload.
#[derive(Debug, Clone)]
pub struct Value {
    /// Type tag.
    pub tag: u8,
    /// Payload after the tag.
    pub data: Bytes,
}

impl Value {
    /// Redis's name of the type.
    pub fn type_name(&self) -> &'static str {
        match self.tag {
            TYPE_STRING => "string",
            _ => "none",
        }
    }
}

fn encode(tag: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(tag);
    v.extend_from_slice(data);
    v
}

fn decode(raw: Vec<u8>) -> Value {
    let bytes = Bytes::from(raw);
    match bytes.first() {
        Some(&tag) => Value {
            tag,
            data: bytes.slice(1..),
        },
        None => Value {
            tag: TYPE_STRING,
            data: Bytes::new(),
        },
    }
}

/// The server's view of the engine: typed values per database, with key locks.
#[derive(Debug)]
pub struct Store {
    /// The engine handle; writes return before their fsync (see `Db::deferring`).
    pub db: Db,
    stripes: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Guards returned by [`Store::lock`]; the keys stay locked while it lives.
pub struct KeyLocks<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Store {
    /// Wraps a database handle.
    pub fn new(db: Db) -> Store {
        Store {
            db: db.deferring(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn stripe(&self, db: u8, key: &[u8]) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write_u8(db);
        h.write(key);
        (h.finish() as usize) % STRIPES
    }

    /// Locks the stripes of `keys` in database `db` (in stripe order, without duplicates).
    pub fn lock<'a>(&'a self, db: u8, keys: &[&[u8]]) -> KeyLocks<'a> {
        let mut ids: Vec<usize> = keys.iter().map(|k| self.stripe(db, k)).collect();
        ids.sort_unstable();
        ids.dedup();
        KeyLocks {
            _guards: ids
                .into_iter()
                .map(|i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        }
    }

    /// Locks keys living in two databases (MOVE, COPY ... DB), in stripe order.
    pub fn lock2<'a>(&'a self, a: (u8, &[u8]), b: (u8, &[u8])) -> KeyLocks<'a> {
        let mut ids = vec![self.stripe(a.0, a.1), self.stripe(b.0, b.1)];
        ids.sort_unstable();
        ids.dedup();
        KeyLocks {
            _guards: ids
                .into_iter()
                .map(|i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        }
    }

    /// Reads a value of any type.
    ///
    /// # Errors
    /// Engine errors.
    pub fn get(&self, db: u8, key: &[u8]) -> CmdResult<Option<Value>> {
        Ok(self.db.get(&engine_key(db, key))?.map(decode))
    }

    /// Reads a string; `WRONGTYPE` for other types.
    ///
    /// # Errors
    /// Engine errors, `WRONGTYPE`.
    pub fn get_string(&self, db: u8, key: &[u8]) -> CmdResult<Option<Bytes>> {
        match self.get(db, key)? {
            None => Ok(None),
            Some(v) if v.tag == TYPE_STRING => Ok(Some(v.data)),
            Some(_) => Err(CmdError::wrong_type()),
        }
    }

    /// A key's version, expiry and size, without I/O.
    ///
    /// # Errors
    /// Engine errors.
    pub fn meta(&self, db: u8, key: &[u8]) -> CmdResult<Option<KeyMeta>> {
        Ok(self.db.metadata(&engine_key(db, key))?)
    }

    /// Writes a value of type `tag` with an absolute expiry (ms) or none.
    ///
    /// # Errors
    /// Engine errors (too large, poisoned, I/O).
    pub fn put(
        &self,
        db: u8,
        key: &[u8],
        tag: u8,
        data: &[u8],
        expire_at: Option<u64>,
    ) -> CmdResult<u64> {
        Ok(self.db.set_with(
            &engine_key(db, key),
            &encode(tag, data),
            WriteOptions { expire_at },
        )?)
    }

    /// Writes a string, keeping no TTL unless `expire_at` is given.
    ///
    /// # Errors
    /// As [`Store::put`].
    pub fn put_string(
        &self,
        db: u8,
        key: &[u8],
        data: &[u8],
        expire_at: Option<u64>,
    ) -> CmdResult<u64> {
        self.put(db, key, TYPE_STRING, data, expire_at)
    }

    /// Deletes a key; returns whether it existed.
    ///
    /// # Errors
    /// Engine errors.
    pub fn delete(&self, db: u8, key: &[u8]) -> CmdResult<bool> {
        Ok(self.db.delete(&engine_key(db, key))?)
    }

    /// Adds a put of a typed value to a batch.
    pub fn batch_put(
        batch: &mut Batch,
        db: u8,
        key: &[u8],
        tag: u8,
        data: &[u8],
        expire_at: Option<u64>,
    ) {
        batch.put_with_expiry(engine_key(db, key), encode(tag, data), expire_at);
    }

    /// Writes a batch atomically; returns its version.
    ///
    /// # Errors
    /// Engine errors.
    pub fn write(&self, batch: &Batch) -> CmdResult<u64> {
        Ok(self.db.write(batch)?)
    }

    /// Every live user key of database `db`, in order, starting after `after` if given.
    pub fn keys_from(
        &self,
        db: u8,
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = CmdResult<Vec<u8>>> + '_ {
        use std::ops::Bound;
        let prefix = db_prefix(db);
        let lo = match after {
            Some(k) => Bound::Excluded(engine_key(db, k)),
            None => Bound::Included(prefix.to_vec()),
        };
        let hi = Bound::Excluded(vec![NS_KEY, db + 1]);
        self.db
            .keys((lo, hi))
            .map(|r| r.map(|k| k[2..].to_vec()).map_err(CmdError::from))
    }

    /// The number of live keys in database `db`.
    ///
    /// # Errors
    /// Engine errors.
    pub fn dbsize(&self, db: u8) -> CmdResult<u64> {
        let mut n = 0;
        for k in self.keys_from(db, None) {
            k?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes every key of database `db`, in batches; returns the version of the last one.
    ///
    /// # Errors
    /// Engine errors.
    pub fn flush_db(&self, db: u8) -> CmdResult<u64> {
        let mut last = 0;
        loop {
            let keys: Vec<Vec<u8>> = self
                .keys_from(db, None)
                .take(10_000)
                .collect::<CmdResult<_>>()?;
            if keys.is_empty() {
                return Ok(last);
            }
            let mut batch = Batch::new();
            for k in &keys {
                batch.delete(engine_key(db, k));
            }
            last = self.write(&batch)?;
        }
    }
}
