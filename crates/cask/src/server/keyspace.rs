//! How Redis keys and values are laid out in the engine.
//!
//! Engine key of a Redis key: `b'k' | db | key` (namespace byte, database index 0..16, the
//! user key's bytes). Engine value: a type tag byte ([`TYPE_STRING`] = 0, ...) followed by
//! the payload. A key's TTL is the engine record's `expire_at`, so expired keys vanish from
//! reads and scans without any work from the server. Hashes, lists, sets and sorted sets
//! store a metadata payload here and one record per element elsewhere (see `coll.rs`).
//!
//! Read-modify-write commands serialize on a striped lock table: every writer to a key holds
//! the stripe of that key, chosen by hash, for the duration of its read and write. Locks
//! are taken in stripe order, so multi-key commands cannot deadlock.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use cask_engine::{Batch, Db, KeyMeta, WriteOptions};

use super::blocking::Ready;
use super::cmd::{CmdError, CmdResult};
use super::coll::{NS_ELEM, key_elems_prefix};
use super::sweep::Sweeper;

/// Namespace byte of top-level keys.
pub const NS_KEY: u8 = b'k';
/// Type tag of strings.
pub const TYPE_STRING: u8 = 0;
/// Type tag of hashes.
pub const TYPE_HASH: u8 = 1;
/// Type tag of lists.
pub const TYPE_LIST: u8 = 2;
/// Type tag of sets.
pub const TYPE_SET: u8 = 3;
/// Type tag of sorted sets.
pub const TYPE_ZSET: u8 = 4;
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
        type_name(self.tag)
    }
}

/// Redis's name of the type with tag `tag`.
pub fn type_name(tag: u8) -> &'static str {
    match tag {
        TYPE_STRING => "string",
        TYPE_HASH => "hash",
        TYPE_LIST => "list",
        TYPE_SET => "set",
        TYPE_ZSET => "zset",
        _ => "none",
    }
}

impl Value {
    /// Whether this is a collection (its payload is metadata, its elements live elsewhere).
    pub fn is_collection(&self) -> bool {
        self.tag != TYPE_STRING
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
    locks: Arc<Locks>,
    sweeper: Sweeper,
    /// Clients blocked on keys (BLPOP and friends), woken when a collection is written.
    pub ready: Ready,
}

/// The stripe lock table.
#[derive(Debug)]
pub struct Locks {
    stripes: Vec<Mutex<()>>,
    gates: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Locks {
    fn new() -> Locks {
        Locks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            gates: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn stripe(&self, db: u8, key: &[u8]) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write_u8(db);
        h.write(key);
        (h.finish() as usize) % STRIPES
    }

    fn take(&self, mut ids: Vec<usize>) -> KeyLocks<'_> {
        ids.sort_unstable();
        ids.dedup();
        KeyLocks {
            _guards: ids
                .into_iter()
                .map(|i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        }
    }

    /// Locks the stripes of `keys` in database `db` (in stripe order, without duplicates).
    pub fn lock<'a>(&'a self, db: u8, keys: &[&[u8]]) -> KeyLocks<'a> {
        self.take(keys.iter().map(|k| self.stripe(db, k)).collect())
    }
}

/// Guards returned by [`Store::lock`]; the keys stay locked while it lives.
pub struct KeyLocks<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Store {
    /// Wraps a database handle.
    ///
    /// Starts the sweeper thread, which deletes the elements of deleted, overwritten and
    /// expired collections in the background (and once at start, for a crash's leftovers).
    pub fn new(db: Db) -> Store {
        // Before the sweeper starts: it knows only the current element layout.
        if let Err(e) = super::coll::migrate_v0_elements(&db) {
            tracing::error!(error = %e, "moving element records to the current layout failed");
        }
        let db = db.deferring();
        let locks = Arc::new(Locks::new());
        let sweeper = Sweeper::start(db.clone(), locks.clone());
        Store {
            db,
            locks,
            sweeper,
            ready: Ready::default(),
        }
    }

