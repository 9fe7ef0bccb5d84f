//! A fault-injecting [`Vfs`] for tests: ENOSPC and EIO on writes or fsyncs, process
//! crashes at any mutating operation, torn writes, and an fsync gate.
//!
//! [`FaultVfs`] wraps another [`Vfs`] (by default [`OsVfs`]) and routes every operation
//! through a shared [`FaultController`]. The controller numbers the *mutating* operations
//! (1, 2, 3, ...): opening a file for writing (`open`, with or without `create`), `write`,
//! `set_len`, `fsync` (`sync_data`), `rename`, `remove` and `sync_dir`. Reads, `len`,
//! `list`, `create_dir_all` and `lock` are never counted and never fail.
//!
//! A test arms one fault at a time with [`FaultController::arm`]: from operation number `at`
//! on, the first operation that matches the [`Target`] fails, and then:
//! - [`Mode::Once`]: the fault disarms itself (a transient error);
//! - [`Mode::Forever`]: every later matching operation fails too (a dead disk);
//! - [`Mode::Crash`]: every later mutating operation of any kind fails with
//!   [`CRASH_ERRNO`]. This models the process dying at that point: nothing after it reaches
//!   the file system, while everything written before it (fsynced or not) stays in the page
//!   cache, as after a real process crash. The test drops the database and reopens the
//!   directory with a plain [`OsVfs`] to see what the crash left.
//! - [`Mode::TornCrash`]: like `Crash`, except that if the operation that triggers it is a
//!   write, the first `keep` bytes of it reach the file before the crash.
//!
//! [`FaultController::ops`] tells how many mutating operations have been performed, so a
//! test can loop `at = 1, 2, 3, ...` until a workload completes without meeting its fault,
//! which proves every operation was a crash point once.
//!
//! The fsync gate ([`FaultController::close_sync_gate`]) makes every `sync_data` block until
//! the gate is opened again, so a test can hold a writer inside its fsync and check that
//! readers still make progress.
//!
//! Power loss: after [`FaultController::track_durability`], the controller models what is
//! on stable storage, pessimistically: a file's bytes as of its last `sync_data`, and the
//! directory's entries (creations, renames, removals) as of the last `sync_dir`.
//! [`FaultController::power_loss`] then rewrites the real directory to exactly that state:
//! unsynced appends and truncations are undone, files whose creation was never made
//! durable disappear, unsynced renames and removals are reverted. (A real file system may
//! keep more; the engine must be correct even if it keeps nothing more.) Arm a crash first
//! so the dying database cannot fsync on its way out.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::vfs::{LockGuard, OsVfs, VFile, Vfs, Writeback, writeback};

/// The raw OS error returned by every operation after a simulated crash (`EIO`).
pub const CRASH_ERRNO: i32 = 5;
/// `ENOSPC`: no space left on device (`io::ErrorKind::StorageFull`).
pub const ENOSPC: i32 = 28;
/// `EIO`: input/output error.
pub const EIO: i32 = 5;

/// A kind of mutating operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Opening a file for reading and writing (with or without creating it).
    Open,
    /// `write_all_at`.
    Write,
    /// `set_len`.
    SetLen,
    /// `sync_data`.
    Sync,
    /// `rename`.
    Rename,
    /// `remove`.
    Remove,
    /// `sync_dir`.
    SyncDir,
}

/// Which operations an armed fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every mutating operation.
    All,
    /// Only `write_all_at`.
    Writes,
    /// Only `sync_data` (file fsyncs; `sync_dir` is not included).
    Syncs,
}

impl Target {
    fn matches(self, op: Op) -> bool {
        match self {
            Target::All => true,
            Target::Writes => op == Op::Write,
            Target::Syncs => op == Op::Sync,
        }
    }
}

/// What happens once an armed fault triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fail the triggering operation only.
    Once,
    /// Fail the triggering operation and every later matching one.
    Forever,
    /// Fail the triggering operation and every later mutating operation (process death).
    Crash,
    /// As `Crash`, but a triggering write first writes its first `keep` bytes.
    TornCrash {
        /// Bytes of the torn write that reach the file.
        keep: usize,
    },
}

#[derive(Clone, Copy, Debug)]
struct Armed {
    at: u64,
    target: Target,
    mode: Mode,
    errno: i32,
}

