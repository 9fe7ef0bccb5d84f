//! The database handle: opening and recovery, the write path with group commit, reads.
//!
//! Concurrency: one writer mutex serialises appends (sequence numbers are assigned under
//! it); the keydir sits behind a read-write lock held only for in-memory lookups and
//! updates, never across I/O. Readers take the read lock, copy a location, drop the lock and
//! read the value with a positioned read, so they never wait for an fsync or for a writer's
//! I/O. Durability waits happen after the writer mutex is released: the first waiter
//! becomes the leader and fsyncs for everyone whose record was written before it started
//! (group commit).

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use tracing::{debug, warn};

use crate::batch::{Batch, BatchOp};
use crate::cache::ValueCache;
use crate::error::{Error, Result};
use crate::hint::{self, HintEntry, HintWriter};
use crate::keydir::{Entry, IndexKey, KeyDir};
use crate::options::{Options, SyncPolicy, WriteOptions};
use crate::record::{self, HEADER_LEN, Kind, MARK_LEN};
use crate::scan::{Keys, Scan};
use crate::segment::{
    self, FileName, SEGMENT_HEADER_LEN, Scanner, Segment, commit_count, hint_path, segment_path,
};
use crate::stats::{SYNC_LATENCY_BOUNDS_US, SegmentStats, Stats};
use crate::vfs::LockGuard;

/// The largest segment size: record offsets are stored in 32 bits, and a segment may
/// exceed its size by one record.
pub const MAX_SEGMENT_SIZE: u64 = 2 << 30;
/// The largest configurable value size (keeps every offset within 32 bits).
pub const MAX_VALUE_SIZE: u64 = 1 << 30;

/// An open database. Cheap to clone; all clones share one engine. `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    /// Writes through this handle return before their fsync; see [`Db::deferring`].
    defer_sync: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Durable {
    /// Every record with a sequence number at or below this is on stable storage.
    pub seq: u64,
    pub syncing: bool,
    pub error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub active: Option<Arc<Segment>>,
    /// Sealed segments whose tail may not be on stable storage yet; the next sync covers them.
    pub sealing: Vec<Arc<Segment>>,
    pub next_seq: u64,
    buf: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub compactions: AtomicU64,
    pub reclaimed: AtomicU64,
    pub last_compaction_ms: AtomicU64,
    pub syncs: AtomicU64,
    pub writes: AtomicU64,
    /// Time spent in the write path's fsyncs, in nanoseconds.
    pub sync_nanos: AtomicU64,
    /// fsyncs by duration: one counter per bound of [`SYNC_LATENCY_BOUNDS_US`], then one
    /// for longer ones.
    pub sync_buckets: [AtomicU64; SYNC_LATENCY_BOUNDS_US.len() + 1],
}

impl Counters {
    /// Counts one fsync of the write path and its duration.
    fn record_sync(&self, took: Duration) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sync_nanos.fetch_add(nanos, Ordering::Relaxed);
        let us = nanos / 1000;
        let i = SYNC_LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(SYNC_LATENCY_BOUNDS_US.len());
        self.sync_buckets[i].fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: Options,
    pub keydir: RwLock<KeyDir>,
    pub segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    pub writer: Mutex<Writer>,
    pub next_segment_id: AtomicU32,
    /// The highest sequence number written, readable without the writer lock.
    last_seq: AtomicU64,
    /// The keydir's change count ([`KeyDir::changes`]), readable without its lock.
    pub keydir_changes: Arc<AtomicU64>,
    durable: Mutex<Durable>,
    durable_cv: Condvar,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    closed: AtomicBool,
    pub compaction_lock: Mutex<()>,
    /// Recently written and read values.
    cache: ValueCache,
    pub counters: Counters,
    /// Sealed segments still waiting for a hint file.
    pub hints_pending: Mutex<Vec<u32>>,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Shared with the background threads, which wait on it holding only a `Weak<Inner>`.
    shutdown: Arc<Mutex<bool>>,
    shutdown_cv: Arc<Condvar>,
}

/// One operation handed to the write path.
pub(crate) struct Op<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expire: u64,
    pub delete: bool,
}

