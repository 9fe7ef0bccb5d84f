//! Segment files: naming, the 16-byte file header, and a sequential scanner that verifies
//! every record and tells a torn tail (a crash artefact) from corruption.
//!
//! ```text
//! segment header: b"CASKSEG" | version u8 (=2) | id u32 LE | compacted_at u32 LE
//! (`compacted_at`: Unix seconds when compaction wrote the segment, 0 for the log's own segments)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::record::{self, HEADER_LEN, Header, Kind};
use crate::vfs::{VFile, Vfs};

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: &[u8; 7] = b"CASKSEG";
/// The on-disk format version written by this build (2: records may include durability
/// marks, [`Kind::Mark`]).
pub const FORMAT_VERSION: u8 = 2;
/// The oldest segment format version this build reads (1: without durability marks).
pub const MIN_FORMAT_VERSION: u8 = 1;
/// Length of the segment file header.
pub const SEGMENT_HEADER_LEN: u64 = 16;

/// The name of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.seg"))
}

/// The name of the hint file of segment `id` in `dir`.
pub fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.hint"))
}

/// What a directory entry is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileName {
    /// A segment with this id.
    Segment(u32),
    /// A hint file for this segment id.
    Hint(u32),
    /// A half-written temporary file, left by a crash.
    Temp,
    /// The lock file.
    Lock,
    /// Anything else (ignored).
    Other,
}

/// Classifies a file name.
pub fn parse_name(name: &str) -> FileName {
    if name == "LOCK" {
        return FileName::Lock;
    }
    if name.ends_with(".tmp") {
        return FileName::Temp;
    }
    let parse_id = |stem: &str| {
        (stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()))
            .then(|| stem.parse().ok())
            .flatten()
    };
    if let Some(id) = name.strip_suffix(".seg").and_then(parse_id) {
        FileName::Segment(id)
    } else if let Some(id) = name.strip_suffix(".hint").and_then(parse_id) {
        FileName::Hint(id)
    } else {
        FileName::Other
    }
}

/// Encodes a segment header. `compacted_at` is the Unix time in seconds at which
/// compaction wrote the segment, or 0.
pub fn encode_header(id: u32, compacted_at: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..7].copy_from_slice(SEGMENT_MAGIC);
    h[7] = FORMAT_VERSION;
    h[8..12].copy_from_slice(&id.to_le_bytes());
    h[12..16].copy_from_slice(&compacted_at.to_le_bytes());
    h
}

/// The `compacted_at` field of a (checked) segment header.
pub fn header_compacted_at(h: &[u8]) -> u32 {
    u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"))
}

/// The format version of a (checked) segment header.
pub fn header_version(h: &[u8]) -> u8 {
    h[7]
}

/// Checks a segment header.
pub fn check_header(path: &Path, id: u32, h: &[u8]) -> Result<()> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[..7] != SEGMENT_MAGIC {
        return Err(Error::Format {
            path: path.to_owned(),
            reason: "not a cask segment (bad magic)".into(),
        });
    }
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&h[7]) {
        return Err(Error::Format {
            path: path.to_owned(),
            reason: format!(
                "segment format version {} (this build reads {MIN_FORMAT_VERSION} to \
                 {FORMAT_VERSION})",
                h[7]
            ),
        });
    }
    let stored = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if stored != id {
        return Err(Error::corruption(
            path,
            8,
            format!("header names segment {stored}, file name says {id}"),
        ));
    }
    Ok(())
}

/// A segment file the engine can read from, with its live accounting.
#[derive(Debug)]
pub struct Segment {
    /// Segment id.
    pub id: u32,
    /// Path of the file.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn VFile>,
    /// Current length of the file.
    pub len: AtomicU64,
    /// How many of its bytes an fsync has made durable (as far as this process knows).
    pub synced: AtomicU64,
    /// The watermark of the last durability mark written into it (only for the active
    /// segment, under the writer lock).
    pub marked: AtomicU64,
    /// Smallest sequence number of any record in it (`u64::MAX` when empty).
    pub min_seq: AtomicU64,
    /// Largest sequence number of any record in it.
    pub max_seq: AtomicU64,
    /// Unix seconds when compaction wrote it (0: written by the log).
    pub compacted_at: AtomicU32,
    /// Whether a valid hint file exists for it (loaded at open, or written since).
    pub hinted: AtomicBool,
    /// Bytes of the tombstones compaction wrote into it because they still shadowed older
    /// records elsewhere. They count as dead, but compacting this segment again cannot
    /// drop them while a segment with records older than [`Segment::kept_tombstones_seq`]
    /// remains. Not persisted (0 after a reopen: the segment may be rewritten once more).
    pub kept_tombstones: AtomicU64,
    /// The newest sequence number among those tombstones.
    pub kept_tombstones_seq: AtomicU64,
}

