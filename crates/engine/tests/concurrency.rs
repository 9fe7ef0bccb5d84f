//! Concurrency: writers on disjoint and shared keys with readers checking every value they
//! see; compare-and-set counters without lost updates; compaction (background and explicit)
//! racing writers and readers; readers progressing while a writer is stuck in fsync.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use cask_engine::fault::FaultVfs;
use cask_engine::{Batch, Db, Error, Options, SyncPolicy, WriteOptions};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A value that names its key and the writer's counter, so a reader can tell a torn or
/// misplaced value from a good one.
fn value_for(key: &[u8], n: u64, pad: usize) -> Vec<u8> {
    let mut v = format!("{}={n};", String::from_utf8_lossy(key)).into_bytes();
    v.resize(v.len() + pad, b'.');
    v
}

fn check_value(key: &[u8], v: &[u8]) {
    let prefix = format!("{}=", String::from_utf8_lossy(key));
    assert!(
        v.starts_with(prefix.as_bytes()),
        "value {:?} does not belong to key {:?}",
        String::from_utf8_lossy(&v[..v.len().min(40)]),
        String::from_utf8_lossy(key)
    );
}

/// A write to a shared key: (key, version, value or None for a delete).
type SharedWrite = (Vec<u8>, u64, Option<Vec<u8>>);

/// Each writer owns `t{i}/…` keys (tracked in its own model) and also writes `shared…`
/// keys (recorded with versions; the highest version wins). Readers check every value.
fn writers_and_readers(db: &Db, writers: usize, ops: usize, compactor: bool) -> Model {
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(writers + 2 + usize::from(compactor)));
    let mut readers = Vec::new();
    for r in 0..2u64 {
        let (db, done, start) = (db.clone(), done.clone(), start.clone());
        readers.push(thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(100 + r);
            start.wait();
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                if rng.random_bool(0.9) {
                    let k = if rng.random_bool(0.5) {
                        format!("shared{:02}", rng.random_range(0..10))
                    } else {
                        format!("t{}/{:03}", rng.random_range(0..4), rng.random_range(0..60))
                    };
                    if let Some(v) = db.get(k.as_bytes()).unwrap() {
                        check_value(k.as_bytes(), &v);
                    }
                    reads += 1;
                } else {
                    let mut prev: Option<Vec<u8>> = None;
                    let rev = rng.random_bool(0.5);
                    let scan = if rev {
                        db.scan(..).reverse()
                    } else {
                        db.scan(..)
                    };
                    for item in scan {
                        let (k, v) = item.unwrap();
                        check_value(&k, &v);
                        if let Some(p) = &prev {
                            assert!(if rev { p > &k } else { p < &k }, "scan out of order");
                        }
                        prev = Some(k);
                    }
                    reads += 1;
                }
            }
            reads
        }));
    }
    let compact_handle = compactor.then(|| {
        let (db, done, start) = (db.clone(), done.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                db.compact().unwrap();
                n += 1;
                thread::sleep(Duration::from_millis(2));
            }
            n
        })
    });
    let mut handles = Vec::new();
    for t in 0..writers {
        let (db, start) = (db.clone(), start.clone());
        handles.push(thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(t as u64);
            let mut m = Model::default();
            let mut shared: Vec<SharedWrite> = Vec::new();
            start.wait();
            for n in 0..ops as u64 {
                let own = format!("t{t}/{:03}", rng.random_range(0..60)).into_bytes();
                let sk = format!("shared{:02}", rng.random_range(0..10)).into_bytes();
                match rng.random_range(0..10) {
                    0..5 => {
                        let v = value_for(&own, n, rng.random_range(0..200));
                        let ver = db.set(&own, &v).unwrap();
                        m.set(&own, &v, None, ver);
                    }
                    5 => {
                        // delete_if gives the delete a known place in the version order.
                        if let Some((_, ver)) = db.get_versioned(&own).unwrap() {
                            db.delete_if(&own, ver).unwrap();
                            m.delete(&own);
                        }
                    }
                    6..8 => {
                        let v = value_for(&sk, n, rng.random_range(0..50));
                        let ver = db.set(&sk, &v).unwrap();
                        shared.push((sk, ver, Some(v)));
                    }
                    _ => {
                        let v1 = value_for(&own, n, 10);
                        let v2 = value_for(&sk, n, 10);
                        let mut b = Batch::new();
                        b.put(own.clone(), v1.clone()).put(sk.clone(), v2.clone());
                        let ver = db.write(&b).unwrap();
                        m.set(&own, &v1, None, ver);
                        shared.push((sk, ver, Some(v2)));
                    }
                }
            }
            (m, shared)
        }));
    }
    let mut union = Model::default();
    let mut shared: Vec<SharedWrite> = Vec::new();
    for h in handles {
        let (m, s) = h.join().unwrap();
        union.map.extend(m.map);
        shared.extend(s);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0, "a reader made no progress");
    }
    if let Some(c) = compact_handle {
        assert!(c.join().unwrap() > 0);
    }
    shared.sort_by_key(|(_, ver, _)| *ver);
    for (k, ver, v) in shared {
        match v {
            Some(v) => union.set(&k, &v, None, ver),
            None => union.delete(&k),
        }
    }
    union
}

