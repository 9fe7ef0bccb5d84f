//! Compaction crash safety and space reclamation.
//!
//! A state with overwrites, deletes (also of keys whose older puts live in other segments,
//! and of keys living in compaction outputs whose ids are above the active segment's) and
//! expired keys, spread over many 4 KiB segments. Then, for N = 1, 2, 3, ... a simulated
//! process crash at the Nth mutating file operation of `compact()`: reopening with the
//! real file system must give exactly the model (no deleted or expired key back, no write
//! lost, versions unchanged), and a compaction of what the crash left must too.

mod common;

use std::path::Path;
use std::sync::Arc;

use cask_engine::fault::FaultVfs;
use cask_engine::{Db, Options, WriteOptions};
use common::*;

const T0: u64 = 1_000_000;
/// Expiry of the keys that are expired when the compactions run.
const EXPIRE: u64 = T0 + 500;
/// When the compactions run.
const LATER: u64 = T0 + 1000;

fn value(tag: &str, i: u32) -> Vec<u8> {
    format!("{tag}-{i}-{}", "v".repeat(40 + (i % 7) as usize * 5)).into_bytes()
}

/// Builds the state described in the module docs in `dir`; returns the model (as seen at
/// `LATER`). The clock is left at `T0`.
fn build_state(dir: &Path) -> Model {
    let clock = TestClock::new(T0);
    let opts = opts_with(&clock, 4096);
    let db = Db::open(dir, opts).unwrap();
    let mut m = Model::default();
    let set = |db: &Db, m: &mut Model, k: String, v: Vec<u8>, at: Option<u64>| {
        let ver = db
            .set_with(k.as_bytes(), &v, WriteOptions { expire_at: at })
            .unwrap();
        m.set(k.as_bytes(), &v, at, ver);
    };
    for i in 0..60 {
        set(&db, &mut m, format!("a{i:02}"), value("a", i), None);
    }
    // Garbage in the oldest segments, then a compaction that leaves the active segment
    // alone: its outputs get ids above the active segment's.
    for i in 0..30 {
        set(&db, &mut m, format!("a{i:02}"), value("a2", i), None);
    }
    db.write_pending_hints().unwrap();
    let r = db.compact_if_needed().unwrap();
    assert!(r.segments_in > 0, "setup: want a partial compaction");
    // Deletes of keys that now live in those outputs, and of keys in older segments.
    for i in (0..60).step_by(3) {
        db.delete(format!("a{i:02}").as_bytes()).unwrap();
        m.delete(format!("a{i:02}").as_bytes());
    }
    // Keys whose newest put expires while an older, non-expiring put lives elsewhere.
    for i in (1..60).step_by(5) {
        set(
            &db,
            &mut m,
            format!("a{i:02}"),
            value("ttl", i),
            Some(EXPIRE),
        );
    }
    // Fresh keys, some expiring, some expiring only far in the future.
    for i in 0..40 {
        let at = match i % 3 {
            0 => Some(EXPIRE),
            1 => Some(LATER + 1_000_000),
            _ => None,
        };
        set(&db, &mut m, format!("b{i:02}"), value("b", i), at);
    }
    // Overwrite and delete some fresh keys, so the active segment holds tombstones too.
    for i in 0..10 {
        set(&db, &mut m, format!("b{i:02}"), value("b2", i), None);
    }
    for i in 10..15 {
        db.delete(format!("b{i:02}").as_bytes()).unwrap();
        m.delete(format!("b{i:02}").as_bytes());
    }
    let segs = segment_files(dir);
    assert!(
        segs.len() >= 4,
        "setup: want several segments, got {segs:?}"
    );
    db.close().unwrap();
    m
}

/// Crash at every mutating operation of a compaction. With `expire_while_open`, keys
/// expire while the database is open (the keydir still holds them when compaction runs);
/// otherwise they are already expired at open (recovery drops them from the keydir).
fn crash_during_compaction(expire_while_open: bool) {
    crash_or_power_loss_during_compaction(expire_while_open, false);
}

