//! The I/O seam: every file operation the engine performs goes through [`Vfs`] and
//! [`VFile`], so tests can inject failures (ENOSPC, EIO on write or fsync, power loss)
//! without touching the engine's code paths. [`OsVfs`] is the real file system.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open file, addressed by position: appends and reads never share a cursor.
#[expect(
    clippy::len_without_is_empty,
    reason = "a fallible length; emptiness is never asked"
)]
pub trait VFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Forces written data to stable storage (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync + Debug {}

/// File-system operations on paths.
pub trait Vfs: Send + Sync + Debug {
    /// Opens a file for reading and writing, creating it if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>>;
    /// Opens a file read-only.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes directory entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Lists the file names in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path`; `WouldBlock` if another holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

#[derive(Debug)]
struct OsFile(File);

impl VFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[derive(Debug)]
struct OsLock(#[expect(dead_code, reason = "held only for its lock")] File);

impl LockGuard for OsLock {}

impl Vfs for OsVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        Ok(Arc::new(OsFile(File::open(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(OsLock(file))),
            Err(TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// How [`MemVfs::power_loss`] treats bytes that were written but never fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writeback {
    /// Nothing unsynced survives (the pessimistic model).
    None,
    /// Each `block`-byte block (at file offsets that are multiples of `block`, e.g. 512 for
    /// a disk sector or 4096 for a page) of a file's unsynced appends independently either
    /// reached the disk or did not: later blocks may land while earlier ones are lost
    /// (reordered writeback, leaving holes of zeros), and the file's length may be any block
    /// boundary between its synced and its current length. `seed` picks the outcome.
    Blocks {
        /// Block size in bytes (at least 1).
        block: usize,
        /// Chooses which blocks survive.
        seed: u64,
    },
}

/// What power loss leaves of one file, given its bytes as of the last fsync (`synced`) and
/// its current bytes (`now`). Shared by [`MemVfs`] and `FaultController`.
///
/// If `now` does not extend `synced` (the file was truncated or rewritten since its last
/// fsync), either image is possible; otherwise the unsynced appends survive as `mode` says.
pub fn writeback(synced: &[u8], now: &[u8], mode: Writeback) -> Vec<u8> {
    let Writeback::Blocks { block, seed } = mode else {
        return synced.to_vec();
    };
    let block = block.max(1);
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64: dependency-free and reproducible.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    if !(now.len() > synced.len() && now.starts_with(synced)) {
        return if now != synced && next() % 2 == 0 {
            now.to_vec()
        } else {
            synced.to_vec()
        };
    }
    // Block boundaries in (synced.len(), now.len()], plus now.len() itself.
    let first = synced.len() / block + 1;
    let mut ends: Vec<usize> = (first..)
        .map(|b| b * block)
        .take_while(|e| *e < now.len())
        .collect();
    ends.push(now.len());
    // The length the file's metadata reached: its synced length or any later boundary.
    let pick = (next() % (ends.len() as u64 + 1)) as usize;
    let len = if pick == 0 {
        synced.len()
    } else {
        ends[pick - 1]
    };
    let mut out = synced.to_vec();
    out.resize(len, 0);
    let mut start = synced.len();
    while start < len {
        let end = ((start / block + 1) * block).min(len);
        if next() % 2 == 0 {
            out[start..end].copy_from_slice(&now[start..end]);
        }
        start = end;
    }
    out
}

#[derive(Debug, Default)]
struct MemInode {
    data: parking_lot::Mutex<Vec<u8>>,
    synced: parking_lot::Mutex<Vec<u8>>,
    /// Lowest offset written or truncated to since the last `sync_data` (`usize::MAX`:
    /// nothing), so an fsync copies only what changed.
    dirty_from: parking_lot::Mutex<usize>,
}

#[derive(Debug, Default)]
struct MemDir {
    names: std::collections::HashMap<std::path::PathBuf, Arc<MemInode>>,
    durable: std::collections::HashMap<std::path::PathBuf, Arc<MemInode>>,
    locked: std::collections::HashSet<std::path::PathBuf>,
}

/// An in-memory file system with a power-loss model, for fuzzing and fast crash tests.
///
/// Files live in memory keyed by their full path (directories are implicit). Like
/// `FaultController`'s model, it remembers each file's bytes as of its last `sync_data` and
/// the set of names as of the last `sync_dir`; [`MemVfs::power_loss`] resets the "disk" to
/// that state (optionally with partial, reordered writeback). Clones share the same files.
#[derive(Debug, Default, Clone)]
pub struct MemVfs {
    dir: Arc<parking_lot::Mutex<MemDir>>,
}

#[derive(Debug)]
struct MemFile {
    inode: Arc<MemInode>,
    writable: bool,
}

#[derive(Debug)]
struct MemLock {
    vfs: MemVfs,
    path: std::path::PathBuf,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.vfs.dir.lock().locked.remove(&self.path);
    }
}

impl LockGuard for MemLock {}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only")
}

impl VFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let data = self.inode.data.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()) {
            Some(end) if end <= data.len() => {
                buf.copy_from_slice(&data[start..end]);
                Ok(())
            }
            _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        let mut data = self.inode.data.lock();
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::StorageFull))?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::StorageFull))?;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        let mut dirty = self.inode.dirty_from.lock();
        *dirty = (*dirty).min(start);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let data = self.inode.data.lock();
        let mut synced = self.inode.synced.lock();
        let mut dirty = self.inode.dirty_from.lock();
        let from = (*dirty).min(synced.len()).min(data.len());
        synced.truncate(from);
        synced.extend_from_slice(&data[from..]);
        *dirty = usize::MAX;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.inode.data.lock().len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::StorageFull))?;
        let mut data = self.inode.data.lock();
        let mut dirty = self.inode.dirty_from.lock();
        *dirty = (*dirty).min(len).min(data.len());
        data.resize(len, 0);
        Ok(())
    }
}

