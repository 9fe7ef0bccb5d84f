//! The bodies of the engine's fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the library
//! so that a stable `cargo test` replays every corpus file through exactly the same code
//! (`crates/engine/tests/fuzz_corpus.rs`). Not a stable API.
//!
//! - [`data_dir`]: arbitrary bytes become the segment and hint files of a data directory
//!   (in a [`MemVfs`]); opening, reading, compacting, reopening, `check` and
//!   `check --repair` must never panic, hang or allocate without bound, and a database that
//!   opens must serve each key the same bytes through `get` and `scan`.
//! - [`stateful`]: arbitrary bytes become a sequence of operations (sets, deletes, batches,
//!   compactions, clean reopens, injected EIO/ENOSPC, crashes at the Nth file operation and
//!   power losses with partial writeback) run against the engine under
//!   [`SyncPolicy::Always`] and against a `BTreeMap` model. After every reopen the database
//!   must hold exactly the acknowledged writes (or those plus the one write that failed),
//!   and after a failure it must refuse every write until reopened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::fault::{EIO, ENOSPC, FaultVfs, Mode, Target};
use crate::vfs::{MemVfs, Writeback};
use crate::{Batch, Clock, Db, Error, Options, SyncPolicy};

/// A clock that never moves: expiry decisions must not depend on when the fuzzer runs.
#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000
    }
}

/// The directory the in-memory files live in (only its name is used; `check` wants a real
/// directory to exist at that path, and the temporary directory always does).
fn fuzz_dir() -> PathBuf {
    std::env::temp_dir()
}

/// Limits that bound what a hostile file can make the engine allocate.
fn bounded(vfs: Arc<dyn crate::vfs::Vfs>, use_hint_files: bool, segment_size: u64) -> Options {
    Options {
        sync: SyncPolicy::Always,
        segment_size,
        max_key_size: 1024,
        max_value_size: 1 << 20,
        max_batch_size: 4 << 20,
        background_compaction: false,
        // No thread per open: the targets open thousands of databases a second, and
        // `stateful` writes hint files as one of its steps.
        background_threads: false,
        use_hint_files,
        clock: Arc::new(FixedClock),
        vfs,
        ..Options::default()
    }
}

/// Splits fuzz input into files: a flags byte, then entries of one name byte (bit 7: hint
/// file, bits 0-2: segment id - 1), a little-endian `u16` length and that many bytes (fewer
/// if the input ends). At most 8 entries.
pub fn decode_dir(data: &[u8]) -> (u8, Vec<(String, Vec<u8>)>) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut files = Vec::new();
    while rest.len() >= 3 && files.len() < 8 {
        let name = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let take = len.min(rest.len());
        let id = u32::from(name & 7) + 1;
        let file = if name & 0x80 != 0 {
            format!("{id:010}.hint")
        } else {
            format!("{id:010}.seg")
        };
        files.push((file, rest[..take].to_vec()));
        rest = &rest[take..];
    }
    (flags, files)
}

/// The inverse of [`decode_dir`], for building seed inputs from real directories. Files
/// over 65535 bytes are cut; names that are not `NNNNNNNNNN.seg` / `.hint` with an id of
/// 1 to 8 are skipped.
pub fn encode_dir(flags: u8, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![flags];
    for (name, bytes) in files.iter().take(8) {
        let (stem, hint) = if let Some(s) = name.strip_suffix(".seg") {
            (s, false)
        } else if let Some(s) = name.strip_suffix(".hint") {
            (s, true)
        } else {
            continue;
        };
        let Ok(id) = stem.parse::<u32>() else {
            continue;
        };
        if !(1..=8).contains(&id) {
            continue;
        }
        out.push(((id - 1) as u8) | if hint { 0x80 } else { 0 });
        let len = bytes.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&bytes[..len]);
    }
    out
}

/// Every live key and value, in key order.
type Items = Vec<(Vec<u8>, Vec<u8>)>;

