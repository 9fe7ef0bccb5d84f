//! Fault injection through the VFS seam (`cask_engine::fault::FaultVfs`).
//!
//! For each kind of fault (EIO or ENOSPC on writes, on fsyncs, once or forever, on any
//! mutating operation, process crashes with and without torn writes) and for N = 1, 2, 3,
//! ... a workload under `SyncPolicy::Always` meets the fault at its Nth mutating
//! operation, until it completes without meeting it. Then:
//! - the failing call returns an error, and every later write returns `Poisoned` (even if
//!   the disk has recovered) until reopen; reads keep working and show exactly the
//!   acknowledged writes, or those plus the failed one (a failed fsync after its append);
//! - reopening with the real file system yields exactly the acknowledged writes, or those
//!   plus the failed write (its bytes may have reached the file before the error); after a
//!   failed `write` that wrote nothing, exactly the acknowledged writes;
//! - a failed compaction either leaves the database writable and correct, or poisons it.

mod common;

use std::sync::Arc;

use cask_engine::fault::{EIO, ENOSPC, FaultVfs, Mode, Target};
use cask_engine::{Batch, Db, Error, Options, SyncPolicy, WriteOptions};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STEPS: u32 = 45;

#[derive(Debug)]
enum Step {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Compact,
}

fn step(i: u32) -> Step {
    let mut rng = StdRng::seed_from_u64(i as u64);
    let key = |rng: &mut StdRng| format!("key{:02}", rng.random_range(0..24)).into_bytes();
    let val = |rng: &mut StdRng| {
        let n = rng.random_range(20..160);
        (0..n)
            .map(|j| (i as u8).wrapping_add(j as u8))
            .collect::<Vec<u8>>()
    };
    if i == 22 || i == 40 {
        return Step::Compact;
    }
    match rng.random_range(0..10) {
        0..6 => Step::Set(key(&mut rng), val(&mut rng)),
        6..8 => Step::Delete(key(&mut rng)),
        _ => Step::Batch(
            (0..rng.random_range(1..5))
                .map(|_| {
                    let k = key(&mut rng);
                    (k, rng.random_bool(0.7).then(|| val(&mut rng)))
                })
                .collect(),
        ),
    }
}

/// Applies a step to the database and, when it succeeds, to the model.
fn apply(db: &Db, m: &mut Model, s: &Step) -> cask_engine::Result<()> {
    match s {
        Step::Set(k, v) => {
            let ver = db.set(k, v)?;
            m.set(k, v, None, ver);
        }
        Step::Delete(k) => {
            db.delete(k)?;
            m.delete(k);
        }
        Step::Batch(ops) => {
            let mut b = Batch::new();
            for (k, v) in ops {
                match v {
                    Some(v) => b.put(k.clone(), v.clone()),
                    None => b.delete(k.clone()),
                };
            }
            let ver = db.write(&b)?;
            for (k, v) in ops {
                match v {
                    Some(v) => m.set(k, v, None, ver),
                    None => m.delete(k),
                }
            }
        }
        Step::Compact => {
            db.compact()?;
        }
    }
    Ok(())
}

fn same(db: &Db, m: &Model) -> bool {
    db.scan(..).collect::<Result<Vec<_>, _>>().ok() == Some(m.live(0))
}

fn assert_one_of(db: &Db, a: &Model, b: &Model, ctx: &str) {
    if !same(db, a) && !same(db, b) {
        assert_values(db, a, 0, ctx);
    }
}

fn assert_refuses_writes(db: &Db, ctx: &str) {
    let poisoned = |r: cask_engine::Result<()>, what: &str| match r {
        Err(Error::Poisoned(_)) => {}
        other => panic!("{ctx}: {what} after a failure returned {other:?}"),
    };
    poisoned(db.set(b"key00", b"x").map(|_| ()), "set");
    poisoned(db.set(b"new", b"x").map(|_| ()), "set of a new key");
    poisoned(db.delete(b"key01").map(|_| ()), "delete");
    poisoned(db.delete(b"absent").map(|_| ()), "delete of an absent key");
    let mut b = Batch::new();
    b.put(b"b".to_vec(), b"b".to_vec());
    poisoned(db.write(&b).map(|_| ()), "batch");
    poisoned(
        db.set_if(b"new", None, b"x", WriteOptions::default())
            .map(|_| ()),
        "set_if",
    );
    poisoned(db.compact().map(|_| ()), "compact");
    assert!(db.is_poisoned(), "{ctx}");
}