impl Segment {
    /// Wraps an open file.
    pub fn new(id: u32, path: PathBuf, file: Arc<dyn VFile>, len: u64) -> Self {
        Segment {
            id,
            path,
            file,
            len: AtomicU64::new(len),
            synced: AtomicU64::new(0),
            // The header is durable before any record is appended: no mark needs saying so.
            marked: AtomicU64::new(SEGMENT_HEADER_LEN),
            min_seq: AtomicU64::new(u64::MAX),
            max_seq: AtomicU64::new(0),
            compacted_at: AtomicU32::new(0),
            hinted: AtomicBool::new(false),
            kept_tombstones: AtomicU64::new(0),
            kept_tombstones_seq: AtomicU64::new(0),
        }
    }

    /// The watermark a durability mark written now would state, if an fsync has made more
    /// of the segment durable than its last mark says (writer lock held).
    pub fn mark_due(&self) -> Option<u64> {
        let synced = self.synced.load(Ordering::Acquire);
        (synced > self.marked.load(Ordering::Relaxed)).then_some(synced)
    }

    /// Widens the segment's sequence range to include `seq`.
    pub fn note_seq(&self, seq: u64) {
        self.min_seq.fetch_min(seq, Ordering::Relaxed);
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Creates a new, empty segment file with its header, fsynced, and fsyncs the directory.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn create(vfs: &dyn Vfs, dir: &Path, id: u32) -> Result<Segment> {
        let path = segment_path(dir, id);
        let file = vfs.open(&path, true)?;
        file.set_len(0)?;
        file.write_all_at(&encode_header(id, 0), 0)?;
        file.sync_data()?;
        vfs.sync_dir(dir)?;
        let seg = Segment::new(id, path, file, SEGMENT_HEADER_LEN);
        seg.synced.store(SEGMENT_HEADER_LEN, Ordering::Relaxed);
        Ok(seg)
    }

    /// Reads and verifies the record at `offset` of length `len`; returns its bytes.
    ///
    /// # Errors
    /// `Corruption` if the checksum fails or the record is malformed; I/O errors.
    pub fn read_record(&self, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corruption(
                    &self.path,
                    offset,
                    "record extends past the end of the file",
                )
            } else {
                Error::Io(e)
            }
        })?;
        if !record::verify(&buf) {
            return Err(Error::corruption(
                &self.path,
                offset,
                "record checksum mismatch",
            ));
        }
        Ok(buf)
    }
}

/// One record met by a [`Scanner`].
#[derive(Debug)]
pub struct Scanned {
    /// Offset of the record in the file.
    pub offset: u64,
    /// Its header.
    pub header: Header,
    /// Its key.
    pub key: Vec<u8>,
    /// Its value, when the scanner was asked for values (always for batch commits and
    /// durability marks).
    pub value: Vec<u8>,
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Offset of the first bad byte.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// Whether the damage runs to the end of the file (a torn write) rather than being
    /// followed by more data (corruption).
    pub at_tail: bool,
    /// The record is whole in the file but over the configured size limits: it was
    /// written, never torn, and must not be cut off whatever follows it.
    pub over_limits: bool,
}

const WINDOW: usize = 1 << 20;