#[derive(Debug, Default)]
struct State {
    ops: u64,
    armed: Option<Armed>,
    /// Set once a fault has triggered (for `Forever`: the target; for crashes: all ops).
    failing: Option<(Target, i32)>,
    triggered: u64,
    sync_gate_closed: bool,
    blocked_in_sync: usize,
    skip_syncs: bool,
    durability: Option<Durability>,
    /// File fsyncs that completed successfully.
    syncs_done: u64,
}

/// The modelled stable storage of one directory (see the module docs).
#[derive(Debug, Default)]
struct Durability {
    next_inode: u64,
    /// The directory as the running process sees it: name to inode.
    names: HashMap<PathBuf, u64>,
    /// The directory as of the last `sync_dir`.
    durable_names: HashMap<PathBuf, u64>,
    /// Each inode's bytes as of its last `sync_data`.
    synced: HashMap<u64, Vec<u8>>,
}

/// What the controller decided for one operation.
enum Verdict {
    Pass,
    /// Counted and passed, but not performed (fsyncs skipped for speed).
    Skip,
    Fail(i32),
    Torn(usize, i32),
}

/// The shared switchboard of a [`FaultVfs`]; see the module docs.
#[derive(Debug, Default)]
pub struct FaultController {
    state: Mutex<State>,
    gate: Condvar,
}

impl FaultController {
    /// Arms a fault: from mutating operation number `at` (1-based) on, the first operation
    /// matching `target` fails with the raw OS error `errno`, then behaves as `mode` says.
    /// Replaces any previously armed fault and clears a triggered one.
    pub fn arm(&self, at: u64, target: Target, mode: Mode, errno: i32) {
        let mut s = self.state.lock();
        s.armed = Some(Armed {
            at,
            target,
            mode,
            errno,
        });
        s.failing = None;
    }

    /// Arms a crash (every mutating operation fails) at mutating operation `at`.
    pub fn crash_at(&self, at: u64) {
        self.arm(at, Target::All, Mode::Crash, CRASH_ERRNO);
    }

    /// Disarms everything: operations pass again (the counter keeps counting).
    pub fn clear(&self) {
        let mut s = self.state.lock();
        s.armed = None;
        s.failing = None;
    }

    /// Mutating operations performed (or attempted) so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Resets the operation counter to zero (faults armed later count from here).
    pub fn reset_ops(&self) {
        self.state.lock().ops = 0;
    }

    /// How many operations have failed because of an injected fault.
    pub fn triggered(&self) -> u64 {
        self.state.lock().triggered
    }

    /// Makes every later `sync_data` block until [`FaultController::open_sync_gate`].
    pub fn close_sync_gate(&self) {
        self.state.lock().sync_gate_closed = true;
    }

    /// Releases every blocked `sync_data`.
    pub fn open_sync_gate(&self) {
        self.state.lock().sync_gate_closed = false;
        self.gate.notify_all();
    }

    /// Makes `sync_data` and `sync_dir` succeed without doing anything (still counted and
    /// still subject to faults): for suites where durability is not under test and fsync
    /// time would dominate.
    pub fn skip_syncs(&self, skip: bool) {
        self.state.lock().skip_syncs = skip;
    }

    /// Starts modelling stable storage for `dir`, whose current files count as durable.
    ///
    /// # Errors
    /// I/O errors reading the directory.
    pub fn track_durability(&self, dir: &Path) -> io::Result<()> {
        let mut d = Durability::default();
        for e in std::fs::read_dir(dir)? {
            let path = e?.path();
            if path.file_name().is_some_and(|n| n == "LOCK") || !path.is_file() {
                continue;
            }
            d.next_inode += 1;
            d.names.insert(path.clone(), d.next_inode);
            d.durable_names.insert(path.clone(), d.next_inode);
            d.synced.insert(d.next_inode, std::fs::read(&path)?);
        }
        self.state.lock().durability = Some(d);
        Ok(())
    }

    /// Rewrites `dir` to the modelled stable state (see the module docs) and stops
    /// tracking. Call it after the database is dropped.
    ///
    /// # Errors
    /// I/O errors rewriting the directory; `NotFound` if durability was not tracked.
    pub fn power_loss(&self, dir: &Path) -> io::Result<()> {
        self.power_loss_inner(dir, None, None)
    }

    /// Like [`FaultController::power_loss`], but a file whose current bytes extend its
    /// fsynced image (unsynced appends) keeps a random-length prefix of those appends, as
    /// when the OS had written back part of them: torn tails, in any file, chosen by `seed`.
    ///
    /// # Errors
    /// As [`FaultController::power_loss`].
    pub fn power_loss_torn(&self, dir: &Path, seed: u64) -> io::Result<()> {
        self.power_loss_inner(dir, Some(seed), None)
    }

