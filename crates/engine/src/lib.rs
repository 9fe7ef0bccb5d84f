//! # cask-engine
//!
//! An embeddable, Bitcask-style key-value storage engine with an ordered index.
//!
//! Data lives in an append-only log split into segment files. Every record is framed and
//! checksummed (CRC32C) and carries a sequence number, which is also the key's version. An
//! in-memory ordered index (the keydir) maps each key to the location of its newest record,
//! so a read is one positioned read and a write is one append; because the keydir is
//! ordered, range and prefix scans are cheap too.
//!
//! ```no_run
//! use cask_engine::{Db, Options};
//! # fn main() -> cask_engine::Result<()> {
//! let db = Db::open("/tmp/cask-example", Options::default())?;
//! db.set(b"hello", b"world")?;
//! assert_eq!(db.get(b"hello")?, Some(b"world".to_vec()));
//! for item in db.scan_prefix(b"he") {
//!     let (key, value) = item?;
//!     println!("{key:?} = {value:?}");
//! }
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! Guarantees:
//! - Writes are applied in sequence-number order; recovery restores exactly a prefix of the
//!   written log. A torn record at the end of the last segment (a crash artefact) is
//!   truncated; damage anywhere else is reported as [`Error::Corruption`] and never served.
//! - [`Db::write`] applies a [`Batch`] atomically, also across a crash.
//! - With [`SyncPolicy::Always`] a write returns only once its bytes are fsynced; concurrent
//!   writers share one fsync (group commit). After a failed write or fsync the database
//!   refuses writes ([`Error::Poisoned`]) until reopened.
//! - Compaction runs in the background and on demand ([`Db::compact`]); a deleted or expired
//!   key never comes back, whatever the crash.
//!
//! The on-disk format is documented in `docs/FORMAT.md`.

pub mod batch;
mod cache;
pub mod check;
pub mod compact;
pub mod db;
pub mod error;
pub mod fault;
#[doc(hidden)]
pub mod fuzz_support;
pub mod hint;
pub mod keydir;
pub mod options;
pub mod record;
pub mod scan;
pub mod segment;
pub mod stats;
pub mod vfs;

pub use batch::{Batch, BatchOp};
pub use check::{CheckReport, Problem, check};
pub use db::{Db, KeyMeta};
pub use error::{Error, Result};
pub use options::{Clock, Options, SyncPolicy, SystemClock, WriteOptions};
pub use scan::{Keys, Scan};
pub use stats::{CompactionReport, SYNC_LATENCY_BOUNDS_US, SegmentStats, Stats};
