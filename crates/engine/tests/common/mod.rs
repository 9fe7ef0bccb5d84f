//! Shared helpers for the engine's integration suites: a controllable clock, a BTreeMap
//! model of the database with expiry, and comparisons of a `Db` against the model.

#![allow(
    dead_code,
    reason = "each suite uses a different subset of the helpers"
)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cask_engine::fault::FaultVfs;
use cask_engine::{Clock, Db, Options, SyncPolicy};

/// A clock the test advances by hand.
#[derive(Debug)]
pub struct TestClock(pub AtomicU64);

impl TestClock {
    pub fn new(start: u64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicU64::new(start)))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A VFS whose fsyncs (file and directory) do nothing: for suites where durability is not
/// under test. Data still reaches the page cache, so a reopen sees it.
pub fn no_fsync_vfs() -> Arc<FaultVfs> {
    let vfs = FaultVfs::new();
    vfs.controller().skip_syncs(true);
    Arc::new(vfs)
}

/// Fast options: no fsync (by policy and in the VFS), no background compaction.
pub fn fast_opts() -> Options {
    Options {
        sync: SyncPolicy::Never,
        background_compaction: false,
        vfs: no_fsync_vfs(),
        ..Options::default()
    }
}

/// Fast options with a test clock and a small segment size.
pub fn opts_with(clock: &Arc<TestClock>, segment_size: u64) -> Options {
    Options {
        clock: clock.clone(),
        segment_size,
        ..fast_opts()
    }
}

/// One key's state in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Val {
    pub value: Vec<u8>,
    pub expire: Option<u64>,
    pub version: u64,
}

impl Val {
    pub fn live(&self, now: u64) -> bool {
        self.expire.is_none_or(|e| e > now)
    }
}

/// The model: what the database must contain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub map: BTreeMap<Vec<u8>, Val>,
}

impl Model {
    pub fn set(&mut self, key: &[u8], value: &[u8], expire: Option<u64>, version: u64) {
        self.map.insert(
            key.to_vec(),
            Val {
                value: value.to_vec(),
                expire,
                version,
            },
        );
    }
    pub fn delete(&mut self, key: &[u8]) {
        self.map.remove(key);
    }
    pub fn get(&self, key: &[u8], now: u64) -> Option<&Val> {
        self.map.get(key).filter(|v| v.live(now))
    }
    /// Live pairs in `(lo, hi)`, ascending.
    pub fn range(
        &self,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        now: u64,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let empty = match (&lo, &hi) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a > b || (a == b && !matches!((&lo, &hi), (Bound::Included(_), Bound::Included(_))))
            }
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        self.map
            .range((lo, hi))
            .filter(|(_, v)| v.live(now))
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
    pub fn live(&self, now: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.range(Bound::Unbounded, Bound::Unbounded, now)
    }
}

/// Asserts the database holds exactly the model's live keys, values and versions: a full
/// forward scan, a reverse scan, a key listing and a `get_versioned` of every model key.
pub fn assert_matches(db: &Db, model: &Model, now: u64, ctx: &str) {
    let want = model.live(now);
    let got: Vec<_> = db
        .scan(..)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{ctx}: scan failed: {e}"));
    if got != want {
        let gk: Vec<_> = got
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k))
            .collect();
        let wk: Vec<_> = want
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k))
            .collect();
        panic!("{ctx}: full scan differs\n got keys {gk:?}\nwant keys {wk:?}");
    }
    let mut rev: Vec<_> = db.scan(..).reverse().collect::<Result<_, _>>().unwrap();
    rev.reverse();
    assert_eq!(rev, want, "{ctx}: reverse scan differs");
    let keys: Vec<_> = db.keys(..).collect::<Result<_, _>>().unwrap();
    let wkeys: Vec<_> = want.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, wkeys, "{ctx}: key listing differs");
    for (k, v) in &model.map {
        let got = db.get_versioned(k).unwrap();
        let want = v.live(now).then(|| (v.value.clone(), v.version));
        assert_eq!(
            got,
            want,
            "{ctx}: get_versioned({:?})",
            String::from_utf8_lossy(k)
        );
    }
}

/// Asserts the database holds exactly the model's live keys and values (versions unchecked).
pub fn assert_values(db: &Db, model: &Model, now: u64, ctx: &str) {
    let want = model.live(now);
    let got: Vec<_> = db
        .scan(..)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{ctx}: scan failed: {e}"));
    if got != want {
        let gk: Vec<_> = got
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k), v.len()))
            .collect();
        let wk: Vec<_> = want
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k), v.len()))
            .collect();
        panic!("{ctx}: contents differ\n got {gk:?}\nwant {wk:?}");
    }
}

/// Copies every regular file of `from` (not the lock) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "LOCK" {
            continue;
        }
        std::fs::copy(e.path(), to.join(name)).unwrap();
    }
}

/// Segment files in `dir`, sorted by name (= by id).
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_with(dir, ".seg")
}

/// Hint files in `dir`, sorted.
pub fn hint_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_with(dir, ".hint")
}

fn files_with(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Runs `f(seed)` for each seed, reporting the failing seed.
pub fn for_seeds(
    name: &str,
    seeds: std::ops::Range<u64>,
    f: impl Fn(u64) + std::panic::RefUnwindSafe,
) {
    for seed in seeds {
        if let Err(e) = std::panic::catch_unwind(|| f(seed)) {
            eprintln!("{name}: FAILED with seed {seed} (rerun: CASK_SEED={seed})");
            std::panic::resume_unwind(e);
        }
    }
}

/// Seeds to run: `CASK_SEED=n` runs only that seed, otherwise `0..default`, scaled by
/// `CASK_SEEDS=n` when set.
pub fn seeds(default: u64) -> std::ops::Range<u64> {
    if let Some(s) = std::env::var("CASK_SEED").ok().and_then(|s| s.parse().ok()) {
        return s..s + 1;
    }
    let n = std::env::var("CASK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    0..n
}
