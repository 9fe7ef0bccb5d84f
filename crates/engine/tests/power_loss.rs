//! Power loss, modelled pessimistically by `FaultController::power_loss`: only bytes that
//! were fsynced and directory entries that were made durable by a directory fsync survive.
//!
//! - `SyncPolicy::Always`: after a power loss between any two operations of a workload
//!   (sets, deletes, batches, compactions over 4 KiB segments), the database opens and
//!   holds exactly the acknowledged writes. Also for a power loss at every mutating
//!   operation of a compaction.
//! - `SyncPolicy::Never`: the database opens and holds the state after some prefix of the
//!   acknowledged writes (never a write without the ones before it).

mod common;

use std::path::Path;
use std::sync::Arc;

use cask_engine::fault::{FaultController, FaultVfs};
use cask_engine::{Batch, Db, Options, SyncPolicy};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STEPS: usize = 70;

fn step(db: &Db, m: &mut Model, i: usize) {
    let mut rng = StdRng::seed_from_u64(i as u64);
    let key = |rng: &mut StdRng| format!("key{:02}", rng.random_range(0..25)).into_bytes();
    let val = |rng: &mut StdRng| vec![i as u8; rng.random_range(10..200)];
    if i % 23 == 22 {
        db.compact().unwrap();
        return;
    }
    match rng.random_range(0..10) {
        0..6 => {
            let (k, v) = (key(&mut rng), val(&mut rng));
            let ver = db.set(&k, &v).unwrap();
            m.set(&k, &v, None, ver);
        }
        6..8 => {
            let k = key(&mut rng);
            db.delete(&k).unwrap();
            m.delete(&k);
        }
        _ => {
            let (k1, k2, v) = (key(&mut rng), key(&mut rng), val(&mut rng));
            let mut b = Batch::new();
            b.put(k1.clone(), v.clone()).delete(k2.clone());
            let ver = db.write(&b).unwrap();
            m.set(&k1, &v, None, ver);
            m.delete(&k2);
        }
    }
}

fn open(dir: &Path, sync: SyncPolicy) -> (Db, Arc<FaultController>) {
    open_with(dir, sync, 4096)
}

fn open_with(dir: &Path, sync: SyncPolicy, segment_size: u64) -> (Db, Arc<FaultController>) {
    open_tuned(dir, sync, segment_size, false)
}

fn open_tuned(
    dir: &Path,
    sync: SyncPolicy,
    segment_size: u64,
    background: bool,
) -> (Db, Arc<FaultController>) {
    let vfs = FaultVfs::new();
    let ctl = vfs.controller();
    ctl.skip_syncs(true);
    ctl.track_durability(dir).unwrap();
    let opts = Options {
        sync,
        segment_size,
        background_compaction: background,
        compaction_interval: std::time::Duration::from_millis(2),
        compaction_ratio: 0.3,
        vfs: Arc::new(vfs),
        ..Options::default()
    };
    (Db::open(dir, opts).unwrap(), ctl)
}

