//! Statistics reported by [`crate::Db::stats`].

use crate::options::SyncPolicy;

/// Upper bounds (µs) of the fsync latency buckets in [`Stats::sync_latency`].
pub const SYNC_LATENCY_BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// Per-segment accounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStats {
    /// Segment id (the file name's number).
    pub id: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// Bytes of records the index still points at.
    pub live_bytes: u64,
    /// Bytes of overwritten, deleted or expired records, tombstones and batch commit records
    /// (everything but live records and the 16-byte file header).
    pub dead_bytes: u64,
    /// Whether this is the segment currently appended to.
    pub active: bool,
    /// Whether it has a valid hint file (loaded at open, or written since).
    pub has_hint: bool,
    /// When compaction wrote this segment (ms since the Unix epoch, second precision).
    pub compacted_at: Option<u64>,
}

/// A snapshot of the database's state.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Keys in the index (expired keys not yet collected included).
    pub keys: u64,
    /// Sum of all segment sizes.
    pub total_bytes: u64,
    /// Sum of live record bytes.
    pub live_bytes: u64,
    /// Sum of the segments' dead bytes.
    pub dead_bytes: u64,
    /// Highest sequence number written.
    pub seq: u64,
    /// The durability policy in force.
    pub sync: SyncPolicy,
    /// Every segment, by id.
    pub segments: Vec<SegmentStats>,
    /// Compactions completed since open.
    pub compactions: u64,
    /// Bytes reclaimed by those compactions.
    pub reclaimed_bytes: u64,
    /// When the last compaction finished, ms since the Unix epoch: from this process, or
    /// else from the headers of the segments earlier compactions wrote.
    pub last_compaction_ms: Option<u64>,
    /// fsyncs performed since open.
    pub syncs: u64,
    /// Writes acknowledged since open.
    pub writes: u64,
    /// Total time spent in the write path's fsyncs since open, in nanoseconds.
    pub sync_nanos: u64,
    /// The write path's fsyncs since open by duration (not cumulative): entry `i` counts
    /// those of at most `SYNC_LATENCY_BOUNDS_US[i]` µs (and over the previous bound); the last
    /// entry counts the longer ones.
    pub sync_latency: Vec<u64>,
}

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten.
    pub segments_in: usize,
    /// Segments written.
    pub segments_out: usize,
    /// Bytes of the input segments.
    pub bytes_in: u64,
    /// Bytes of the output segments.
    pub bytes_out: u64,
    /// Live records copied.
    pub records_kept: u64,
    /// Records dropped (overwritten, deleted, expired, tombstones no longer needed).
    pub records_dropped: u64,
}

impl CompactionReport {
    /// Bytes returned to the file system.
    pub fn reclaimed(&self) -> u64 {
        self.bytes_in.saturating_sub(self.bytes_out)
    }
}