    /// Like [`FaultController::power_loss`], but unsynced appends survive block by block
    /// as [`Writeback::Blocks`] describes: `block`-sized blocks (512 for sectors, 4096 for
    /// pages) land or not independently, so a later block can survive an earlier one
    /// (reordered writeback, a hole of zeros), and each file's length may be any block
    /// boundary between its synced and its current length. Files are decided
    /// independently, so writes to different files are reordered too.
    ///
    /// # Errors
    /// As [`FaultController::power_loss`].
    pub fn power_loss_blocks(&self, dir: &Path, block: usize, seed: u64) -> io::Result<()> {
        self.power_loss_inner(dir, None, Some((block, seed)))
    }

    fn power_loss_inner(
        &self,
        dir: &Path,
        seed: Option<u64>,
        blocks: Option<(usize, u64)>,
    ) -> io::Result<()> {
        let mut rng = seed.map(|s| s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let d = self
            .state
            .lock()
            .durability
            .take()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        for e in std::fs::read_dir(dir)? {
            let path = e?.path();
            if path.file_name().is_some_and(|n| n == "LOCK") || !path.is_file() {
                continue;
            }
            if !d.durable_names.contains_key(&path) {
                std::fs::remove_file(&path)?;
            }
        }
        let mut names: Vec<_> = d.durable_names.iter().collect();
        names.sort();
        for (path, inode) in names {
            let mut bytes = d.synced.get(inode).cloned().unwrap_or_default();
            if let Some((block, seed)) = blocks
                && d.names.get(path) == Some(inode)
            {
                // The name still refers to this file: its current bytes are its own.
                let now = std::fs::read(path).unwrap_or_default();
                let seed = seed.wrapping_add(*inode);
                bytes = writeback(&bytes, &now, Writeback::Blocks { block, seed });
            } else if let Some(x) = rng.as_mut() {
                let now = std::fs::read(path).unwrap_or_default();
                if now.len() > bytes.len() && now.starts_with(&bytes) {
                    // xorshift64: a dependency-free, reproducible choice.
                    *x ^= *x << 13;
                    *x ^= *x >> 7;
                    *x ^= *x << 17;
                    let extra = (*x % (now.len() - bytes.len() + 1) as u64) as usize;
                    bytes.extend_from_slice(&now[bytes.len()..bytes.len() + extra]);
                }
            }
            std::fs::write(path, bytes)?;
        }
        Ok(())
    }

    /// The inode of a file just opened for writing (a new one if the name is new: it has no
    /// durable bytes until its first fsync, and no durable name until a `sync_dir`).
    fn opened(&self, path: &Path) -> Option<u64> {
        let mut s = self.state.lock();
        let d = s.durability.as_mut()?;
        if let Some(inode) = d.names.get(path) {
            return Some(*inode);
        }
        d.next_inode += 1;
        let inode = d.next_inode;
        d.names.insert(path.to_owned(), inode);
        Some(inode)
    }

    fn synced(&self, inode: Option<u64>, file: &dyn VFile) -> io::Result<()> {
        let Some(inode) = inode else { return Ok(()) };
        // Read under the lock, so two concurrent fsyncs of one file cannot record an older
        // image over a newer one.
        let mut s = self.state.lock();
        let Some(d) = s.durability.as_mut() else {
            return Ok(());
        };
        let mut bytes = vec![0u8; file.len()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        d.synced.insert(inode, bytes);
        Ok(())
    }

    fn with_durability(&self, f: impl FnOnce(&mut Durability)) {
        if let Some(d) = self.state.lock().durability.as_mut() {
            f(d);
        }
    }

    /// How many file fsyncs (`sync_data`) have completed successfully so far. A write
    /// acknowledged when this read `s` is covered by any fsync that completes after the
    /// count reaches `s + 2` (at most one fsync can have been under way at the ack).
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs_done
    }

    /// Number of threads currently blocked at the closed fsync gate.
    pub fn blocked_in_sync(&self) -> usize {
        self.state.lock().blocked_in_sync
    }

    fn check(&self, op: Op) -> Verdict {
        let mut s = self.state.lock();
        if op == Op::Sync && s.sync_gate_closed {
            s.blocked_in_sync += 1;
            while s.sync_gate_closed {
                self.gate.wait(&mut s);
            }
            s.blocked_in_sync -= 1;
        }
        s.ops += 1;
        if let Some((target, errno)) = s.failing
            && target.matches(op)
        {
            s.triggered += 1;
            return Verdict::Fail(errno);
        }
        let pass = if s.skip_syncs && matches!(op, Op::Sync | Op::SyncDir) {
            Verdict::Skip
        } else {
            Verdict::Pass
        };
        let Some(a) = s.armed else {
            return pass;
        };
        if s.ops < a.at || !a.target.matches(op) {
            return pass;
        }
        s.triggered += 1;
        s.armed = None;
        match a.mode {
            Mode::Once => Verdict::Fail(a.errno),
            Mode::Forever => {
                s.failing = Some((a.target, a.errno));
                Verdict::Fail(a.errno)
            }
            Mode::Crash => {
                s.failing = Some((Target::All, a.errno));
                Verdict::Fail(a.errno)
            }
            Mode::TornCrash { keep } => {
                s.failing = Some((Target::All, a.errno));
                if op == Op::Write {
                    Verdict::Torn(keep, a.errno)
                } else {
                    Verdict::Fail(a.errno)
                }
            }
        }
    }

    /// `Ok(true)`: perform the operation; `Ok(false)`: skip it, reporting success.
    fn gate(&self, op: Op) -> io::Result<bool> {
        match self.check(op) {
            Verdict::Pass => Ok(true),
            Verdict::Skip => Ok(false),
            Verdict::Fail(errno) | Verdict::Torn(_, errno) => {
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

/// A [`Vfs`] that injects the faults its [`FaultController`] is armed with.
#[derive(Clone)]
pub struct FaultVfs {
    inner: Arc<dyn Vfs>,
    ctl: Arc<FaultController>,
}

impl fmt::Debug for FaultVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultVfs").field("ctl", &self.ctl).finish()
    }
}

impl Default for FaultVfs {
    fn default() -> Self {
        FaultVfs::new()
    }
}

impl FaultVfs {
    /// A fault-injecting wrapper around the real file system, with no fault armed.
    pub fn new() -> Self {
        FaultVfs::wrap(Arc::new(OsVfs))
    }

    /// A fault-injecting wrapper around `inner`.
    pub fn wrap(inner: Arc<dyn Vfs>) -> Self {
        FaultVfs {
            inner,
            ctl: Arc::new(FaultController::default()),
        }
    }

    /// The controller shared by this VFS and every file it opened.
    pub fn controller(&self) -> Arc<FaultController> {
        self.ctl.clone()
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn VFile>,
    ctl: Arc<FaultController>,
    /// The file's identity in the durability model, when tracked.
    inode: Option<u64>,
}

impl VFile for FaultFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.ctl.check(Op::Write) {
            Verdict::Pass | Verdict::Skip => self.inner.write_all_at(buf, offset),
            Verdict::Fail(errno) => Err(io::Error::from_raw_os_error(errno)),
            Verdict::Torn(keep, errno) => {
                let keep = keep.min(buf.len());
                self.inner.write_all_at(&buf[..keep], offset)?;
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.ctl.gate(Op::Sync)? {
            self.inner.sync_data()?;
        }
        self.ctl.synced(self.inode, &*self.inner)?;
        self.ctl.state.lock().syncs_done += 1;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.ctl.gate(Op::SetLen)?;
        self.inner.set_len(len)
    }
}

impl Vfs for FaultVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        self.ctl.gate(Op::Open)?;
        let inner = self.inner.open(path, create)?;
        let inode = self.ctl.opened(path);
        Ok(Arc::new(FaultFile {
            inner,
            ctl: self.ctl.clone(),
            inode,
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        Ok(Arc::new(FaultFile {
            inner: self.inner.open_read(path)?,
            ctl: self.ctl.clone(),
            inode: None,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.ctl.gate(Op::Rename)?;
        self.inner.rename(from, to)?;
        self.ctl.with_durability(|d| {
            if let Some(inode) = d.names.remove(from) {
                d.names.insert(to.to_owned(), inode);
            }
        });
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.ctl.gate(Op::Remove)?;
        self.inner.remove(path)?;
        self.ctl.with_durability(|d| {
            d.names.remove(path);
        });
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.ctl.gate(Op::SyncDir)? {
            self.inner.sync_dir(dir)?;
        }
        self.ctl
            .with_durability(|d| d.durable_names = d.names.clone());
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.inner.lock(path)
    }
}