/// Operations per writer; `CASK_CONCURRENCY_OPS` scales it for soak runs.
fn ops(default: usize) -> usize {
    std::env::var("CASK_CONCURRENCY_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn writers_and_readers_on_disjoint_and_shared_keys() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 64 << 10,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let m = writers_and_readers(&db, 4, ops(3000), false);
    assert_matches(&db, &m, 0, "after the threads");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_matches(&db, &m, 0, "after reopen");
}

#[test]
fn compaction_races_writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 8 << 10,
        background_compaction: true,
        compaction_interval: Duration::from_millis(3),
        compaction_ratio: 0.3,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let m = writers_and_readers(&db, 3, ops(3000), true);
    assert_matches(&db, &m, 0, "after the threads");
    assert!(db.stats().compactions > 0);
    db.compact().unwrap();
    assert_matches(&db, &m, 0, "after a final compaction");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_matches(&db, &m, 0, "after reopen");
}

#[test]
fn cas_counters_lose_no_updates() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    let (threads, incs, counters) = (4usize, 150usize, 3usize);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            thread::spawn(move || {
                let mut mine = vec![0u64; counters];
                let mut conflicts = 0u64;
                for i in 0..incs {
                    let c = (i + t) % counters;
                    let key = format!("counter{c}");
                    loop {
                        let cur = db.get_versioned(key.as_bytes()).unwrap();
                        let (n, ver) = match &cur {
                            Some((v, ver)) => (
                                String::from_utf8_lossy(v).parse::<u64>().unwrap(),
                                Some(*ver),
                            ),
                            None => (0, None),
                        };
                        let next = (n + 1).to_string();
                        match db.set_if(
                            key.as_bytes(),
                            ver,
                            next.as_bytes(),
                            WriteOptions::default(),
                        ) {
                            Ok(_) => break,
                            Err(Error::Conflict { expected, actual }) => {
                                assert_eq!(expected, ver);
                                assert_ne!(actual, ver);
                                conflicts += 1;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    mine[c] += 1;
                }
                (mine, conflicts)
            })
        })
        .collect();
    let mut want = vec![0u64; counters];
    let mut conflicts = 0;
    for h in handles {
        let (mine, c) = h.join().unwrap();
        conflicts += c;
        for (w, m) in want.iter_mut().zip(mine) {
            *w += m;
        }
    }
    for (c, w) in want.iter().enumerate() {
        let v = db.get(format!("counter{c}").as_bytes()).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&v).parse::<u64>().unwrap(),
            *w,
            "counter{c}"
        );
    }
    assert_eq!(want.iter().sum::<u64>(), (threads * incs) as u64);
    eprintln!("{conflicts} conflicts retried");
}

