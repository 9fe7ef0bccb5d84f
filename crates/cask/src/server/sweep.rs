//! The sweeper: deletes the element records of dead collection generations.
//!
//! Deleting, overwriting or expiring a collection writes (or drops) only its metadata
//! record; its elements keep a generation that no metadata names any more, so reads never
//! see them again (see `coll.rs`). They still take index memory and disk space until they
//! are deleted, which this thread does in the background, in batches:
//! - for each key queued by [`Sweeper::sweep_key`] (DEL, overwrite, emptied collection);
//! - for every key with element records, once at start (leftovers of a crash or of a
//!   collection that expired while the server was down) and then every
//!   [`FULL_SWEEP_INTERVAL`] (collections that expired while the server ran).
//!
//! A generation is dead when it is not the live metadata's and not newer than the engine's
//! last version read under the key's lock: a collection created after that check gets a
//! newer generation, so the sweeper never deletes live elements without holding the lock
//! for the whole sweep.

use std::ops::Bound;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cask_engine::{Batch, Db};

use super::coll::{Meta, NS_ELEM, key_elems_prefix, parse_elem_key, prefix_end};
use super::keyspace::{Locks, TYPE_STRING, engine_key};

/// How often every collection is checked for expiry.
pub const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Deletes per engine batch.
const BATCH: usize = 1024;

enum Job {
    Key(u8, Vec<u8>),
    All,
}

/// Handle to the sweeper thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Sweeper {
    tx: Mutex<Sender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Key(db, k) => write!(f, "Key({db}, {} bytes)", k.len()),
            Job::All => write!(f, "All"),
        }
    }
}

impl Sweeper {
    /// Starts the thread; it begins with a full sweep.
    pub fn start(db: Db, locks: Arc<Locks>) -> Sweeper {
        let (tx, rx) = channel();
        let _ = tx.send(Job::All);
        let spawned = std::thread::Builder::new()
            .name("cask-sweeper".into())
            .spawn(move || run(&db, &locks, &rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the sweeper thread; dead elements stay until restart");
        }
        Sweeper { tx: Mutex::new(tx) }
    }

    /// Queues a sweep of the dead elements of `key`.
    pub fn sweep_key(&self, db: u8, key: &[u8]) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send(Job::Key(db, key.to_vec()));
    }
}

fn run(db: &Db, locks: &Locks, rx: &Receiver<Job>) {
    let mut next_full = Instant::now() + FULL_SWEEP_INTERVAL;
    loop {
        let job = match rx.recv_timeout(next_full.saturating_duration_since(Instant::now())) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => Job::All,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let res = match job {
            Job::Key(d, k) => sweep_key(db, locks, d, &k).map(|_| ()),
            Job::All => {
                next_full = Instant::now() + FULL_SWEEP_INTERVAL;
                sweep_all(db, locks)
            }
        };
        if let Err(e) = res {
            // A closed or poisoned engine: nothing more to do until restart.
            tracing::debug!(error = %e, "sweeper stopped");
            return;
        }
    }
}

/// The live generation of `key` (if it is a collection) and the version horizon, read
/// under the key's lock.
fn live_generation(
    db: &Db,
    locks: &Locks,
    d: u8,
    key: &[u8],
) -> cask_engine::Result<(Option<u64>, u64)> {
    let _guard = locks.lock(d, &[key]);
    let horizon = db.last_version();
    let ek = engine_key(d, key);
    let Some(meta) = db.metadata(&ek)? else {
        return Ok((None, horizon));
    };
    let live = match db.get(&ek)? {
        Some(v) if v.first().is_some_and(|&t| t != TYPE_STRING) => {
            Meta::decode(v[0], &v[1..], meta.expire_at)
                .ok()
                .map(|m| m.generation)
        }
        _ => None,
    };
    Ok((live, horizon))
}

/// Deletes the dead elements of one key; returns how many.
fn sweep_key(db: &Db, locks: &Locks, d: u8, key: &[u8]) -> cask_engine::Result<u64> {
    let prefix = key_elems_prefix(d, key);
    let hi = match prefix_end(&prefix) {
        Some(e) => Bound::Excluded(e),
        None => Bound::Unbounded,
    };
    if db
        .keys((Bound::Included(prefix.clone()), hi.clone()))
        .next()
        .is_none()
    {
        return Ok(0);
    }
    let (live, horizon) = live_generation(db, locks, d, key)?;
    let mut deleted = 0;
    let mut lo = Bound::Included(prefix);
    loop {
        let mut batch = Batch::new();
        let mut last = None;
        for k in db.keys((lo.clone(), hi.clone())).take(BATCH) {
            let k = k?;
            if let Some((_, _, generation, _)) = parse_elem_key(&k)
                && Some(generation) != live
                && generation <= horizon
            {
                batch.delete(k.clone());
            }
            last = Some(k);
        }
        let Some(last) = last else { break };
        if !batch.is_empty() {
            deleted += batch.len() as u64;
            db.write(&batch)?;
        }
        lo = Bound::Excluded(last);
    }
    if deleted > 0 {
        tracing::debug!(db = d, deleted, "swept dead collection elements");
    }
    Ok(deleted)
}

