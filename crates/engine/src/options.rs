//! Configuration of a database and of individual writes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::vfs::{OsVfs, Vfs};

/// When appended bytes are forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every write returns only after its bytes are fsynced. Concurrent writers share one
    /// fsync (group commit).
    Always,
    /// A background thread fsyncs at least this often. A crash loses at most the writes of
    /// the last interval, never a write in the middle (the log is a prefix).
    Interval(Duration),
    /// The engine never fsyncs on its own (only at rotation, compaction and close).
    Never,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy::Interval(Duration::from_millis(1000))
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Always => write!(f, "always"),
            SyncPolicy::Interval(d) => write!(f, "interval({}ms)", d.as_millis()),
            SyncPolicy::Never => write!(f, "never"),
        }
    }
}

impl FromStr for SyncPolicy {
    type Err = String;

    /// Parses `always`, `never`, `interval` (1000 ms) or `interval:MS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            "interval" | "everysec" => Ok(SyncPolicy::default()),
            other => match other.strip_prefix("interval:") {
                Some(ms) => ms
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(|ms| SyncPolicy::Interval(Duration::from_millis(ms)))
                    .ok_or_else(|| format!("invalid sync interval {ms:?} (milliseconds > 0)")),
                None => Err(format!(
                    "invalid sync policy {other:?} (expected always, interval, interval:MS or never)"
                )),
            },
        }
    }
}

/// A source of wall-clock time in milliseconds since the Unix epoch, used for expiry.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Options for [`crate::Db::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Durability policy. Default: `Interval(1000 ms)`.
    pub sync: SyncPolicy,
    /// A segment is sealed and a new one started once it reaches this size. Default 128 MiB.
    pub segment_size: u64,
    /// Largest accepted key in bytes. Default 64 KiB.
    pub max_key_size: usize,
    /// Largest accepted value in bytes. Default 512 MiB.
    pub max_value_size: usize,
    /// Largest accepted batch (sum of its keys and values) in bytes. Default 1 GiB.
    pub max_batch_size: u64,
    /// Run compaction in a background thread when segments become wasteful. Default true.
    pub background_compaction: bool,
    /// A sealed segment is compacted when dead bytes / total bytes exceeds this. Default 0.5.
    pub compaction_ratio: f64,
    /// Compaction also runs when the dead bytes of all sealed segments exceed this. Default 1 GiB.
    pub compaction_garbage_bytes: u64,
    /// How often the background compactor looks for work. Default 10 s.
    pub compaction_interval: Duration,
    /// Write hint files for sealed segments and read them on open. Default true.
    pub use_hint_files: bool,
    /// Create the directory if it does not exist. Default true.
    pub create_if_missing: bool,
    /// Slots of the cache of recently written and read values (one value per slot, chosen
    /// by a hash of the key), which spares hot keys a `pread`. 0 turns it off. Default 16384.
    pub value_cache_slots: usize,
    /// Largest value the value cache holds, in bytes. Default 256.
    pub value_cache_max_value: usize,
    /// Start the background threads (the interval fsync, hint files and compaction).
    /// Default true. Without them nothing happens unless called: `sync` makes
    /// `SyncPolicy::Interval` writes durable, `write_pending_hints` writes hint files and
    /// `compact` compacts. For callers that schedule the work themselves, and the fuzzers
    /// (which open thousands of databases a second).
    pub background_threads: bool,
    /// The clock used for expiry.
    pub clock: Arc<dyn Clock>,
    /// The file-system seam; tests swap it for one that injects faults.
    pub vfs: Arc<dyn Vfs>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::default(),
            segment_size: 128 << 20,
            max_key_size: 64 << 10,
            max_value_size: 512 << 20,
            max_batch_size: 1 << 30,
            background_compaction: true,
            compaction_ratio: 0.5,
            compaction_garbage_bytes: 1 << 30,
            compaction_interval: Duration::from_secs(10),
            use_hint_files: true,
            create_if_missing: true,
            value_cache_slots: 16384,
            value_cache_max_value: 256,
            background_threads: true,
            clock: Arc::new(SystemClock),
            vfs: Arc::new(OsVfs),
        }
    }
}

impl Options {
    /// Sets the sync policy.
    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// Sets the segment size.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }
}

/// Per-write options for [`crate::Db::set_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Absolute expiry in milliseconds since the Unix epoch; `None` never expires.
    pub expire_at: Option<u64>,
}

impl WriteOptions {
    /// Expire at an absolute time (ms since the Unix epoch).
    pub fn expire_at(ms: u64) -> Self {
        WriteOptions {
            expire_at: Some(ms),
        }
    }
}