#[test]
fn readers_progress_while_a_writer_waits_on_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let ctl = vfs.controller();
    ctl.skip_syncs(true);
    let opts = Options {
        sync: SyncPolicy::Always,
        background_compaction: false,
        vfs: Arc::new(vfs),
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    for i in 0..100u32 {
        db.set(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    ctl.close_sync_gate();
    let writer = {
        let db = db.clone();
        thread::spawn(move || db.set(b"k000", b"new").unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl.blocked_in_sync() == 0 {
        assert!(
            Instant::now() < deadline,
            "the writer never reached its fsync"
        );
        thread::sleep(Duration::from_millis(1));
    }
    // A second writer queues behind the first fsync (group commit) without blocking reads.
    let writer2 = {
        let db = db.clone();
        thread::spawn(move || db.set(b"k001", b"new").unwrap())
    };
    let (tx, rx) = mpsc::channel();
    let reader = {
        let db = db.clone();
        thread::spawn(move || {
            let mut n = 0;
            for round in 0..20 {
                for i in 0..100u32 {
                    let v = db.get(format!("k{i:03}").as_bytes()).unwrap().unwrap();
                    assert!(
                        v == format!("v{i}").into_bytes() || v == b"new",
                        "round {round}"
                    );
                    n += 1;
                }
                assert_eq!(db.scan(..).count(), 100);
                assert!(db.metadata(b"k050").unwrap().is_some());
                let _ = db.stats();
            }
            tx.send(n).unwrap();
        })
    };
    let n = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("readers must not wait for a writer's fsync");
    assert_eq!(n, 2000);
    assert!(
        ctl.blocked_in_sync() >= 1,
        "the writer is still in its fsync"
    );
    assert!(!writer.is_finished(), "the write returned before its fsync");
    reader.join().unwrap();
    ctl.open_sync_gate();
    let v1 = writer.join().unwrap();
    let v2 = writer2.join().unwrap();
    assert!(v2 > v1);
    assert_eq!(db.get(b"k000").unwrap(), Some(b"new".to_vec()));
    assert_eq!(db.get(b"k001").unwrap(), Some(b"new".to_vec()));
}

/// `close` while another thread's `compact()` is in flight (paused in its progress
/// callback): the directory must stay locked until that compaction is over, or a new
/// opener would run alongside a compaction that still renames and deletes files (and
/// could rename an output over the new handle's segment of the same id).
#[test]
fn close_waits_for_a_running_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 4096,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    let mut m = Model::default();
    for i in 0..200u32 {
        let k = format!("k{:02}", i % 40).into_bytes();
        let v = value_for(&k, i as u64, 60);
        let ver = db.set(&k, &v).unwrap();
        m.set(&k, &v, None, ver);
    }
    let (paused_tx, paused) = mpsc::channel();
    let (resume, resume_rx) = mpsc::channel::<()>();
    let compactor = {
        let db = db.clone();
        thread::spawn(move || {
            let mut first = true;
            db.compact_with_progress(&mut |_, _| {
                if std::mem::take(&mut first) {
                    paused_tx.send(()).unwrap();
                    resume_rx.recv().unwrap();
                }
            })
        })
    };
    paused.recv().unwrap();
    let closer = {
        let db = db.clone();
        thread::spawn(move || db.close())
    };
    thread::sleep(Duration::from_millis(100));
    let second = Db::open(dir.path(), fast_opts());
    let locked = matches!(second, Err(Error::Locked { .. }));
    drop(second);
    resume.send(()).unwrap();
    let _ = compactor.join().unwrap();
    closer.join().unwrap().unwrap();
    assert!(
        locked,
        "the directory was unlocked while a compaction was running"
    );
    drop(db);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_matches(&db, &m, 0, "after close during compaction");
}
