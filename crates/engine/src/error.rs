//! The engine's one error type.

use std::io;
use std::path::PathBuf;

/// A specialized `Result` for engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error, kept whole so callers can see its kind.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// Another handle (in this or another process) holds the directory lock.
    #[error("database directory {} is locked by another process or handle", .dir.display())]
    Locked {
        /// The locked data directory.
        dir: PathBuf,
    },

    /// A record or hint file failed verification somewhere it cannot be a crash artefact.
    #[error("corruption in {} at offset {offset}: {reason}", .path.display())]
    Corruption {
        /// The file that holds the bad bytes.
        path: PathBuf,
        /// Byte offset of the bad record within the file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// A key, value or batch exceeds the configured limits.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("key", "value", "batch").
        what: &'static str,
        /// Its size.
        size: u64,
        /// The configured limit.
        limit: u64,
    },

    /// An invalid argument (empty key, bad option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A compare-and-set found a different version than expected.
    #[error("version conflict: expected {}, found {}", fmt_version(*.expected), fmt_version(*.actual))]
    Conflict {
        /// The version the caller expected (`None`: the key must be absent).
        expected: Option<u64>,
        /// The key's current version (`None`: absent).
        actual: Option<u64>,
    },

    /// A previous write or fsync failed; the database refuses writes until it is reopened.
    #[error("database is read-only after an earlier I/O failure ({0}); reopen it to recover")]
    Poisoned(String),

    /// The database has been closed.
    #[error("database is closed")]
    Closed,

    /// The directory holds data in a format this version cannot read.
    #[error("unsupported format in {}: {reason}", .path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
}

fn fmt_version(v: Option<u64>) -> String {
    match v {
        Some(v) => format!("version {v}"),
        None => "no key".to_string(),
    }
}

impl Error {
    /// Whether this error reports on-disk corruption.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