    /// Locks the stripes of `keys` in database `db` (in stripe order, without duplicates).
    pub fn lock<'a>(&'a self, db: u8, keys: &[&[u8]]) -> KeyLocks<'a> {
        self.locks.lock(db, keys)
    }

    /// The stripe of `key` in `db` (what [`Store::gate`] takes).
    pub fn stripe_of(&self, db: u8, key: &[u8]) -> usize {
        self.locks.stripe(db, key)
    }

    /// Waits, without blocking the thread, until no other connection is running commands
    /// on stripe `stripe`; while the returned guard lives, other connections' commands on
    /// it wait their turn the same way (the stripe's lock is still taken by each command).
    pub async fn gate(&self, stripe: usize) -> tokio::sync::MutexGuard<'_, ()> {
        let gate = &self.locks.gates[stripe];
        match gate.try_lock() {
            Ok(g) => g,
            Err(_) => gate.lock().await,
        }
    }

    /// Locks keys living in two databases (MOVE, COPY ... DB), in stripe order.
    pub fn lock2<'a>(&'a self, a: (u8, &[u8]), b: (u8, &[u8])) -> KeyLocks<'a> {
        self.locks.take(vec![
            self.locks.stripe(a.0, a.1),
            self.locks.stripe(b.0, b.1),
        ])
    }

    /// Locks keys given with their databases, in stripe order.
    pub fn lock_many<'a>(&'a self, keys: &[(u8, &[u8])]) -> KeyLocks<'a> {
        self.locks
            .take(keys.iter().map(|(d, k)| self.locks.stripe(*d, k)).collect())
    }

    /// Queues a background delete of the elements `key` may have left behind (it was
    /// deleted, overwritten or expired). Cheap; the sweeper checks what is really there.
    pub fn sweep_later(&self, db: u8, key: &[u8]) {
        self.sweeper.sweep_key(db, key);
    }

    /// Reads a value and its expiry.
    ///
    /// # Errors
    /// Engine errors.
    pub fn get_with_expiry(&self, db: u8, key: &[u8]) -> CmdResult<Option<(Value, Option<u64>)>> {
        let ek = engine_key(db, key);
        let Some(meta) = self.db.metadata(&ek)? else {
            return Ok(None);
        };
        Ok(self.db.get(&ek)?.map(|v| (decode(v), meta.expire_at)))
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
        let sweep = tag == TYPE_STRING && self.may_hold_collection(db, key)?;
        let v = self.db.set_with(
            &engine_key(db, key),
            &encode(tag, data),
            WriteOptions { expire_at },
        )?;
        if sweep {
            self.sweep_later(db, key);
        }
        Ok(v)
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
        let sweep = self.may_hold_collection(db, key)?;
        let existed = self.db.delete(&engine_key(db, key))?;
        if sweep {
            self.sweep_later(db, key);
        }
        Ok(existed)
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

    /// Writes a batch atomically; returns its version. A batch that deletes or overwrites
    /// top-level keys must call [`Store::sweep_later`] for those that may have held
    /// collections (see [`Store::may_hold_collection`]), or use [`Store::write_keys`].
    ///
    /// # Errors
    /// Engine errors.
    pub fn write(&self, batch: &Batch) -> CmdResult<u64> {
        Ok(self.db.write(batch)?)
    }

    /// Writes a batch that deletes or replaces the top-level keys `replaced` of database
    /// `db`, and sweeps the elements those keys may have held.
    ///
    /// # Errors
    /// Engine errors.
    pub fn write_keys(&self, batch: &Batch, replaced: &[(u8, &[u8])]) -> CmdResult<u64> {
        let mut sweep = Vec::new();
        for &(db, k) in replaced {
            if self.may_hold_collection(db, k)? {
                sweep.push((db, k));
            }
        }
        let v = self.db.write(batch)?;
        for (db, k) in sweep {
            self.sweep_later(db, k);
        }
        Ok(v)
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
        Ok(self.db.count((
            std::ops::Bound::Included(db_prefix(db).to_vec()),
            std::ops::Bound::Excluded(vec![NS_KEY, db + 1]),
        ))?)
    }

    /// Deletes every key of database `db`, in batches, then the elements of its
    /// collections; returns the version of the last batch.
    ///
    /// # Errors
    /// Engine errors.
    pub fn flush_db(&self, db: u8) -> CmdResult<u64> {
        let mut last = 0;
        for ns in [NS_KEY, NS_ELEM] {
            loop {
                let range = (
                    std::ops::Bound::Included(vec![ns, db]),
                    std::ops::Bound::Excluded(vec![ns, db + 1]),
                );
                let keys: Vec<Vec<u8>> =
                    self.db.keys(range).take(10_000).collect::<Result<_, _>>()?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = Batch::new();
                for k in keys {
                    batch.delete(k);
                }
                last = self.write(&batch)?;
            }
        }
        Ok(last)
    }

    /// Whether any element record of `key` exists, of any generation (index only).
    ///
    /// # Errors
    /// Engine errors.
    pub fn has_elements(&self, db: u8, key: &[u8]) -> CmdResult<bool> {
        let prefix = key_elems_prefix(db, key);
        let hi = match super::coll::prefix_end(&prefix) {
            Some(e) => std::ops::Bound::Excluded(e),
            None => std::ops::Bound::Unbounded,
        };
        match self.db.keys((std::ops::Bound::Included(prefix), hi)).next() {
            Some(r) => r.map(|_| true).map_err(CmdError::from),
            None => Ok(false),
        }
    }
}