/// Reads a segment's records in order, verifying each checksum, without allocating for
/// lengths the file cannot hold or the limits forbid.
pub struct Scanner<'a> {
    file: &'a dyn VFile,
    len: u64,
    pos: u64,
    want_values: bool,
    max_key: u64,
    max_value: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl<'a> Scanner<'a> {
    /// Starts scanning after the segment header. `len` is the file length to trust.
    pub fn new(
        file: &'a dyn VFile,
        len: u64,
        want_values: bool,
        max_key: usize,
        max_value: usize,
    ) -> Self {
        Scanner {
            file,
            len,
            pos: SEGMENT_HEADER_LEN,
            want_values,
            max_key: max_key as u64,
            max_value: max_value as u64,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// Current position: the end of the last good record.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Jumps to `pos` (used by repair to resynchronise after damage).
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos;
    }

    fn read(&mut self, off: u64, n: usize) -> std::io::Result<&[u8]> {
        let in_window = off >= self.window_start
            && off + n as u64 <= self.window_start + self.window.len() as u64;
        if !in_window {
            let want = (n.max(WINDOW) as u64).min(self.len - off) as usize;
            self.window.resize(want, 0);
            self.file.read_exact_at(&mut self.window, off)?;
            self.window_start = off;
        }
        let s = (off - self.window_start) as usize;
        Ok(&self.window[s..s + n])
    }

    fn zeros_from(&mut self, mut off: u64) -> std::io::Result<bool> {
        while off < self.len {
            let n = ((self.len - off) as usize).min(WINDOW);
            if self.read(off, n)?.iter().any(|b| *b != 0) {
                return Ok(false);
            }
            off += n as u64;
        }
        Ok(true)
    }

    fn bad(
        &mut self,
        offset: u64,
        reason: impl Into<String>,
        end: Option<u64>,
    ) -> std::io::Result<BadRecord> {
        // Damage is a torn tail when the broken record runs to (or past) the end of the file,
        // or when everything after it is zero fill.
        let at_tail = match end {
            None => true,
            Some(end) if end >= self.len => true,
            Some(end) => self.zeros_from(end)? || self.zeros_from(offset)?,
        };
        Ok(BadRecord {
            offset,
            reason: reason.into(),
            at_tail,
            over_limits: false,
        })
    }

    /// The next record: `Ok(Ok(None))` at a clean end, `Ok(Err(bad))` at damage.
    ///
    /// # Errors
    /// I/O errors reading the file.
    pub fn next_record(&mut self) -> std::io::Result<Result<Option<Scanned>, BadRecord>> {
        let offset = self.pos;
        if offset >= self.len {
            return Ok(Ok(None));
        }
        if self.len - offset < HEADER_LEN as u64 {
            return Ok(Err(self.bad(offset, "incomplete record header", None)?));
        }
        let hbytes: [u8; HEADER_LEN] = self
            .read(offset, HEADER_LEN)?
            .try_into()
            .expect("header length");
        let header = match Header::decode(&hbytes) {
            Ok(h) => h,
            Err(reason) => {
                return Ok(Err(self.bad(
                    offset,
                    reason,
                    Some(offset + HEADER_LEN as u64),
                )?));
            }
        };
        let end = offset + header.record_len();
        if header.key_len as u64 > self.max_key || header.value_len as u64 > self.max_value {
            if end <= self.len {
                // The whole record is in the file: it was written, not torn. Refuse it (the
                // limits were lowered, or the header is damaged); never cut it off.
                return Ok(Err(BadRecord {
                    offset,
                    reason: "record lengths exceed the configured limits".into(),
                    at_tail: false,
                    over_limits: true,
                }));
            }
            return Ok(Err(self.bad(
                offset,
                "record lengths exceed the configured limits",
                Some(end),
            )?));
        }
        if end > self.len {
            return Ok(Err(self.bad(
                offset,
                "record extends past the end of the file",
                None,
            )?));
        }
        let body_start = offset + 4;
        let key_start = offset + HEADER_LEN as u64;
        let mut crc = crc32c::crc32c(&hbytes[4..]);
        let key = self.read(key_start, header.key_len as usize)?.to_vec();
        crc = crc32c::crc32c_append(crc, &key);
        let value_start = key_start + header.key_len as u64;
        let keep_value = self.want_values || matches!(header.kind, Kind::BatchCommit | Kind::Mark);
        let mut value = Vec::new();
        let mut off = value_start;
        while off < end {
            let n = ((end - off) as usize).min(WINDOW);
            let chunk = self.read(off, n)?;
            crc = crc32c::crc32c_append(crc, chunk);
            if keep_value {
                value.extend_from_slice(chunk);
            }
            off += n as u64;
        }
        debug_assert!(body_start < end);
        if crc != header.crc {
            return Ok(Err(self.bad(
                offset,
                "record checksum mismatch",
                Some(end),
            )?));
        }
        if let Some(reason) = header.malformed() {
            return Ok(Err(self.bad(offset, reason, Some(end))?));
        }
        self.pos = end;
        Ok(Ok(Some(Scanned {
            offset,
            header,
            key,
            value,
        })))
    }
}

/// The end of the intact record at `data[pos..]`, or why there is none there.
pub(crate) fn record_at(
    data: &[u8],
    pos: usize,
    max_key: usize,
    max_value: usize,
) -> std::result::Result<usize, &'static str> {
    let rest = &data[pos..];
    if rest.len() < HEADER_LEN {
        return Err("incomplete record header");
    }
    let h = Header::decode(rest[..HEADER_LEN].try_into().expect("header"))?;
    if h.key_len as usize > max_key || h.value_len as usize > max_value {
        return Err("record lengths exceed the configured limits");
    }
    let len = h.record_len() as usize;
    if len > rest.len() {
        return Err("record extends past the end of the file");
    }
    if !record::verify(&rest[..len]) {
        return Err("record checksum mismatch");
    }
    match h.malformed() {
        Some(reason) => Err(reason),
        None => Ok(pos + len),
    }
}

/// A batch commit record's operation count.
pub fn commit_count(value: &[u8]) -> u32 {
    u32::from_le_bytes(value[..4].try_into().expect("commit value is 4 bytes"))
}