/// Runs the workload with a fault armed at mutating operation N, for N = 1, 2, ... until
/// the workload completes without meeting it. Returns how many runs met the fault.
fn fault_loop(target: Target, mode: Mode, errno: i32) -> u64 {
    let mut hits = 0;
    for n in 1..5000u64 {
        let ctx = format!("{target:?} {mode:?} errno {errno} at op {n}");
        let dir = tempfile::tempdir().unwrap();
        let vfs = FaultVfs::new();
        let ctl = vfs.controller();
        ctl.skip_syncs(true);
        let opts = Options {
            sync: SyncPolicy::Always,
            segment_size: 4096,
            background_compaction: false,
            vfs: Arc::new(vfs),
            ..Options::default()
        };
        let db = Db::open(dir.path(), opts).unwrap();
        ctl.arm(ctl.ops() + n, target, mode, errno);
        let mut acked = Model::default();
        // The model if the failed step had been applied.
        let mut failed: Option<Model> = None;
        let mut failed_kind = "";
        for i in 0..STEPS {
            let s = step(i);
            let mut next = acked.clone();
            match apply(&db, &mut next, &s) {
                Ok(()) => acked = next,
                Err(e) => {
                    let expected_error = match &e {
                        Error::Io(io) => io.raw_os_error() == Some(errno),
                        Error::Poisoned(_) => true,
                        _ => false,
                    };
                    assert!(expected_error, "{ctx}: step {i} ({s:?}) failed with {e:?}");
                    if matches!(s, Step::Compact) && !db.is_poisoned() {
                        // A failed compaction that did not poison: the inputs are still
                        // authoritative and the database keeps working.
                        assert_values(&db, &acked, 0, &format!("{ctx}: after failed compaction"));
                        continue;
                    }
                    // Apply the failed step to the model the hard way: as if it succeeded.
                    let mut m = acked.clone();
                    if let Step::Set(k, v) = &s {
                        m.set(k, v, None, 0);
                    } else if let Step::Delete(k) = &s {
                        m.delete(k);
                    } else if let Step::Batch(ops) = &s {
                        for (k, v) in ops {
                            match v {
                                Some(v) => m.set(k, v, None, 0),
                                None => m.delete(k),
                            }
                        }
                    }
                    failed = Some(m);
                    failed_kind = match &e {
                        Error::Io(_) => "io",
                        _ => "poisoned",
                    };
                    break;
                }
            }
        }
        let Some(with_failed) = failed else {
            // The workload completed: the fault never triggered or only failed compactions.
            drop(db);
            let db = Db::open(dir.path(), fast_opts()).unwrap();
            assert_values(&db, &acked, 0, &format!("{ctx}: reopen after the workload"));
            if ctl.triggered() == 0 {
                eprintln!("{ctx}: workload completed; {hits} runs met the fault");
                return hits;
            }
            hits += 1;
            continue;
        };
        hits += 1;
        assert!(
            db.is_poisoned(),
            "{ctx}: a failed write must poison the database"
        );
        assert_refuses_writes(&db, &ctx);
        // Reads keep working: they show the acknowledged writes, or those plus the failed
        // one when it reached the keydir before its fsync failed.
        assert_one_of(
            &db,
            &acked,
            &with_failed,
            &format!("{ctx}: reads after the failure"),
        );
        // Still refused once the disk works again: only a reopen clears the poison.
        ctl.clear();
        assert_refuses_writes(&db, &format!("{ctx} (fault cleared)"));
        assert_eq!(db.close().ok(), Some(()), "{ctx}: close after poison");
        drop(db);
        let db = Db::open(dir.path(), fast_opts()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        let ctx = format!("{ctx}: after reopen ({failed_kind})");
        if target == Target::Writes && !matches!(mode, Mode::TornCrash { .. }) {
            // The failed write wrote nothing.
            assert_values(&db, &acked, 0, &ctx);
        } else {
            assert_one_of(&db, &acked, &with_failed, &ctx);
        }
        db.set(b"after", b"reopen").unwrap();
        assert_eq!(db.get(b"after").unwrap(), Some(b"reopen".to_vec()));
    }
    panic!("workload never completed");
}

#[test]
fn eio_on_write_once() {
    assert!(fault_loop(Target::Writes, Mode::Once, EIO) > 10);
}

#[test]
fn enospc_on_write_forever() {
    assert!(fault_loop(Target::Writes, Mode::Forever, ENOSPC) > 10);
}

#[test]
fn eio_on_fsync_once() {
    assert!(fault_loop(Target::Syncs, Mode::Once, EIO) > 10);
}

#[test]
fn enospc_on_fsync_forever() {
    assert!(fault_loop(Target::Syncs, Mode::Forever, ENOSPC) > 10);
}

#[test]
fn eio_on_any_operation_once() {
    assert!(fault_loop(Target::All, Mode::Once, EIO) > 10);
}

#[test]
fn crash_at_every_operation() {
    assert!(fault_loop(Target::All, Mode::Crash, EIO) > 10);
}

#[test]
fn torn_write_crash_at_every_operation() {
    assert!(fault_loop(Target::All, Mode::TornCrash { keep: 20 }, EIO) > 10);
}

#[test]
#[ignore = "slower: more torn-write prefixes (cargo test -p cask-engine --test faults -- --ignored)"]
fn torn_write_crash_at_every_operation_more_prefixes() {
    for keep in [0, 1, 7, 28, 29, 30, 40, 100] {
        assert!(fault_loop(Target::All, Mode::TornCrash { keep }, EIO) > 10);
    }
}

#[test]
fn enospc_is_reported_as_storage_full() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let ctl = vfs.controller();
    let opts = Options {
        vfs: Arc::new(vfs),
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    db.set(b"a", b"1").unwrap();
    ctl.arm(ctl.ops() + 1, Target::Writes, Mode::Once, ENOSPC);
    match db.set(b"b", b"2") {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
        other => panic!("{other:?}"),
    }
    assert!(matches!(db.set(b"c", b"3"), Err(Error::Poisoned(_))));
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"b").unwrap(), None);
}

/// A failed fsync in the interval thread poisons the database too: the writes it was
/// meant to make durable were acknowledged already, and must not be followed by more.
#[test]
fn failed_interval_fsync_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let ctl = vfs.controller();
    ctl.skip_syncs(true);
    let opts = Options {
        sync: SyncPolicy::Interval(std::time::Duration::from_millis(5)),
        background_compaction: false,
        vfs: Arc::new(vfs),
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    db.set(b"a", b"1").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    ctl.arm(ctl.ops() + 1, Target::Syncs, Mode::Forever, EIO);
    db.set(b"b", b"2").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !db.is_poisoned() {
        assert!(
            std::time::Instant::now() < deadline,
            "the interval fsync never failed"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(matches!(db.set(b"c", b"3"), Err(Error::Poisoned(_))));
    assert!(matches!(db.sync(), Err(Error::Poisoned(_))));
    assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));
    drop(db);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"c").unwrap(), None);
}