impl Db {
    /// Opens (or creates) the database in `dir`, recovering from whatever a crash left.
    ///
    /// # Errors
    /// `Locked` if another handle holds the directory; `Corruption` for damaged records
    /// anywhere but the torn tail of the last written segment; `Format` for files of an
    /// unknown version; I/O errors.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        let vfs = opts.vfs.clone();
        if opts.segment_size < SEGMENT_HEADER_LEN + HEADER_LEN as u64
            || opts.segment_size > MAX_SEGMENT_SIZE
        {
            return Err(Error::InvalidArgument(format!(
                "segment_size must be between {} and {MAX_SEGMENT_SIZE} bytes",
                SEGMENT_HEADER_LEN + HEADER_LEN as u64
            )));
        }
        if opts.max_value_size as u64 > MAX_VALUE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "max_value_size may be at most {MAX_VALUE_SIZE} bytes"
            )));
        }
        if !opts.create_if_missing && !dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} does not exist",
                dir.display()
            )));
        }
        vfs.create_dir_all(&dir)?;
        let lock = match vfs.lock(&dir.join("LOCK")) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Locked { dir });
            }
            Err(e) => return Err(e.into()),
        };
        let recovered = recover(&dir, &opts)?;
        let keydir_changes = recovered.keydir.changes.clone();
        let inner = Arc::new(Inner {
            cache: ValueCache::new(opts.value_cache_slots, opts.value_cache_max_value),
            dir,
            keydir: RwLock::new(recovered.keydir),
            segments: RwLock::new(recovered.segments),
            writer: Mutex::new(Writer {
                active: recovered.active,
                sealing: Vec::new(),
                next_seq: recovered.max_seq + 1,
                buf: Vec::new(),
            }),
            next_segment_id: AtomicU32::new(recovered.next_id),
            last_seq: AtomicU64::new(recovered.max_seq),
            keydir_changes,
            durable: Mutex::new(Durable {
                seq: recovered.max_seq,
                ..Durable::default()
            }),
            durable_cv: Condvar::new(),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            closed: AtomicBool::new(false),
            compaction_lock: Mutex::new(()),
            counters: Counters::default(),
            hints_pending: Mutex::new(recovered.needs_hint),
            lock: Mutex::new(Some(lock)),
            background: Mutex::new(Vec::new()),
            shutdown: Arc::new(Mutex::new(false)),
            shutdown_cv: Arc::new(Condvar::new()),
            opts,
        });
        let db = Db {
            inner,
            defer_sync: false,
        };
        if db.inner.opts.background_threads {
            db.start_background();
        }
        Ok(db)
    }

    /// A handle to the same database whose writes return as soon as they are appended,
    /// without waiting for the fsync that [`SyncPolicy::Always`] requires. The caller must
    /// call [`Db::wait_durable`] with the returned version before acknowledging the write.
    /// Servers use this to let a whole pipeline share one fsync.
    pub fn deferring(&self) -> Db {
        Db {
            inner: self.inner.clone(),
            defer_sync: true,
        }
    }

    /// Waits until every write up to `version` is durable under the sync policy: under
    /// `Always` it fsyncs (sharing the fsync with concurrent waiters); under the other
    /// policies it returns at once.
    ///
    /// # Errors
    /// `Poisoned` if the fsync failed.
    pub fn wait_durable(&self, version: u64) -> Result<()> {
        if self.inner.opts.sync == SyncPolicy::Always {
            self.inner.wait_durable(version)
        } else {
            Ok(())
        }
    }

    /// The highest version (sequence number) written so far.
    pub fn last_version(&self) -> u64 {
        // An atomic, so that callers never wait behind another writer's I/O.
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// The current time according to the database's clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.inner.opts.clock.now_ms()
    }

    /// Reads a key's value; `None` if absent or expired.
    ///
    /// # Errors
    /// `Corruption` if the record fails its checksum; I/O errors.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.read_live(key)?.map(|(v, _)| v))
    }

    /// Reads a key's value and version (its record's sequence number).
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get_versioned(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        Ok(self.inner.read_live(key)?.map(|(v, e)| (v, e.seq())))
    }

    /// A key's version and expiry without reading its value; `None` if absent or expired.
    ///
    /// # Errors
    /// `Closed` after close.
    pub fn metadata(&self, key: &[u8]) -> Result<Option<KeyMeta>> {
        self.inner.check_open()?;
        let now = self.now_ms();
        Ok(self
            .inner
            .keydir
            .read()
            .map
            .get(key)
            .filter(|e| !e.expired(now))
            .map(|e| KeyMeta {
                version: e.seq(),
                expire_at: e.expire_at(),
                size: e.record_len() as u64,
            }))
    }

    /// Whether a live key exists.
    ///
    /// # Errors
    /// `Closed` after close.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.metadata(key)?.is_some())
    }

    /// Sets a key; returns its new version.
    ///
    /// # Errors
    /// `TooLarge` beyond the limits, `Poisoned` after an earlier I/O failure, I/O errors.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        self.set_with(key, value, WriteOptions::default())
    }

    /// Sets a key with per-write options (expiry); returns its new version.
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn set_with(&self, key: &[u8], value: &[u8], opts: WriteOptions) -> Result<u64> {
        let op = Op {
            key,
            value,
            expire: stored_expiry(opts.expire_at),
            delete: false,
        };
        self.inner
            .write_ops(self.defer_sync, &[op], false, |_| Ok(true))
            .map(|(seq, _)| seq)
    }

    /// Deletes a key; returns whether it existed (and was not expired).
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let now = self.now_ms();
        let op = Op {
            key,
            value: &[],
            expire: 0,
            delete: true,
        };
        let (_, wrote) = self.inner.write_ops(self.defer_sync, &[op], false, |kd| {
            Ok(kd.map.get(key).is_some_and(|e| !e.expired(now)))
        })?;
        Ok(wrote)
    }

    /// Sets `key` only if its current version is `expected` (`None`: only if absent or
    /// expired). Returns the new version.
    ///
    /// # Errors
    /// `Conflict` with the actual version when it differs; otherwise as [`Db::set`].
    pub fn set_if(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        opts: WriteOptions,
    ) -> Result<u64> {
        let now = self.now_ms();
        let op = Op {
            key,
            value,
            expire: stored_expiry(opts.expire_at),
            delete: false,
        };
        self.inner
            .write_ops(self.defer_sync, &[op], false, |kd| {
                check_version(kd, key, expected, now).map(|()| true)
            })
            .map(|(seq, _)| seq)
    }

    /// Deletes `key` only if its current version is `expected`.
    ///
    /// # Errors
    /// `Conflict` when the version differs (or the key is absent); otherwise as [`Db::set`].
    pub fn delete_if(&self, key: &[u8], expected: u64) -> Result<()> {
        let now = self.now_ms();
        let op = Op {
            key,
            value: &[],
            expire: 0,
            delete: true,
        };
        self.inner.write_ops(self.defer_sync, &[op], false, |kd| {
            check_version(kd, key, Some(expected), now).map(|()| true)
        })?;
        Ok(())
    }

    /// Applies a batch atomically; returns the version shared by all its records.
    ///
    /// # Errors
    /// As [`Db::set`]; nothing is applied on error.
    pub fn write(&self, batch: &Batch) -> Result<u64> {
        self.write_if(batch, |_| Ok(()))
    }

    /// Applies a batch atomically if `check` passes, evaluated under the write lock against
    /// the current versions (`check` receives a lookup function from key to version).
    ///
    /// # Errors
    /// Whatever `check` returns, or as [`Db::write`].
    pub fn write_if(
        &self,
        batch: &Batch,
        check: impl FnOnce(&dyn Fn(&[u8]) -> Option<u64>) -> Result<()>,
    ) -> Result<u64> {
        let ops: Vec<Op<'_>> = batch
            .ops
            .iter()
            .map(|op| match op {
                BatchOp::Put {
                    key,
                    value,
                    expire_at,
                } => Op {
                    key,
                    value,
                    expire: stored_expiry(*expire_at),
                    delete: false,
                },
                BatchOp::Delete { key } => Op {
                    key,
                    value: &[],
                    expire: 0,
                    delete: true,
                },
            })
            .collect();
        let now = self.now_ms();
        self.inner
            .write_ops(self.defer_sync, &ops, true, |kd| {
                let lookup = |k: &[u8]| kd.map.get(k).filter(|e| !e.expired(now)).map(|e| e.seq());
                check(&lookup).map(|()| true)
            })
            .map(|(seq, _)| seq)
    }

    /// An ordered, lazy scan of live keys and values in `range`.
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Scan {
        Scan::new(
            self.clone(),
            range.start_bound().cloned(),
            range.end_bound().cloned(),
        )
    }

    /// An ordered, lazy scan of the live keys starting with `prefix`.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Scan {
        let (lo, hi) = prefix_range(prefix);
        Scan::new(self.clone(), lo, hi)
    }

    /// An ordered, lazy listing of live keys in `range` (no value reads).
    pub fn keys<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Keys {
        self.scan(range).into_keys()
    }

    /// The number of live keys in `range`, counted from the index without I/O or copies.
    /// Not a snapshot: keys written or deleted while it runs may or may not be counted.
    ///
    /// # Errors
    /// `Closed` after [`Db::close`].
    pub fn count<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<u64> {
        crate::scan::count(
            self,
            range.start_bound().cloned(),
            range.end_bound().cloned(),
        )
    }

    /// Forces every acknowledged write to stable storage.
    ///
    /// # Errors
    /// `Poisoned` if this or an earlier fsync failed.
    pub fn sync(&self) -> Result<()> {
        self.inner.check_open()?;
        let target = self.inner.writer.lock().next_seq - 1;
        self.inner.wait_durable(target)
    }

    /// Statistics: keys, segments with live and dead bytes, sequence number, sync policy.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Syncs, stops background work and releases the directory lock. Other clones of this
    /// handle then fail with `Closed`. Closing twice is harmless.
    ///
    /// # Errors
    /// The final sync's error, if any.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let res = if self.inner.poisoned.load(Ordering::SeqCst) {
            Ok(())
        } else {
            self.sync().and_then(|()| self.inner.mark_durable())
        };
        self.inner.stop_background();
        // A compaction running in another thread still renames and deletes files: let it
        // finish (later ones see `closed` once they get this lock) before unlocking.
        let compaction = self.inner.compaction_lock.lock();
        self.inner.closed.store(true, Ordering::SeqCst);
        // Let any in-progress writer finish before releasing the lock.
        drop(self.inner.writer.lock());
        self.inner.lock.lock().take();
        drop(compaction);
        res
    }

    /// Whether an I/O failure has made the database refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::SeqCst)
    }

    fn start_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut handles = self.inner.background.lock();
        if let SyncPolicy::Interval(every) = self.inner.opts.sync {
            let w = weak.clone();
            handles.push(spawn("cask-sync", move || {
                background_loop(w, every, |inner| {
                    let target = inner.writer.lock().next_seq - 1;
                    if let Err(e) = inner.wait_durable(target) {
                        debug!("interval sync: {e}");
                    }
                })
            }));
        }
        let every = self.inner.opts.compaction_interval;
        handles.push(spawn("cask-maintenance", move || {
            background_loop(weak, every, |inner| {
                let db = Db {
                    inner,
                    defer_sync: false,
                };
                db.maintenance();
            })
        }));
    }

    /// One round of background work: hint files for sealed segments, then compaction if
    /// segments have become wasteful.
    pub(crate) fn maintenance(&self) {
        if self.inner.closed.load(Ordering::SeqCst) || self.is_poisoned() {
            return;
        }
        if let Err(e) = self.write_pending_hints() {
            warn!("writing hint files: {e}");
        }
        if self.inner.opts.background_compaction
            && let Err(e) = self.compact_if_needed()
        {
            warn!("background compaction: {e}");
        }
    }

    /// Writes hint files for sealed segments that lack one.
    ///
    /// # Errors
    /// I/O errors or corruption met while scanning a segment.
    pub fn write_pending_hints(&self) -> Result<()> {
        if !self.inner.opts.use_hint_files {
            return Ok(());
        }
        loop {
            let Some(id) = self.inner.hints_pending.lock().pop() else {
                return Ok(());
            };
            let seg = self.inner.segments.read().get(&id).cloned();
            let Some(seg) = seg else { continue };
            // A failed fsync is never retried as if it could succeed: it poisons.
            if let Err(e) = seg.file.sync_data() {
                self.inner.poison("fsync of a sealed segment failed", &e);
                self.inner.hints_pending.lock().push(id);
                return Err(e.into());
            }
            if let Err(e) = write_hint_for(&self.inner.dir, &self.inner.opts, &seg) {
                self.inner.hints_pending.lock().push(id);
                return Err(e);
            }
        }
    }
}