fn contents(db: &Db) -> Result<Items, Error> {
    db.scan(..).collect()
}

/// Fuzz target `data_dir`: see the module docs. Panics only on a violated invariant.
pub fn data_dir(data: &[u8]) {
    let (flags, files) = decode_dir(data);
    let dir = fuzz_dir();
    let mem = MemVfs::new();
    for (name, bytes) in &files {
        mem.put_file(&dir.join(name), bytes);
    }
    let use_hints = flags & 1 == 0;
    let segment_size = if flags & 2 == 0 { 4096 } else { 1 << 20 };
    let opts = || bounded(Arc::new(mem.clone()), use_hints, segment_size);
    if let Ok(db) = Db::open(&dir, opts()) {
        let scanned = contents(&db);
        if let Ok(items) = &scanned {
            for (k, v) in items {
                // Never two different answers for one key.
                if let Ok(got) = db.get(k) {
                    assert_eq!(got.as_deref(), Some(v.as_slice()), "get and scan disagree");
                }
            }
        }
        let _ = db.set(b"fuzz-new-key", b"value");
        let compacted = db.compact().is_ok();
        let closed = db.close().is_ok();
        drop(db);
        if let (Ok(mut before), true, true) = (scanned, compacted, closed) {
            // A database that opened, scanned, took a write, compacted and closed cleanly
            // must reopen with the same contents.
            let db = Db::open(&dir, opts()).expect("reopen after a clean compaction");
            before.retain(|(k, _)| k != b"fuzz-new-key");
            before.push((b"fuzz-new-key".to_vec(), b"value".to_vec()));
            before.sort();
            assert_eq!(contents(&db).ok(), Some(before), "contents changed");
            drop(db);
        }
    }
    let _ = crate::check(&dir, &opts(), false, &mut |_, _| {});
    if flags & 4 != 0
        && let Ok(report) = crate::check(&dir, &opts(), true, &mut |_, _| {})
        && report.repaired
    {
        // Whatever repair leaves must not make anything panic either.
        if let Ok(db) = Db::open(&dir, opts()) {
            let _ = contents(&db);
        }
    }
}

/// The model of [`stateful`]: key to value.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

enum Step {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Compact,
}

fn key(b: u8) -> Vec<u8> {
    format!("k{:02}", b % 24).into_bytes()
}

fn value(n: u64, len: u8) -> Vec<u8> {
    let tag = format!("v{n}-");
    tag.bytes().cycle().take(usize::from(len) * 4 + 1).collect()
}