/// Sweeps every key that has element records.
fn sweep_all(db: &Db, locks: &Locks) -> cask_engine::Result<()> {
    let mut lo = Bound::Included(vec![NS_ELEM]);
    let hi = Bound::Excluded(vec![NS_ELEM + 1]);
    loop {
        let Some(k) = db.keys((lo.clone(), hi.clone())).next() else {
            return Ok(());
        };
        let k = k?;
        let Some((d, key, _, _)) = parse_elem_key(&k) else {
            // Not an element record (nothing else lives here); step over it.
            lo = Bound::Excluded(k);
            continue;
        };
        sweep_key(db, locks, d, key)?;
        let prefix = key_elems_prefix(d, key);
        match prefix_end(&prefix) {
            Some(end) => lo = Bound::Included(end),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use cask_engine::{Db, Options};

    use super::*;
    use crate::server::coll::{Change, elem_key};
    use crate::server::keyspace::{Store, TYPE_HASH, TYPE_SET};

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        (dir, db)
    }

    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn fill(store: &Store, key: &[u8], tag: u8, prefix: &str, n: usize) {
        let mut c = Change::open(store, 0, key, tag).unwrap();
        for i in 0..n {
            c.insert(format!("{prefix}{i}").as_bytes(), b"v").unwrap();
        }
        c.commit().unwrap();
    }

    fn members(store: &Store, key: &[u8], tag: u8) -> Vec<Vec<u8>> {
        match store.coll(0, key, tag).unwrap() {
            None => vec![],
            Some(c) => c.all(store).map(|r| r.unwrap().0).collect(),
        }
    }

    #[test]
    fn deleted_and_overwritten_collections_are_swept() {
        let (_d, db) = open();
        let store = Store::new(db);
        fill(&store, b"h", TYPE_HASH, "f", 1000);
        fill(&store, b"s", TYPE_SET, "m", 1000);
        assert!(store.delete(0, b"h").unwrap());
        store.put_string(0, b"s", b"now a string", None).unwrap();
        eventually("elements of h and s to be swept", || {
            !store.has_elements(0, b"h").unwrap() && !store.has_elements(0, b"s").unwrap()
        });
        assert_eq!(
            store.get_string(0, b"s").unwrap().unwrap(),
            &b"now a string"[..]
        );
    }

    #[test]
    fn a_recreated_key_never_sees_old_elements() {
        let (_d, db) = open();
        // No sweeping can help here: the check runs before the sweeper could.
        let store = Store::new(db);
        fill(&store, b"k", TYPE_SET, "old", 100);
        store.delete(0, b"k").unwrap();
        fill(&store, b"k", TYPE_SET, "new", 2);
        assert_eq!(
            members(&store, b"k", TYPE_SET),
            vec![b"new0".to_vec(), b"new1".to_vec()]
        );
        assert_eq!(
            store.coll(0, b"k", TYPE_SET).unwrap().unwrap().meta.count,
            2
        );
    }

    #[test]
    fn start_sweeps_leftovers_and_expired_collections_but_not_live_ones() {
        let (_d, db) = open();
        // Leftovers of a crash: elements whose metadata is gone.
        db.set(&elem_key(0, b"orphan", 3, b"f"), b"v").unwrap();
        {
            let store = Store::new(db.clone());
            fill(&store, b"live", TYPE_HASH, "f", 10);
            let mut c = Change::open(&store, 0, b"expiring", TYPE_HASH).unwrap();
            c.insert(b"f", b"v").unwrap();
            c.meta_mut().expire_at = Some(db.now_ms() + 50);
            c.commit().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let store = Store::new(db);
        eventually("start-up sweep", || {
            !store.has_elements(0, b"orphan").unwrap()
                && !store.has_elements(0, b"expiring").unwrap()
        });
        assert_eq!(members(&store, b"live", TYPE_HASH).len(), 10);
    }
}