/// A key's version and expiry, read from the index without I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMeta {
    /// The key's version.
    pub version: u64,
    /// Expiry in ms since the Unix epoch.
    pub expire_at: Option<u64>,
    /// Size of its record on disk.
    pub size: u64,
}

/// The expiry as stored: 0 means "never", so an expiry at the epoch itself (already past)
/// is stored as 1 ms after it, equally past, instead of becoming immortal.
fn stored_expiry(at: Option<u64>) -> u64 {
    at.map_or(0, |t| t.max(1))
}

fn check_version(kd: &KeyDir, key: &[u8], expected: Option<u64>, now: u64) -> Result<()> {
    let actual = kd.map.get(key).filter(|e| !e.expired(now)).map(|e| e.seq());
    if actual == expected {
        Ok(())
    } else {
        Err(Error::Conflict { expected, actual })
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawning a background thread")
}

fn background_loop(weak: Weak<Inner>, every: Duration, mut work: impl FnMut(Arc<Inner>)) {
    // Sleep holding only the shutdown signal: a strong reference held while waiting would
    // keep the engine, and its directory lock, alive for up to `every` after the last
    // handle is dropped.
    let Some((shutdown, cv)) = weak
        .upgrade()
        .map(|i| (i.shutdown.clone(), i.shutdown_cv.clone()))
    else {
        return;
    };
    loop {
        {
            let mut stop = shutdown.lock();
            if !*stop {
                cv.wait_for(&mut stop, every);
            }
            if *stop {
                return;
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        work(inner);
    }
}

/// The range of keys starting with `prefix`.
pub(crate) fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lo = Bound::Included(prefix.to_vec());
    let mut hi = prefix.to_vec();
    while let Some(last) = hi.pop() {
        if last < 0xff {
            hi.push(last + 1);
            return (lo, Bound::Excluded(hi));
        }
    }
    (lo, Bound::Unbounded)
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.poisoned.load(Ordering::SeqCst) {
            let reason = self.poison_reason.lock().clone().unwrap_or_default();
            return Err(Error::Poisoned(reason));
        }
        Ok(())
    }

    /// Marks the database read-only after an I/O failure.
    pub(crate) fn poison(&self, what: &str, e: &std::io::Error) {
        let reason = format!("{what}: {e}");
        warn!("poisoning database after {reason}");
        self.poison_reason.lock().get_or_insert(reason.clone());
        self.poisoned.store(true, Ordering::SeqCst);
        let mut d = self.durable.lock();
        d.error.get_or_insert(reason);
        self.durable_cv.notify_all();
    }

    /// Waits until every record up to `seq` is durable, fsyncing as the group's leader if no
    /// one else is.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut d = self.durable.lock();
        loop {
            if d.seq >= seq {
                return Ok(());
            }
            if let Some(e) = &d.error {
                return Err(Error::Poisoned(e.clone()));
            }
            if d.syncing {
                self.durable_cv.wait(&mut d);
                continue;
            }
            d.syncing = true;
            drop(d);
            let res = self.sync_written();
            if let Err(e) = &res {
                self.poison("fsync failed", e);
            }
            d = self.durable.lock();
            d.syncing = false;
            if let Ok(target) = res {
                d.seq = d.seq.max(target);
            }
            self.durable_cv.notify_all();
        }
    }

    /// fsyncs every segment that may hold unsynced records (sealed-but-unsynced ones, then
    /// the active one) and returns the sequence number now durable. Takes the writer lock
    /// only to snapshot what to sync.
    fn sync_written(&self) -> std::io::Result<u64> {
        let (target, files, sealed) = {
            let w = self.writer.lock();
            let files: Vec<(Arc<Segment>, u64)> = w
                .sealing
                .iter()
                .chain(w.active.iter())
                .map(|s| (s.clone(), s.len.load(Ordering::Acquire)))
                .collect();
            let sealed: Vec<u32> = w.sealing.iter().map(|s| s.id).collect();
            (w.next_seq - 1, files, sealed)
        };
        for (seg, len) in &files {
            let started = std::time::Instant::now();
            seg.file.sync_data()?;
            self.counters.record_sync(started.elapsed());
            // Everything written before the snapshot is durable now: the next append into
            // this segment records that in a durability mark.
            seg.synced.fetch_max(*len, Ordering::AcqRel);
        }
        // Only segments already sealed at the snapshot are now wholly on stable storage. The
        // active one may have taken more appends and been sealed while we synced: it stays
        // queued for the next sync, which must cover those appends.
        let synced = sealed;
        self.writer
            .lock()
            .sealing
            .retain(|s| !synced.contains(&s.id));
        Ok(target)
    }

    /// The write path. `precheck` runs under the writer lock against the keydir; `Ok(false)`
    /// means "nothing to write" and returns without appending.
    fn write_ops(
        &self,
        defer_sync: bool,
        ops: &[Op<'_>],
        batch: bool,
        precheck: impl FnOnce(&KeyDir) -> Result<bool>,
    ) -> Result<(u64, bool)> {
        self.check_writable()?;
        let mut total = 0u64;
        for op in ops {
            if op.key.len() > self.opts.max_key_size {
                return Err(Error::TooLarge {
                    what: "key",
                    size: op.key.len() as u64,
                    limit: self.opts.max_key_size as u64,
                });
            }
            if op.value.len() > self.opts.max_value_size {
                return Err(Error::TooLarge {
                    what: "value",
                    size: op.value.len() as u64,
                    limit: self.opts.max_value_size as u64,
                });
            }
            total += record::encoded_len(op.key.len(), op.value.len());
        }
        if batch && total > self.opts.max_batch_size {
            return Err(Error::TooLarge {
                what: "batch",
                size: total,
                limit: self.opts.max_batch_size,
            });
        }
        let mut w = self.writer.lock();
        self.check_writable()?;
        if !precheck(&self.keydir.read())? {
            let seq = w.next_seq - 1;
            return Ok((seq, false));
        }
        if ops.is_empty() {
            return Ok((w.next_seq - 1, false));
        }
        let seq = self.append_locked(&mut w, ops, batch)?;
        drop(w);
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        if self.opts.sync == SyncPolicy::Always && !defer_sync {
            self.wait_durable(seq)?;
        }
        Ok((seq, true))
    }

    /// Encodes and appends `ops` under the writer lock and publishes them in the keydir.
    fn append_locked(
        &self,
        w: &mut MutexGuard<'_, Writer>,
        ops: &[Op<'_>],
        batch: bool,
    ) -> Result<u64> {
        let seq = w.next_seq;
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        // Room for a durability mark, which `append_bytes` fills in or leaves out.
        buf.resize(MARK_LEN, 0);
        let mut placed = Vec::with_capacity(ops.len());
        for op in ops {
            let start = (buf.len() - MARK_LEN) as u64;
            let kind = match (batch, op.delete) {
                (false, false) => Kind::Put,
                (false, true) => Kind::Delete,
                (true, false) => Kind::BatchPut,
                (true, true) => Kind::BatchDelete,
            };
            record::encode(&mut buf, seq, op.expire, kind, op.key, op.value);
            placed.push((start, (buf.len() - MARK_LEN) as u64 - start));
        }
        if batch {
            record::encode(
                &mut buf,
                seq,
                0,
                Kind::BatchCommit,
                &[],
                &(ops.len() as u32).to_le_bytes(),
            );
        }
        let result = self.append_bytes(w, &mut buf, seq);
        w.buf = buf;
        if w.buf.capacity() > 4 << 20 {
            w.buf = Vec::new();
        }
        let (seg, base) = result?;
        w.next_seq = seq + 1;
        self.last_seq.store(seq, Ordering::Release);
        let mut kd = self.keydir.write();
        for (op, &(start, len)) in ops.iter().zip(&placed) {
            if op.delete {
                kd.remove(op.key);
            } else {
                let e = Entry::new(seg, base + start, len as u32, seq, op.expire);
                kd.insert(op.key, e);
            }
        }
        drop(kd);
        for (op, &(start, _)) in ops.iter().zip(&placed) {
            if !op.delete {
                self.cache
                    .put_written(op.key, seg, base + start, seq, op.value);
            }
        }
        Ok(seq)
    }

    /// Appends encoded records to the active segment (rotating first if it is full); returns
    /// the segment id and the offset the records start at. `buf` starts with [`MARK_LEN`]
    /// bytes of room for a durability mark, written in one go with the records when an
    /// fsync has made more of the segment durable than its last mark says.
    fn append_bytes(
        &self,
        w: &mut MutexGuard<'_, Writer>,
        buf: &mut [u8],
        seq: u64,
    ) -> Result<(u32, u64)> {
        if let Some(active) = &w.active {
            let len = active.len.load(Ordering::Relaxed);
            if len > SEGMENT_HEADER_LEN && len + buf.len() as u64 > self.opts.segment_size {
                self.rotate_locked(w)?;
            }
        }
        let active = match &w.active {
            Some(a) => a.clone(),
            None => {
                let id = self.next_segment_id.fetch_add(1, Ordering::SeqCst);
                let seg = Segment::create(&*self.opts.vfs, &self.dir, id).inspect_err(|e| {
                    if let Error::Io(io) = e {
                        self.poison("creating a segment failed", io);
                    }
                })?;
                let seg = Arc::new(seg);
                self.segments.write().insert(id, seg.clone());
                w.active = Some(seg.clone());
                seg
            }
        };
        let off = active.len.load(Ordering::Relaxed);
        let due = active.mark_due();
        let (bytes, records) = match due {
            Some(durable) => {
                buf[..MARK_LEN].copy_from_slice(&record::mark(durable));
                (&buf[..], off + MARK_LEN as u64)
            }
            None => (&buf[MARK_LEN..], off),
        };
        if let Err(e) = active.file.write_all_at(bytes, off) {
            self.poison("write failed", &e);
            return Err(e.into());
        }
        if let Some(durable) = due {
            active.marked.store(durable, Ordering::Relaxed);
        }
        active
            .len
            .store(off + bytes.len() as u64, Ordering::Release);
        active.note_seq(seq);
        Ok((active.id, records))
    }

    /// Writes a durability mark into the active segment if one is due, and fsyncs it, so
    /// that damage to the last writes before a clean close is never taken for a torn tail.
    fn mark_durable(&self) -> Result<()> {
        let w = self.writer.lock();
        let Some(active) = w.active.clone() else {
            return Ok(());
        };
        let Some(synced) = active.mark_due() else {
            return Ok(());
        };
        let off = active.len.load(Ordering::Relaxed);
        let m = record::mark(synced);
        let res = active
            .file
            .write_all_at(&m, off)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = res {
            self.poison("writing a durability mark failed", &e);
            return Err(e.into());
        }
        active.marked.store(synced, Ordering::Relaxed);
        active.len.store(off + m.len() as u64, Ordering::Release);
        active
            .synced
            .fetch_max(off + m.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Seals the active segment: fsync it and queue its hint file. The next append creates
    /// a new segment.
    pub(crate) fn rotate_locked(&self, w: &mut MutexGuard<'_, Writer>) -> Result<()> {
        let Some(old) = w.active.take() else {
            return Ok(());
        };
        // The sealed segment must be on stable storage before the next segment can receive
        // records: otherwise a power loss can leave it with a torn tail (partial writeback)
        // behind a newer segment, which recovery must call corruption (the log would not
        // be a prefix), and the database no longer opens. Deferring this fsync to the next
        // sync (outside the lock) broke that under `Interval` and `Never`.
        if let Err(e) = old.file.sync_data() {
            self.poison("fsync at segment rotation failed", &e);
            w.active = Some(old);
            return Err(e.into());
        }
        debug!(
            segment = old.id,
            bytes = old.len.load(Ordering::Relaxed),
            "sealed segment"
        );
        self.hints_pending.lock().push(old.id);
        Ok(())
    }

    /// Reads a live key's value and entry, retrying if compaction moved it mid-read.
    pub(crate) fn read_live(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Entry)>> {
        self.check_open()?;
        let now = self.opts.clock.now_ms();
        for _ in 0..64 {
            let Some(e) = self.keydir.read().map.get(key).copied() else {
                return Ok(None);
            };
            if e.expired(now) {
                return Ok(None);
            }
            if let Some(v) = self.cache.get(key, &e) {
                return Ok(Some((v, e)));
            }
            match self.read_value(key, &e)? {
                Some(v) => {
                    self.cache.put(key, e.seg(), e.off(), e.seq(), &v);
                    return Ok(Some((v, e)));
                }
                None => continue,
            }
        }
        Err(Error::corruption(
            &self.dir,
            0,
            "index points at a segment that no longer exists",
        ))
    }

    /// Reads the value stored at `e`; `None` if its segment has been removed meanwhile.
    pub(crate) fn read_value(&self, key: &[u8], e: &Entry) -> Result<Option<Vec<u8>>> {
        let Some(seg) = self.segments.read().get(&e.seg()).cloned() else {
            return Ok(None);
        };
        let mut rec = seg.read_record(e.off(), e.record_len())?;
        let h = record::Header::decode(rec[..HEADER_LEN].try_into().expect("header"))
            .map_err(|r| Error::corruption(&seg.path, e.off(), r))?;
        let kend = HEADER_LEN + h.key_len as usize;
        if !h.kind.is_put() || h.seq != e.seq() || &rec[HEADER_LEN..kend] != key {
            return Err(Error::corruption(
                &seg.path,
                e.off(),
                "record does not match the index",
            ));
        }
        rec.drain(..kend);
        Ok(Some(rec))
    }

    fn stop_background(&self) {
        *self.shutdown.lock() = true;
        self.shutdown_cv.notify_all();
        let handles: Vec<_> = self.background.lock().drain(..).collect();
        let me = std::thread::current().id();
        for h in handles {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }

    fn stats(&self) -> Stats {
        let (keys, live) = {
            let kd = self.keydir.read();
            (kd.map.len() as u64, kd.live.clone())
        };
        let (active, seq) = {
            let w = self.writer.lock();
            (w.active.as_ref().map(|s| s.id), w.next_seq - 1)
        };
        let segments: Vec<SegmentStats> = self
            .segments
            .read()
            .values()
            .map(|s| {
                let bytes = s.len.load(Ordering::Relaxed);
                let live_bytes = live.get(&s.id).copied().unwrap_or(0).min(bytes);
                SegmentStats {
                    id: s.id,
                    bytes,
                    live_bytes,
                    dead_bytes: bytes
                        .saturating_sub(SEGMENT_HEADER_LEN)
                        .saturating_sub(live_bytes),
                    active: Some(s.id) == active,
                    has_hint: s.hinted.load(Ordering::Relaxed),
                    compacted_at: (s.compacted_at.load(Ordering::Relaxed) != 0)
                        .then(|| s.compacted_at.load(Ordering::Relaxed) as u64 * 1000),
                }
            })
            .collect();
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let live_bytes = segments.iter().map(|s| s.live_bytes).sum();
        let dead_bytes = segments.iter().map(|s| s.dead_bytes).sum();
        // Compactions of earlier runs are known from the headers of the segments they wrote.
        let last = self
            .counters
            .last_compaction_ms
            .load(Ordering::Relaxed)
            .max(
                segments
                    .iter()
                    .filter_map(|s| s.compacted_at)
                    .max()
                    .unwrap_or(0),
            );
        Stats {
            keys,
            total_bytes,
            live_bytes,
            dead_bytes,
            seq,
            sync: self.opts.sync,
            segments,
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            reclaimed_bytes: self.counters.reclaimed.load(Ordering::Relaxed),
            last_compaction_ms: (last != 0).then_some(last),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            sync_nanos: self.counters.sync_nanos.load(Ordering::Relaxed),
            sync_latency: self
                .counters
                .sync_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst) && !self.poisoned.load(Ordering::SeqCst) {
            let w = self.writer.lock();
            for seg in w.sealing.iter().chain(w.active.iter()) {
                if let Err(e) = seg.file.sync_data() {
                    warn!("fsync on drop failed: {e}");
                }
            }
        }
        *self.shutdown.lock() = true;
        self.shutdown_cv.notify_all();
    }
}

/// Scans a sealed segment and writes its hint file.
pub(crate) fn write_hint_for(dir: &Path, opts: &Options, seg: &Segment) -> Result<()> {
    // A hint must never describe records that are not on stable storage.
    seg.file.sync_data()?;
    let len = seg.len.load(Ordering::Acquire);
    let mut scanner = Scanner::new(
        &*seg.file,
        len,
        false,
        opts.max_key_size,
        opts.max_value_size,
    );
    let mut hint = HintWriter::new(seg.id);
    let mut pending: Vec<segment::Scanned> = Vec::new();
    loop {
        match scanner.next_record()? {
            Ok(None) => break,
            Ok(Some(r)) => match r.header.kind {
                Kind::Put | Kind::Delete => add_hint(&mut hint, &r),
                Kind::BatchPut | Kind::BatchDelete => pending.push(r),
                Kind::BatchCommit => {
                    for p in pending.drain(..) {
                        add_hint(&mut hint, &p);
                    }
                }
                Kind::Mark => {}
            },
            Err(bad) => return Err(Error::corruption(&seg.path, bad.offset, bad.reason)),
        }
    }
    hint.finish(&*opts.vfs, dir, seg.id)?;
    seg.hinted.store(true, Ordering::Relaxed);
    Ok(())
}

fn add_hint(hint: &mut HintWriter, r: &segment::Scanned) {
    hint.add(&HintEntry {
        key: &r.key,
        seq: r.header.seq,
        expire: r.header.expire,
        offset: r.offset,
        len: r.header.record_len() as u32,
        kind: r.header.kind,
    });
}

struct Recovered {
    keydir: KeyDir,
    segments: BTreeMap<u32, Arc<Segment>>,
    active: Option<Arc<Segment>>,
    max_seq: u64,
    next_id: u32,
    needs_hint: Vec<u32>,
}

/// Records read during recovery, in read order; [`KeyDir::from_unsorted`] resolves them.
type Loaded = Vec<(IndexKey, Entry)>;

fn recover(dir: &Path, opts: &Options) -> Result<Recovered> {
    let vfs = &*opts.vfs;
    let mut seg_ids = Vec::new();
    let mut hint_ids = std::collections::HashSet::new();
    for name in vfs.list(dir)? {
        match segment::parse_name(&name) {
            FileName::Segment(id) => seg_ids.push(id),
            FileName::Hint(id) => {
                hint_ids.insert(id);
            }
            FileName::Temp => {
                debug!("removing leftover temporary file {name}");
                vfs.remove(&dir.join(&name))?;
            }
            FileName::Lock | FileName::Other => {}
        }
    }
    seg_ids.sort_unstable();
    // A hint whose segment is absent was left by a compaction that crashed before renaming
    // the segment into place: remove it so the id can never pick up a stale hint.
    let mut orphans: Vec<u32> = hint_ids
        .iter()
        .copied()
        .filter(|id| seg_ids.binary_search(id).is_err())
        .collect();
    orphans.sort_unstable();
    for id in &orphans {
        warn!(
            "removing hint file without a segment: {}",
            hint_path(dir, *id).display()
        );
        vfs.remove(&hint_path(dir, *id))?;
        hint_ids.remove(id);
    }
    if !orphans.is_empty() {
        vfs.sync_dir(dir)?;
    }
    // The only segment that may legitimately end in a torn record is the one that was being
    // appended to: the newest segment without a hint file.
    let tail = seg_ids
        .iter()
        .rev()
        .find(|id| !hint_ids.contains(id))
        .copied();
    // Size the load vector once: a hint entry is at least 33 bytes plus its key, so this
    // over-reserves only address space, never touched memory.
    let mut estimate = 0u64;
    for id in &seg_ids {
        let len = |p: &Path| vfs.open_read(p).and_then(|f| f.len()).unwrap_or(0);
        estimate += if hint_ids.contains(id) {
            len(&hint_path(dir, *id)) / 41
        } else {
            len(&segment_path(dir, *id)) / (HEADER_LEN as u64 + 8)
        };
    }
    let mut kd: Loaded = Vec::with_capacity(estimate.min(1 << 26) as usize);
    let mut segments = BTreeMap::new();
    let mut hint_buf = Vec::new();
    let mut max_seq = 0u64;
    let mut needs_hint = Vec::new();
    let mut active = None;
    for &id in &seg_ids {
        let path = segment_path(dir, id);
        let file = vfs.open(&path, false)?;
        let mut len = file.len()?;
        let is_tail = Some(id) == tail;
        if len < SEGMENT_HEADER_LEN {
            if is_tail {
                warn!(
                    "removing segment {} with a torn header ({len} bytes)",
                    path.display()
                );
                drop(file);
                vfs.remove(&path)?;
                vfs.sync_dir(dir)?;
                continue;
            }
            return Err(Error::corruption(
                &path,
                0,
                "segment shorter than its header",
            ));
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)?;
        if is_tail && header.iter().all(|b| *b == 0) && (len == SEGMENT_HEADER_LEN) {
            warn!(
                "removing empty segment {} with a torn header",
                path.display()
            );
            drop(file);
            vfs.remove(&path)?;
            vfs.sync_dir(dir)?;
            continue;
        }
        segment::check_header(&path, id, &header)?;
        let seg = Segment::new(id, path.clone(), file, len);
        seg.compacted_at
            .store(segment::header_compacted_at(&header), Ordering::Relaxed);
        // Compaction fsyncs its output before it is ever read, so it can have no torn tail.
        let is_tail = is_tail && segment::header_compacted_at(&header) == 0;
        let mut from_hint = false;
        if opts.use_hint_files && hint_ids.contains(&id) {
            let res = hint::read_with(vfs, dir, id, opts.max_key_size, &mut hint_buf, |h| {
                seg.note_seq(h.seq);
                let e = if h.kind.is_delete() {
                    Entry::tombstone(h.seq)
                } else {
                    Entry::new(id, h.offset, h.len, h.seq, h.expire)
                };
                kd.push((h.key.into(), e));
            })?;
            match res {
                Ok(()) => {
                    from_hint = true;
                    seg.hinted.store(true, Ordering::Relaxed);
                }
                Err(reason) => {
                    warn!("hint file for segment {id} unusable ({reason}); scanning the segment")
                }
            }
        }
        if !from_hint {
            let end = scan_into(&seg, opts, &mut kd, is_tail)?;
            if end < len {
                warn!(
                    "truncating torn tail of {} from {len} to {end} bytes (crash artefact)",
                    path.display()
                );
                seg.file.set_len(end)?;
                seg.file.sync_data()?;
                len = end;
                seg.len.store(len, Ordering::Relaxed);
            }
            if is_tail {
                // A process that died before its fsync leaves bytes only in the page cache;
                // they are about to be counted as durable, so make that true. That includes
                // the file's directory entry: a process that died between creating the
                // segment and fsyncing the directory leaves a name a power loss can take
                // away with every write acknowledged into it after this open.
                seg.file.sync_data()?;
                vfs.sync_dir(dir)?;
                seg.synced.store(len, Ordering::Relaxed);
            } else {
                needs_hint.push(id);
            }
        }
        max_seq = max_seq.max(seg.max_seq.load(Ordering::Relaxed));
        let seg = Arc::new(seg);
        // A segment of an older format takes no more appends (it cannot hold durability
        // marks): it is sealed, and the next write starts a new segment.
        let current = segment::header_version(&header) == segment::FORMAT_VERSION;
        if is_tail && len < opts.segment_size && current {
            active = Some(seg.clone());
        } else if is_tail {
            needs_hint.push(id);
        }
        segments.insert(id, seg);
    }
    let kd = KeyDir::from_unsorted(kd, opts.clock.now_ms());
    let next_id = seg_ids
        .last()
        .copied()
        .max(orphans.last().copied())
        .map_or(1, |m| m + 1);
    debug!(
        keys = kd.map.len(),
        segments = segments.len(),
        max_seq,
        "recovered"
    );
    Ok(Recovered {
        keydir: kd,
        segments,
        active,
        max_seq,
        next_id,
        needs_hint,
    })
}

/// Whether a durability mark after the damage at `offset` of the tail segment proves the
/// damaged bytes were fsynced (see [`crate::check::durable_after`]). Reads the whole
/// segment: this runs only when recovery meets damage followed by non-zero bytes.
fn durable_after(seg: &Segment, offset: u64) -> Result<bool> {
    let len = seg.len.load(Ordering::Relaxed);
    let mut data = vec![0u8; len as usize];
    seg.file.read_exact_at(&mut data, 0)?;
    Ok(crate::check::durable_after(&data, offset, &seg.path))
}

/// Scans one segment into the keydir. Returns the offset where valid data ends (the
/// truncation point for a torn tail).
fn scan_into(seg: &Segment, opts: &Options, kd: &mut Loaded, is_tail: bool) -> Result<u64> {
    let len = seg.len.load(Ordering::Relaxed);
    let mut scanner = Scanner::new(
        &*seg.file,
        len,
        false,
        opts.max_key_size,
        opts.max_value_size,
    );
    let mut batch: Vec<(Vec<u8>, Entry)> = Vec::new();
    let mut batch_start: Option<u64> = None;
    loop {
        match scanner.next_record()? {
            Ok(None) => break,
            Ok(Some(r)) => {
                let h = r.header;
                let e = if h.kind.is_delete() {
                    Entry::tombstone(h.seq)
                } else {
                    Entry::new(seg.id, r.offset, h.record_len() as u32, h.seq, h.expire)
                };
                match h.kind {
                    Kind::Put | Kind::Delete => {
                        if batch_start.take().is_some() {
                            warn!("{}: discarding an uncommitted batch", seg.path.display());
                            batch.clear();
                        }
                        seg.note_seq(h.seq);
                        kd.push((r.key.as_slice().into(), e));
                    }
                    Kind::BatchPut | Kind::BatchDelete => {
                        if batch.first().is_some_and(|(_, f)| f.seq() != h.seq) {
                            warn!("{}: discarding an uncommitted batch", seg.path.display());
                            batch.clear();
                        }
                        batch_start.get_or_insert(r.offset);
                        batch.push((r.key, e));
                    }
                    Kind::BatchCommit => {
                        let count = commit_count(&r.value) as usize;
                        let complete =
                            batch.len() == count && batch.iter().all(|(_, e)| e.seq() == h.seq);
                        if !complete {
                            return Err(Error::corruption(
                                &seg.path,
                                r.offset,
                                "batch commit does not match its operations",
                            ));
                        }
                        seg.note_seq(h.seq);
                        for (k, e) in batch.drain(..) {
                            kd.push((k.as_slice().into(), e));
                        }
                        batch_start = None;
                    }
                    Kind::Mark => {
                        if batch_start.take().is_some() {
                            warn!("{}: discarding an uncommitted batch", seg.path.display());
                            batch.clear();
                        }
                    }
                }
            }
            Err(bad) => {
                let torn = is_tail
                    && !bad.over_limits
                    && (bad.at_tail || !durable_after(seg, bad.offset)?);
                if torn {
                    warn!(
                        "{}: torn record at offset {} ({})",
                        seg.path.display(),
                        bad.offset,
                        bad.reason
                    );
                    return Ok(batch_start.unwrap_or(bad.offset));
                }
                return Err(Error::corruption(&seg.path, bad.offset, bad.reason));
            }
        }
    }
    // Operations of a batch whose commit never reached the disk: invisible, and cut off.
    if let Some(start) = batch_start {
        warn!(
            "{}: discarding a batch without its commit record at offset {start}",
            seg.path.display()
        );
        return Ok(if is_tail { start } else { scanner.position() });
    }
    Ok(scanner.position())
}
