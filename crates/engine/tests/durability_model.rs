//! Durability against the in-memory power-loss model (`cask_engine::vfs::MemVfs`), which
//! keeps the model across process crashes (the real-directory model of `FaultController`
//! starts afresh at every `track_durability`), and models partial, reordered writeback of
//! unsynced data in 512-byte sectors and 4 KiB pages.
//!
//! - A process crash at every mutating operation, a reopen, more acknowledged writes, then
//!   a power loss: every acknowledged write survives (regression test for a fuzz finding:
//!   recovery fsynced the tail segment's data but not its directory entry).
//! - EIO / ENOSPC on writes and fsyncs, once and forever, at every operation N, followed by
//!   a power loss with sector- or page-granular torn writeback: reopening yields exactly
//!   the acknowledged writes, or those plus the one write that failed.
//! - A crash at every operation followed by a torn, reordered writeback: the same.
//! - ENOSPC at every operation of a compaction: the compaction fails, the database keeps
//!   serving the model, the old segments stay authoritative; after a power loss the model
//!   is still there.
//! - `SyncPolicy::Interval`: a power loss leaves a prefix of the writes that includes every
//!   write an interval fsync completed after.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cask_engine::fault::{EIO, ENOSPC, FaultController, FaultVfs, Mode, Target};
use cask_engine::vfs::{MemVfs, Vfs, Writeback};
use cask_engine::{Batch, Db, Error, Options, SyncPolicy};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The in-memory files live under this name (`check` wants it to exist on disk too).
fn dir() -> PathBuf {
    std::env::temp_dir()
}

fn open(mem: &MemVfs, sync: SyncPolicy, segment_size: u64) -> (Db, Arc<FaultController>) {
    try_open(mem, sync, segment_size).expect("open")
}

fn try_open(
    mem: &MemVfs,
    sync: SyncPolicy,
    segment_size: u64,
) -> Result<(Db, Arc<FaultController>), Error> {
    let vfs = FaultVfs::wrap(Arc::new(mem.clone()));
    let ctl = vfs.controller();
    let opts = Options {
        sync,
        segment_size,
        background_compaction: false,
        vfs: Arc::new(vfs),
        ..Options::default()
    };
    Ok((Db::open(dir(), opts)?, ctl))
}

fn contents(db: &Db) -> Model {
    db.scan(..)
        .collect::<Result<Vec<_>, _>>()
        .expect("scan")
        .into_iter()
        .collect()
}

/// Step `i` of the workload: sets, deletes and batches over 20 keys, records of 20-700
/// bytes so that they straddle 512-byte sectors.
fn step(db: &Db, m: &mut Model, i: u64) -> Result<(), Error> {
    let k = |j: u64| format!("key{:02}", (i * 7 + j * 3) % 20).into_bytes();
    let v = |j: u64| vec![b'a' + ((i + j) % 26) as u8; 20 + ((i * 97 + j * 31) % 680) as usize];
    match i % 7 {
        0..=3 => {
            db.set(&k(0), &v(0))?;
            m.insert(k(0), v(0));
        }
        4 => {
            db.delete(&k(1))?;
            m.remove(&k(1));
        }
        _ => {
            let mut b = Batch::new();
            b.put(k(0), v(0)).put(k(2), v(2)).delete(k(3));
            db.write(&b)?;
            m.insert(k(0), v(0));
            m.insert(k(2), v(2));
            m.remove(&k(3));
        }
    }
    Ok(())
}

/// The model after step `i`, whether or not the database took it.
fn stepped(m: &Model, i: u64) -> Model {
    let mem = MemVfs::new();
    let (db, _) = open(&mem, SyncPolicy::Never, 1 << 20);
    let mut out = m.clone();
    step(&db, &mut out, i).unwrap();
    out
}

fn power_loss(db: Db, ctl: &FaultController, mem: &MemVfs, wb: Writeback) {
    ctl.crash_at(ctl.ops() + 1);
    drop(db);
    mem.power_loss(wb);
}

fn assert_one_of(got: &Model, acked: &Model, failed: Option<&Model>, ctx: &str) {
    assert!(
        got == acked || Some(got) == failed,
        "{ctx}: reopened with {} keys, acknowledged {} (failed write: {:?} keys)",
        got.len(),
        acked.len(),
        failed.map(BTreeMap::len)
    );
}