/// As [`crash_during_compaction`], with a power loss (torn writeback of unsynced appends)
/// after the crash: what compaction relied on must have been fsynced.
fn crash_or_power_loss_during_compaction(expire_while_open: bool, power_loss: bool) {
    let src = tempfile::tempdir().unwrap();
    let m = build_state(src.path());
    let mut completed = false;
    for n in 1..1000 {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let clock = TestClock::new(if expire_while_open { T0 } else { LATER });
        let vfs = FaultVfs::new();
        let ctl = vfs.controller();
        ctl.skip_syncs(true);
        if power_loss {
            ctl.track_durability(work.path()).unwrap();
        }
        let opts = Options {
            vfs: Arc::new(vfs),
            ..opts_with(&clock, 4096)
        };
        let db = Db::open(work.path(), opts).unwrap();
        if expire_while_open {
            clock.advance(LATER - T0);
        }
        ctl.crash_at(ctl.ops() + n);
        let res = db.compact();
        let crashed = ctl.triggered() > 0;
        drop(db);
        if power_loss {
            ctl.power_loss_torn(work.path(), n).unwrap();
        }
        let ctx = format!(
            "expire_while_open={expire_while_open}, power_loss={power_loss}, crash at op {n}"
        );
        if crashed {
            assert!(res.is_err(), "{ctx}: compaction reported success: {res:?}");
        } else {
            let r = res.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(r.segments_in >= 3, "{ctx}: {r:?}");
        }
        let opts = opts_with(&clock, 4096);
        let db = Db::open(work.path(), opts.clone()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_matches(&db, &m, LATER, &format!("{ctx}: after reopen"));
        db.compact().unwrap();
        assert_matches(
            &db,
            &m,
            LATER,
            &format!("{ctx}: after compacting the leftovers"),
        );
        db.close().unwrap();
        drop(db);
        let db = Db::open(work.path(), opts).unwrap();
        assert_matches(&db, &m, LATER, &format!("{ctx}: after a second reopen"));
        if !crashed {
            completed = true;
            eprintln!("compaction completes after {} mutating operations", n - 1);
            break;
        }
    }
    assert!(completed);
}

#[test]
fn crash_at_every_step_of_compaction_expired_at_open() {
    crash_during_compaction(false);
}

#[test]
fn crash_at_every_step_of_compaction_expiring_while_open() {
    crash_during_compaction(true);
}

#[test]
fn power_loss_at_every_step_of_compaction() {
    crash_or_power_loss_during_compaction(false, true);
    crash_or_power_loss_during_compaction(true, true);
}

/// Regression: recovery drops expired keys from the keydir; a compaction of only the
/// segment holding the expired put used to drop it without a tombstone, and the older
/// value (in a segment left alone) came back at the next open.
#[test]
fn partial_compaction_keeps_deleted_and_expired_keys_gone() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(T0);
    let opts = opts_with(&clock, 4096);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    // Segment 1: old values of "del" and "ttl" among plenty of live data (not wasteful).
    db.set(b"del", b"old value").unwrap();
    db.set(b"ttl", b"old value").unwrap();
    for i in 0..50u32 {
        db.set(format!("live{i:02}").as_bytes(), &value("live", i))
            .unwrap();
    }
    // Later segments: the delete, the expiring put, and lots of garbage.
    db.delete(b"del").unwrap();
    db.set_with(b"ttl", b"new value", WriteOptions::expire_at(EXPIRE))
        .unwrap();
    for round in 0..4u32 {
        for i in 0..15u32 {
            db.set(
                format!("junk{i:02}").as_bytes(),
                &value("junk", round * 100 + i),
            )
            .unwrap();
        }
    }
    clock.advance(LATER - T0);
    assert_eq!(db.get(b"ttl").unwrap(), None);
    db.close().unwrap();
    drop(db);
    for round in 0..3 {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(db.get(b"del").unwrap(), None, "round {round}");
        assert_eq!(db.get(b"ttl").unwrap(), None, "round {round}");
        db.write_pending_hints().unwrap();
        let r = db.compact_if_needed().unwrap();
        let first = db.stats().segments[0].id;
        assert_eq!(
            first, 1,
            "round {round}: the first segment must stay ({r:?})"
        );
        assert_eq!(db.get(b"del").unwrap(), None, "round {round}");
        assert_eq!(db.get(b"ttl").unwrap(), None, "round {round}");
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(db.get(b"del").unwrap(), None);
    assert_eq!(db.get(b"ttl").unwrap(), None);
    assert_eq!(db.scan(..).count(), 50 + 15);
}

/// Regression: compaction used to drop the records holding the newest sequence numbers
/// (a final delete, an expired put); the next open then handed out versions again.
#[test]
fn versions_never_go_back_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(T0);
    let opts = opts_with(&clock, 4096);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let v1 = db.set(b"k", b"1").unwrap();
    db.set_with(b"t", b"x", WriteOptions::expire_at(EXPIRE))
        .unwrap();
    db.delete(b"k").unwrap();
    let last = db.last_version();
    assert!(last > v1);
    clock.advance(LATER - T0);
    db.compact().unwrap();
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(db.last_version(), last);
    let v2 = db.set(b"k", b"2").unwrap();
    assert!(v2 > last, "version {v2} reissued (last was {last})");
    db.delete(b"k").unwrap();
    db.compact().unwrap();
    db.compact().unwrap();
    let last = db.last_version();
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(db.last_version(), last);
    assert_eq!(db.scan(..).count(), 0);
}

/// Space comes back: N keys, each overwritten 10 times, half deleted, one compaction.
///
/// "Live data" is `Stats::live_bytes`: the sum of the encoded sizes (header + key + value)
/// of the records the keydir points at. That is exactly what a perfect compaction must
/// keep; the rest of a segment file is its 16-byte header and garbage. The bound allows 20%
/// for segment headers and any tombstones a compaction must keep.
#[test]
fn compaction_returns_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 256 << 10,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    let n = 2000u32;
    for round in 0..10u32 {
        for i in 0..n {
            db.set(format!("key{i:05}").as_bytes(), &value("r", round * n + i))
                .unwrap();
        }
    }
    for i in (0..n).step_by(2) {
        db.delete(format!("key{i:05}").as_bytes()).unwrap();
    }
    let before: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    db.compact().unwrap();
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let stats = db.stats();
    let encoded: u64 = db
        .scan(..)
        .map(|r| r.unwrap())
        .map(|(k, v)| 29 + k.len() as u64 + v.len() as u64)
        .sum();
    assert_eq!(
        stats.live_bytes, encoded,
        "live_bytes is the encoded size of live records"
    );
    assert_eq!(stats.total_bytes, on_disk);
    assert!(
        on_disk * 10 <= stats.live_bytes * 12,
        "{on_disk} bytes on disk for {} live bytes (was {before})",
        stats.live_bytes
    );
    assert_eq!(db.scan(..).count(), n as usize / 2);
}