/// Opens a directory whose previous engine "crashed" in this same process: unlike a real
/// crash, its background thread may still be finishing a round (failing, since nothing
/// reaches the disk any more) and hold the directory lock for a few ms.
fn reopen_after_crash(dir: &Path) -> cask_engine::Result<Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Db::open(dir, fast_opts()) {
            Err(cask_engine::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// The dying process can do nothing more; then the machine loses power.
fn lose_power(db: Db, ctl: &FaultController, dir: &Path) {
    ctl.crash_at(ctl.ops() + 1);
    drop(db);
    ctl.power_loss(dir).unwrap();
}

fn matching_state(db: &Db, states: &[Model]) -> Option<usize> {
    let got: Vec<_> = db.scan(..).collect::<Result<_, _>>().ok()?;
    states.iter().rposition(|m| m.live(0) == got)
}

fn power_loss_between_steps(sync: SyncPolicy) {
    for at in 0..=STEPS {
        let dir = tempfile::tempdir().unwrap();
        let (db, ctl) = open(dir.path(), sync);
        let mut m = Model::default();
        let mut states = vec![m.clone()];
        for i in 0..at {
            step(&db, &mut m, i);
            states.push(m.clone());
        }
        lose_power(db, &ctl, dir.path());
        let ctx = format!("{sync}: power lost after step {at}");
        let db = reopen_after_crash(dir.path()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        if sync == SyncPolicy::Always {
            assert_values(&db, &m, 0, &ctx);
        } else {
            assert!(
                matching_state(&db, &states).is_some(),
                "{ctx}: not the state after any prefix of the writes"
            );
        }
        db.set(b"after", b"power loss").unwrap();
        db.close().unwrap();
    }
}

#[test]
fn always_keeps_every_acknowledged_write() {
    power_loss_between_steps(SyncPolicy::Always);
}

#[test]
fn never_keeps_a_prefix() {
    power_loss_between_steps(SyncPolicy::Never);
}

#[test]
fn power_loss_at_every_step_of_a_compaction() {
    let mut completed = false;
    for n in 1..2000 {
        let dir = tempfile::tempdir().unwrap();
        let (db, ctl) = open(dir.path(), SyncPolicy::Always);
        let mut m = Model::default();
        for i in 0..STEPS {
            if i % 23 != 22 {
                step(&db, &mut m, i);
            }
        }
        // Power fails at the Nth mutating operation of the compaction.
        ctl.crash_at(ctl.ops() + n);
        let res = db.compact();
        let hit = ctl.triggered() > 0;
        drop(db);
        // Every other run also keeps part of the unsynced appends.
        if n % 2 == 0 {
            ctl.power_loss_torn(dir.path(), n).unwrap();
        } else {
            ctl.power_loss(dir.path()).unwrap();
        }
        let ctx = format!("power lost at op {n} of a compaction");
        let db = reopen_after_crash(dir.path()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_values(&db, &m, 0, &ctx);
        db.compact().unwrap();
        assert_values(&db, &m, 0, &format!("{ctx}, compacted again"));
        if !hit {
            res.unwrap();
            completed = true;
            break;
        }
    }
    assert!(completed);
}

/// Power fails at the Nth mutating operation of the whole workload (appends, fsyncs,
/// rotations, compactions), for every N: the acknowledged writes survive, plus possibly
/// the one in flight.
#[test]
fn power_loss_at_every_operation_of_a_workload() {
    let mut completed = false;
    for n in 1..5000 {
        let dir = tempfile::tempdir().unwrap();
        let (db, ctl) = open(dir.path(), SyncPolicy::Always);
        ctl.crash_at(ctl.ops() + n);
        let mut acked = Model::default();
        let mut in_flight = None;
        for i in 0..STEPS {
            let mut next = acked.clone();
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&db, &mut next, i)));
            match r {
                Ok(()) => acked = next,
                Err(_) => {
                    // `step` unwraps: the failed step's effect, as if it had succeeded.
                    in_flight = Some(next);
                    break;
                }
            }
        }
        let hit = ctl.triggered() > 0;
        drop(db);
        if n % 2 == 0 {
            ctl.power_loss_torn(dir.path(), n).unwrap();
        } else {
            ctl.power_loss(dir.path()).unwrap();
        }
        let ctx = format!("power lost at op {n}");
        let db = reopen_after_crash(dir.path()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let mut states = vec![acked.clone()];
        states.extend(in_flight);
        assert!(
            matching_state(&db, &states).is_some(),
            "{ctx}: neither the acknowledged writes nor those plus the one in flight"
        );
        if !hit {
            completed = true;
            break;
        }
    }
    assert!(completed);
}

/// Power fails while `open` recovers from a crash (truncating a torn tail): the next open
/// still finds the same data.
#[test]
fn power_loss_during_recovery() {
    let src = tempfile::tempdir().unwrap();
    let (db, ctl) = open(src.path(), SyncPolicy::Always);
    let mut written = Model::default();
    for i in 0..30 {
        if i % 23 != 22 {
            step(&db, &mut written, i);
        }
    }
    drop(db);
    drop(ctl);
    // A torn record at the end of the last segment: its last 5 bytes never made it.
    let seg = segment_files(src.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    // What a recovery without interruption finds.
    let reference = tempfile::tempdir().unwrap();
    copy_dir(src.path(), reference.path());
    let db = Db::open(reference.path(), fast_opts()).unwrap();
    let m = Model {
        map: db
            .scan(..)
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    k,
                    common::Val {
                        value: v,
                        expire: None,
                        version: 0,
                    },
                )
            })
            .collect(),
    };
    assert!(!m.map.is_empty());
    assert_ne!(m.live(0), written.live(0), "the torn write is cut off");
    drop(db);
    for n in 1..100 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let vfs = FaultVfs::new();
        let ctl = vfs.controller();
        ctl.skip_syncs(true);
        ctl.track_durability(dir.path()).unwrap();
        ctl.crash_at(n);
        let opts = Options {
            vfs: Arc::new(vfs),
            ..fast_opts()
        };
        let res = Db::open(dir.path(), opts);
        let hit = ctl.triggered() > 0;
        if let Ok(db) = res {
            drop(db);
        }
        ctl.power_loss(dir.path()).unwrap();
        let db = Db::open(dir.path(), fast_opts()).unwrap_or_else(|e| panic!("op {n}: {e}"));
        assert_values(&db, &m, 0, &format!("power lost at op {n} of recovery"));
        if !hit {
            return;
        }
    }
    panic!("recovery never completed");
}