#[test]
fn crash_reopen_write_then_power_loss_keeps_acknowledged_writes() {
    for n in 1..5000u64 {
        let ctx = format!("crash at op {n}");
        let mem = MemVfs::new();
        let (db, ctl) = open(&mem, SyncPolicy::Always, 1024);
        ctl.crash_at(ctl.ops() + n);
        let mut acked = Model::new();
        let mut failed = None;
        for i in 0..40 {
            let mut next = acked.clone();
            match step(&db, &mut next, i) {
                Ok(()) => acked = next,
                Err(_) => {
                    failed = Some(stepped(&acked, i));
                    break;
                }
            }
        }
        let done = failed.is_none();
        // The process dies; the page cache survives. Reopen and keep writing.
        drop(db);
        let (db, ctl) = open(&mem, SyncPolicy::Always, 1024);
        let got = contents(&db);
        assert_one_of(&got, &acked, failed.as_ref(), &ctx);
        let mut acked = got;
        // Small writes that do not rotate (a rotation's directory fsync would hide a tail
        // segment whose directory entry was never made durable).
        for i in 0..3u8 {
            db.set(&[b'z', i], &[i; 10]).unwrap();
            acked.insert(vec![b'z', i], vec![i; 10]);
        }
        // Now the machine loses power: every write acknowledged since the reopen stays.
        power_loss(db, &ctl, &mem, Writeback::None);
        let (db, _) = open(&mem, SyncPolicy::Always, 1024);
        assert_eq!(contents(&db), acked, "{ctx}: after the power loss");
        if done {
            assert!(n > 20, "the workload has too few operations");
            return;
        }
    }
    panic!("the workload never completed");
}

/// A fault at operation N, then a power loss with the given writeback.
fn fault_then_power_loss(target: Target, mode: Mode, errno: i32, block: usize) -> u64 {
    let mut hits = 0;
    for n in 1..5000u64 {
        let ctx = format!("{target:?} {mode:?} errno {errno} at op {n}, {block}-byte blocks");
        let mem = MemVfs::new();
        let (db, ctl) = open(&mem, SyncPolicy::Always, 2048);
        ctl.arm(ctl.ops() + n, target, mode, errno);
        let mut acked = Model::new();
        let mut failed = None;
        for i in 0..45 {
            let r = if i == 20 || i == 38 {
                db.compact().map(|_| ())
            } else {
                let mut next = acked.clone();
                let r = step(&db, &mut next, i);
                if r.is_ok() {
                    acked = next;
                } else {
                    failed = Some(stepped(&acked, i));
                }
                r
            };
            if let Err(e) = r {
                assert!(
                    matches!(e, Error::Io(_) | Error::Poisoned(_)),
                    "{ctx}: step {i}: {e:?}"
                );
                if failed.is_none() && !db.is_poisoned() {
                    // A failed compaction that left the database writable.
                    assert_eq!(contents(&db), acked, "{ctx}: after a failed compaction");
                    continue;
                }
                assert!(db.is_poisoned(), "{ctx}: a failed write must poison");
                let mut probe = acked.clone();
                assert!(
                    step(&db, &mut probe, 99).is_err(),
                    "{ctx}: write after failure"
                );
                break;
            }
        }
        let triggered = ctl.triggered() > 0;
        power_loss(
            db,
            &ctl,
            &mem,
            Writeback::Blocks {
                block,
                seed: n * 31 + block as u64,
            },
        );
        let files: Vec<_> = {
            let mut v = mem.list(&dir()).unwrap();
            v.sort();
            v.into_iter()
                .map(|n| (mem.file(&dir().join(&n)).map(|f| f.len()), n))
                .collect()
        };
        // A later sector of an unsynced, unacknowledged write may have landed without an
        // earlier one: recovery must see that nothing acknowledged follows the damage and
        // cut it off as a torn tail, never refuse to open (regression: it used to).
        let db = match try_open(&mem, SyncPolicy::Always, 2048) {
            Ok((db, _)) => db,
            Err(e) => panic!("{ctx}: open after a power loss: {e:?}; files {files:?}"),
        };
        assert_one_of(&contents(&db), &acked, failed.as_ref(), &ctx);
        if !triggered {
            eprintln!(
                "{target:?} {mode:?} errno {errno}, {block}-byte blocks: {hits} runs met the fault"
            );
            return hits;
        }
        hits += 1;
    }
    panic!("the workload never completed");
}

#[test]
fn faults_then_torn_power_loss() {
    for block in [512, 4096] {
        for (target, mode, errno) in [
            (Target::Writes, Mode::Once, EIO),
            (Target::Writes, Mode::Forever, ENOSPC),
            (Target::Syncs, Mode::Once, EIO),
            (Target::Syncs, Mode::Forever, ENOSPC),
            (Target::All, Mode::Once, ENOSPC),
            (Target::All, Mode::Crash, EIO),
        ] {
            let hits = fault_then_power_loss(target, mode, errno, block);
            assert!(
                hits > 20,
                "{target:?} {mode:?}: only {hits} runs met the fault"
            );
        }
    }
}