impl MemVfs {
    /// An empty in-memory file system.
    pub fn new() -> Self {
        MemVfs::default()
    }

    /// Creates (or replaces) a file with these bytes, durable as if fsynced and its
    /// directory synced.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) {
        let inode = Arc::new(MemInode {
            data: parking_lot::Mutex::new(bytes.to_vec()),
            synced: parking_lot::Mutex::new(bytes.to_vec()),
            dirty_from: parking_lot::Mutex::new(usize::MAX),
        });
        let mut d = self.dir.lock();
        d.names.insert(path.to_owned(), inode.clone());
        d.durable.insert(path.to_owned(), inode);
    }

    /// The current bytes of a file, if it exists.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        let d = self.dir.lock();
        d.names.get(path).map(|i| i.data.lock().clone())
    }

    /// Simulates a power loss: names revert to the last `sync_dir`, and every file's bytes
    /// to its last `sync_data` plus what `mode` lets through of the unsynced writes. Drop
    /// (or stop using) every database handle first; locks are released.
    pub fn power_loss(&self, mode: Writeback) {
        let mut d = self.dir.lock();
        if std::env::var_os("CASK_FUZZ_TRACE").is_some() {
            let mut all: Vec<_> = d.names.keys().chain(d.durable.keys()).collect();
            all.sort();
            all.dedup();
            for p in all {
                let cur = d.names.get(p);
                let dur = d.durable.get(p);
                eprintln!(
                    "power loss: {} now {:?} durable {:?} same inode {}",
                    p.display(),
                    cur.map(|i| (i.data.lock().len(), i.synced.lock().len())),
                    dur.map(|i| (i.data.lock().len(), i.synced.lock().len())),
                    matches!((cur, dur), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
                );
            }
        }
        d.names = d.durable.clone();
        d.locked.clear();
        let mut paths: Vec<_> = d.names.keys().cloned().collect();
        paths.sort();
        for (i, path) in paths.iter().enumerate() {
            let inode = &d.names[path];
            let mode = match mode {
                Writeback::None => Writeback::None,
                Writeback::Blocks { block, seed } => Writeback::Blocks {
                    block,
                    seed: seed.wrapping_add(i as u64),
                },
            };
            let now = inode.data.lock().clone();
            let after = writeback(&inode.synced.lock(), &now, mode);
            *inode.synced.lock() = after.clone();
            *inode.data.lock() = after;
            *inode.dirty_from.lock() = usize::MAX;
        }
    }
}

impl Vfs for MemVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let mut d = self.dir.lock();
        let inode = match d.names.get(path) {
            Some(i) => i.clone(),
            None if create => {
                let i = Arc::new(MemInode {
                    dirty_from: parking_lot::Mutex::new(0),
                    ..MemInode::default()
                });
                d.names.insert(path.to_owned(), i.clone());
                i
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        Ok(Arc::new(MemFile {
            inode,
            writable: true,
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let d = self.dir.lock();
        let inode = d
            .names
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Arc::new(MemFile {
            inode,
            writable: false,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut d = self.dir.lock();
        let inode = d
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        d.names.insert(to.to_owned(), inode);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut d = self.dir.lock();
        d.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut d = self.dir.lock();
        let inside: Vec<_> = d
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        d.durable.retain(|p, _| p.parent() != Some(dir));
        d.durable.extend(inside);
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let d = self.dir.lock();
        Ok(d.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut d = self.dir.lock();
        if !d.locked.insert(path.to_owned()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(Box::new(MemLock {
            vfs: self.clone(),
            path: path.to_owned(),
        }))
    }
}