/// Group commit under power loss: writers on their own keys (one of them pipelining
/// through `deferring` + `wait_durable`) until the power fails at an arbitrary moment.
/// Every write acknowledged before that must be on disk.
#[test]
fn group_commit_keeps_every_acknowledged_write() {
    group_commit(false);
}

/// The same with background compaction running every 2 ms.
#[test]
fn group_commit_with_background_compaction() {
    group_commit(true);
}

fn group_commit(background: bool) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    for round in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        // Small segments: rotations (and the sealing of a segment while its fsync runs)
        // happen all the time.
        let (db, ctl) = open_tuned(dir.path(), SyncPolicy::Always, 1024, background);
        let threads = 4u64;
        let acked: Arc<Vec<AtomicU64>> =
            Arc::new((0..=threads).map(|_| AtomicU64::new(0)).collect());
        let mut handles = Vec::new();
        for t in 0..threads {
            let (db, acked) = (db.clone(), acked.clone());
            handles.push(thread::spawn(move || {
                for n in 1.. {
                    let v = format!("{n:08}{}", "x".repeat(((n + t) % 50) as usize));
                    if db.set(format!("t{t}").as_bytes(), v.as_bytes()).is_err() {
                        return;
                    }
                    acked[t as usize].store(n, Ordering::SeqCst);
                }
            }));
        }
        {
            let (db, acked) = (db.deferring(), acked.clone());
            handles.push(thread::spawn(move || {
                for n in 1.. {
                    let mut last = 0;
                    for j in 0..8 {
                        match db.set(format!("p{j}").as_bytes(), format!("{n:08}").as_bytes()) {
                            Ok(v) => last = v,
                            Err(_) => return,
                        }
                    }
                    if db.wait_durable(last).is_err() {
                        return;
                    }
                    acked[threads as usize].store(n, Ordering::SeqCst);
                }
            }));
        }
        thread::sleep(std::time::Duration::from_millis(20 + round * 7));
        ctl.crash_at(ctl.ops() + 1);
        for h in handles {
            h.join().unwrap();
        }
        let acked: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        drop(db);
        ctl.power_loss(dir.path()).unwrap();
        // A background compaction in flight keeps the old engine (and its lock) alive until
        // it has failed; nothing it does reaches the disk any more.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match Db::open(dir.path(), fast_opts()) {
                Err(cask_engine::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    thread::sleep(std::time::Duration::from_millis(5))
                }
                other => break other.unwrap(),
            }
        };
        let num = |k: String| {
            db.get(k.as_bytes()).unwrap().map_or(0, |v| {
                String::from_utf8_lossy(&v[..8]).parse::<u64>().unwrap()
            })
        };
        for t in 0..threads {
            let on_disk = num(format!("t{t}"));
            assert!(
                on_disk >= acked[t as usize],
                "round {round}: t{t} acknowledged {} but {on_disk} survived",
                acked[t as usize]
            );
        }
        for j in 0..8 {
            let on_disk = num(format!("p{j}"));
            assert!(
                on_disk >= acked[threads as usize],
                "round {round}: pipelined p{j} acknowledged {} but {on_disk} survived",
                acked[threads as usize]
            );
        }
    }
}

/// Power loss where the OS had written back part of the unsynced appends, in any file:
/// with `Always`, the acknowledged writes survive and the database opens. (The model
/// keeps a random prefix of each file's unsynced appends.)
#[test]
fn torn_writeback_keeps_acknowledged_writes_and_opens() {
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        for at in (0..=STEPS).step_by(5) {
            for seed in 0..3u64 {
                let dir = tempfile::tempdir().unwrap();
                let (db, ctl) = open_with(dir.path(), sync, 1024);
                let mut m = Model::default();
                let mut states = vec![m.clone()];
                for i in 0..at {
                    step(&db, &mut m, i);
                    states.push(m.clone());
                }
                ctl.crash_at(ctl.ops() + 1);
                drop(db);
                ctl.power_loss_torn(dir.path(), seed * 1000 + at as u64)
                    .unwrap();
                let ctx = format!("{sync}: torn power loss after step {at}, seed {seed}");
                let db = reopen_after_crash(dir.path()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if sync == SyncPolicy::Always {
                    assert_values(&db, &m, 0, &ctx);
                } else {
                    assert!(
                        matching_state(&db, &states).is_some(),
                        "{ctx}: not a prefix"
                    );
                }
            }
        }
    }
}