fn apply_model(m: &mut Model, s: &Step) {
    match s {
        Step::Set(k, v) => {
            m.insert(k.clone(), v.clone());
        }
        Step::Delete(k) => {
            m.remove(k);
        }
        Step::Batch(ops) => {
            for (k, v) in ops {
                match v {
                    Some(v) => m.insert(k.clone(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        Step::Compact => {}
    }
}

fn run_step(db: &Db, s: &Step) -> Result<(), Error> {
    match s {
        Step::Set(k, v) => db.set(k, v).map(|_| ()),
        Step::Delete(k) => db.delete(k).map(|_| ()),
        Step::Batch(ops) => {
            let mut b = Batch::new();
            for (k, v) in ops {
                match v {
                    Some(v) => b.put(k.clone(), v.clone()),
                    None => b.delete(k.clone()),
                };
            }
            db.write(&b).map(|_| ())
        }
        Step::Compact => db.compact().map(|_| ()),
    }
}

fn as_model(db: &Db) -> Option<Model> {
    contents(db).ok().map(|v| v.into_iter().collect())
}

/// How the [`stateful`] target's database dies.
#[derive(Clone, Copy)]
enum Death {
    /// The process exits cleanly (close).
    Clean,
    /// The machine loses power: only fsynced data survives, plus what `Writeback` lets
    /// through.
    Power(Writeback),
}

struct Machine {
    mem: MemVfs,
    dir: PathBuf,
    segment_size: u64,
    writeback: Writeback,
    db: Option<(Db, FaultVfs)>,
    acked: Model,
    /// The acknowledged state plus the write that failed, if one did since the last open.
    failed: Option<Model>,
    counter: u64,
}

impl Machine {
    fn open(&mut self) {
        let vfs = FaultVfs::wrap(Arc::new(self.mem.clone()));
        let opts = bounded(Arc::new(vfs.clone()), true, self.segment_size);
        // Whatever the power loss left (torn, reordered writeback included), the database
        // must open: damage no durability mark vouches for is a torn tail.
        let db = Db::open(&self.dir, opts)
            .unwrap_or_else(|e| panic!("the database must open after any crash: {e:?}"));
        let got = as_model(&db).expect("a reopened database must be readable");
        let ok = got == self.acked || self.failed.as_ref() == Some(&got);
        assert!(
            ok,
            "reopened state is neither the acknowledged writes nor those plus the failed \
             one:\n got   {:?}\n acked {:?}\n failed {:?}",
            got.keys().collect::<Vec<_>>(),
            self.acked.keys().collect::<Vec<_>>(),
            self.failed.as_ref().map(|f| f.keys().collect::<Vec<_>>())
        );
        self.acked = got;
        self.failed = None;
        self.db = Some((db, vfs));
    }

    fn kill(&mut self, death: Death) {
        let Some((db, vfs)) = self.db.take() else {
            return;
        };
        match death {
            Death::Clean => {
                let _ = db.close();
                drop(db);
            }
            Death::Power(wb) => {
                // Nothing the dying process does may reach the disk any more.
                vfs.controller().crash_at(vfs.controller().ops() + 1);
                drop(db);
                self.mem.power_loss(wb);
            }
        }
        self.open();
    }

    fn step(&mut self, s: Step) {
        let Some((db, _)) = &self.db else { return };
        let poisoned_before = db.is_poisoned() || self.failed.is_some();
        match run_step(db, &s) {
            Ok(()) => {
                assert!(
                    !poisoned_before || matches!(s, Step::Compact),
                    "a write succeeded after a failure"
                );
                apply_model(&mut self.acked, &s);
            }
            Err(e) => {
                if matches!(s, Step::Compact) && !db.is_poisoned() {
                    // A failed compaction that kept the database writable: the old files
                    // are still authoritative.
                    let now = as_model(db);
                    assert!(
                        now.is_none() || now.as_ref() == Some(&self.acked),
                        "a failed compaction changed the contents"
                    );
                    return;
                }
                assert!(
                    matches!(e, Error::Io(_) | Error::Poisoned(_)),
                    "unexpected error {e:?}"
                );
                assert!(db.is_poisoned(), "a failed write must poison the database");
                if self.failed.is_none() {
                    let mut m = self.acked.clone();
                    apply_model(&mut m, &s);
                    self.failed = Some(m);
                }
            }
        }
    }
}

/// Fuzz target `stateful`: see the module docs. Panics only on a violated invariant.
pub fn stateful(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte().unwrap_or(0);
    let mut m = Machine {
        mem: MemVfs::new(),
        dir: fuzz_dir(),
        segment_size: [512, 1024, 4096, 1 << 20][usize::from(flags & 3)],
        // Writeback of unsynced data at power loss: none, or a random prefix of the
        // unsynced bytes in 512-byte sectors / 4 KiB pages.
        writeback: Writeback::None,
        db: None,
        acked: Model::new(),
        failed: None,
        counter: 0,
    };
    m.open();
    let trace = std::env::var_os("CASK_FUZZ_TRACE").is_some();
    let mut steps = 0;
    while let Some(op) = input.byte() {
        if trace {
            eprintln!(
                "step {steps}: op {} arg {:?} acked {} keys, failed {}",
                op % 12,
                input.0.first(),
                m.acked.len(),
                m.failed.is_some()
            );
        }
        steps += 1;
        if steps > 400 {
            break;
        }
        m.counter += 1;
        let n = m.counter;
        let arg = input.byte().unwrap_or(0);
        match op % 12 {
            0..=3 => m.step(Step::Set(key(arg), value(n, op / 12))),
            4 => m.step(Step::Delete(key(arg))),
            5 => {
                let ops = (0..=(arg % 3))
                    .map(|i| {
                        let k = key(arg.wrapping_mul(7).wrapping_add(i));
                        let v = (op / 12 + i) % 3 != 0;
                        (k, v.then(|| value(n, i)))
                    })
                    .collect();
                m.step(Step::Batch(ops));
            }
            6 => m.step(Step::Compact),
            7 => m.kill(Death::Clean),
            8 => {
                let wb = match arg % 3 {
                    0 => m.writeback,
                    1 => Writeback::Blocks {
                        block: 512,
                        seed: u64::from(op),
                    },
                    _ => Writeback::Blocks {
                        block: 4096,
                        seed: u64::from(op),
                    },
                };
                m.kill(Death::Power(wb));
            }
            9 => {
                // Arm a fault a few operations ahead.
                if let Some((_, vfs)) = &m.db {
                    let ctl = vfs.controller();
                    let at = ctl.ops() + u64::from(arg % 16) + 1;
                    let (target, errno) = match (op / 12) % 4 {
                        0 => (Target::Writes, EIO),
                        1 => (Target::Writes, ENOSPC),
                        2 => (Target::Syncs, EIO),
                        _ => (Target::All, ENOSPC),
                    };
                    let mode = match arg / 16 % 3 {
                        0 => Mode::Once,
                        1 => Mode::Forever,
                        _ => Mode::Crash,
                    };
                    ctl.arm(at, target, mode, errno);
                }
            }
            10 => {
                // A read of one key must agree with the model (or the failed write).
                if let Some((db, _)) = &m.db
                    && let Ok(got) = db.get(&key(arg))
                {
                    let want = m.acked.get(&key(arg));
                    let alt = m.failed.as_ref().and_then(|f| f.get(&key(arg)));
                    assert!(
                        got.as_ref() == want || (m.failed.is_some() && got.as_ref() == alt),
                        "get returned a value the model does not have"
                    );
                }
            }
            _ => {
                if let Some((db, _)) = &m.db {
                    // Hint files for sealed segments (the background thread's job, which
                    // the fuzzers run without), or an explicit sync.
                    let _ = if arg % 2 == 0 {
                        db.write_pending_hints()
                    } else {
                        db.sync()
                    };
                }
            }
        }
    }
    m.kill(Death::Power(Writeback::None));
}

/// A directory of real database files for seeding the `data_dir` corpus: runs a small
/// workload in memory and returns its files (name, bytes).
pub fn sample_dir(seed: u64, segment_size: u64) -> Vec<(String, Vec<u8>)> {
    let mem = MemVfs::new();
    let dir = fuzz_dir();
    let db =
        Db::open(&dir, bounded(Arc::new(mem.clone()), true, segment_size)).expect("open in memory");
    for i in 0..(40 + seed % 40) {
        let k = key((i * 7 + seed) as u8);
        if i % 5 == 4 {
            let _ = db.delete(&k);
        } else if i % 9 == 8 {
            let mut b = Batch::new();
            b.put(k.clone(), value(i, 3)).delete(key(i as u8));
            let _ = db.write(&b);
        } else {
            let _ = db.set(&k, &value(i, (i % 50) as u8));
        }
        if i == 30 {
            let _ = db.compact();
        }
    }
    let _ = db.close();
    let mut names: Vec<_> = crate::vfs::Vfs::list(&mem, &dir).unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), mem.file(&dir.join(&n))?)))
        .collect()
}