/// Several writers share fsyncs (group commit), so several records are unsynced at once
/// when the power fails; the writeback keeps a random subset of their 512-byte sectors or
/// 4 KiB pages (later ones without earlier ones). Every acknowledged write must survive.
#[test]
fn group_commit_with_reordered_writeback() {
    for round in 0..24u64 {
        let block = if round % 2 == 0 { 512 } else { 4096 };
        let mem = MemVfs::new();
        let (db, ctl) = open(&mem, SyncPolicy::Always, 64 * 1024);
        let acked: Vec<Vec<(Vec<u8>, Vec<u8>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let db = db.clone();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..200u64 {
                            let k = format!("t{t}-{i:04}").into_bytes();
                            let v =
                                vec![b'a' + (i % 26) as u8; 100 + ((i * 37 + t) % 900) as usize];
                            if db.set(&k, &v).is_err() {
                                break;
                            }
                            mine.push((k, v));
                        }
                        mine
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(2 + round % 7));
            // The power fails now, whatever the writers are doing.
            ctl.crash_at(ctl.ops() + 1);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        drop(db);
        mem.power_loss(Writeback::Blocks { block, seed: round });
        let ctx = format!("round {round}, {block}-byte blocks");
        let db = match try_open(&mem, SyncPolicy::Always, 64 * 1024) {
            Ok((db, _)) => db,
            Err(e) => panic!("{ctx}: open after a power loss: {e:?}"),
        };
        let got = contents(&db);
        for (k, v) in acked.iter().flatten() {
            assert_eq!(got.get(k), Some(v), "{ctx}: acknowledged write lost");
        }
    }
}

#[test]
fn enospc_during_compaction_leaves_old_files_authoritative() {
    let segment_files = |mem: &MemVfs| {
        let mut v: Vec<_> = mem
            .list(&dir())
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    };
    let mut failed_runs = 0;
    for n in 1..5000u64 {
        let ctx = format!("ENOSPC from op {n} of the compaction");
        let mem = MemVfs::new();
        let (db, ctl) = open(&mem, SyncPolicy::Always, 1024);
        let mut m = Model::new();
        for i in 0..60 {
            step(&db, &mut m, i).unwrap();
        }
        let before = segment_files(&mem);
        ctl.arm(ctl.ops() + n, Target::All, Mode::Forever, ENOSPC);
        match db.compact() {
            Ok(_) => {
                assert_eq!(contents(&db), m, "{ctx}: after the compaction");
                assert!(n > 10, "the compaction has too few operations");
                assert!(failed_runs > 10);
                return;
            }
            Err(e) => {
                failed_runs += 1;
                assert!(
                    matches!(&e, Error::Io(io) if io.raw_os_error() == Some(ENOSPC))
                        || matches!(e, Error::Poisoned(_)),
                    "{ctx}: {e:?}"
                );
                // Reads go on, from whichever files are authoritative.
                assert_eq!(contents(&db), m, "{ctx}: reads after the failure");
                let after = segment_files(&mem);
                // Either the old segments are all still there, or the compaction had
                // committed (its output is in place) before the disk filled up.
                let old_intact = before.iter().all(|s| after.contains(s));
                let committed = after.iter().any(|s| !before.contains(s));
                assert!(old_intact || committed, "{ctx}: {before:?} -> {after:?}");
            }
        }
        ctl.clear();
        power_loss(db, &ctl, &mem, Writeback::None);
        let (db, _) = open(&mem, SyncPolicy::Always, 1024);
        assert_eq!(contents(&db), m, "{ctx}: after a power loss");
        db.compact().unwrap();
        assert_eq!(contents(&db), m, "{ctx}: after compacting again");
    }
    panic!("the compaction never completed");
}

/// `Interval`: a power loss keeps a prefix of the writes (no holes), and that prefix holds
/// every write acknowledged before an interval fsync that completed. Also reports how old
/// the oldest lost write was.
#[test]
fn interval_loses_at_most_a_suffix() {
    let interval = Duration::from_millis(20);
    let mut worst = Duration::ZERO;
    for round in 0..8u64 {
        let mem = MemVfs::new();
        let (db, ctl) = open(&mem, SyncPolicy::Interval(interval), 1 << 20);
        let start = Instant::now();
        let mut acks = Vec::new();
        let run = Duration::from_millis(150 + round * 40);
        let mut i = 0u64;
        while start.elapsed() < run {
            db.set(format!("k{i:06}").as_bytes(), &i.to_le_bytes())
                .unwrap();
            acks.push((ctl.syncs(), Instant::now()));
            i += 1;
            if i.is_multiple_of(64) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        ctl.crash_at(ctl.ops() + 1);
        let syncs_at_loss = ctl.syncs();
        let lost_at = Instant::now();
        drop(db);
        mem.power_loss(Writeback::None);
        let (db, _) = open(&mem, SyncPolicy::Never, 1 << 20);
        let got = contents(&db);
        let kept = got.len();
        for (j, (k, v)) in got.iter().enumerate() {
            assert_eq!(
                k,
                format!("k{j:06}").as_bytes(),
                "round {round}: a hole at {j}"
            );
            assert_eq!(v, &(j as u64).to_le_bytes());
        }
        for (j, (s, _)) in acks.iter().enumerate() {
            if syncs_at_loss >= s + 2 {
                assert!(
                    j < kept,
                    "round {round}: write {j} was covered by an fsync, lost"
                );
            }
        }
        if kept < acks.len() {
            worst = worst.max(lost_at - acks[kept].1);
        }
        assert!(kept > 0, "round {round}: no interval fsync in {run:?}");
    }
    eprintln!(
        "interval {interval:?}: oldest lost write was acknowledged {worst:?} before the power loss"
    );
}
