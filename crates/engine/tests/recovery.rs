//! Recovery: what a crash or damaged bytes leave behind, and what the engine makes of it.
//!
//! - Every-byte truncation of the active segment within its last records (a batch and a
//!   put): exactly the complete prefix survives, the torn tail is cut off before the next
//!   append, and a torn batch is invisible as a whole.
//! - Random byte flips in a sealed segment, read through its hint file or by a scan: open or
//!   read reports `Corruption` naming that segment (or `Format` for a damaged file magic),
//!   and no value that differs from the model is ever returned.
//! - Damaged, truncated or missing hint files: the segment is scanned instead; same data.
//! - Damage in the tail segment that no later durability mark vouches for (the remnants of
//!   unacknowledged writes after a reordered writeback, also several of one group commit)
//!   is cut off; damage a later mark says was fsynced is refused.

mod common;

use std::fs::OpenOptions;
use std::path::Path;

use cask_engine::{Batch, Db, Error, Options, SyncPolicy};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// How [`build_history`] writes and ends its history.
#[derive(Clone, Copy, PartialEq, Eq)]
enum History {
    /// `SyncPolicy::Never`, then the process ends without closing: nothing was ever known
    /// to be durable, so the segment holds no durability marks.
    Unsynced,
    /// `SyncPolicy::Always`: every write is fsynced before the next, so each one after the
    /// first is preceded by a durability mark ([`MARK`] bytes); closed cleanly, which
    /// appends a last mark.
    Synced,
    /// `Always`, but the last two writes (the batch and the put) go through a deferring
    /// handle and share no fsync, like writers of one group commit; then a crash.
    GroupedTail,
}

/// The size of a durability mark (docs/FORMAT.md).
const MARK: u64 = 37;

/// Writes a history into one segment, recording the model after each write and the file
/// length at which that write ends.
fn build_history(dir: &Path, how: History) -> (Vec<(u64, Model)>, std::path::PathBuf) {
    let opts = Options {
        sync: if how == History::Unsynced {
            SyncPolicy::Never
        } else {
            SyncPolicy::Always
        },
        ..fast_opts()
    };
    let db = Db::open(dir, opts).unwrap();
    let mut m = Model::default();
    let mut states = Vec::new();
    let boundary = |db: &Db, m: &Model, states: &mut Vec<(u64, Model)>| {
        let seg = segment_files(db.dir()).pop().unwrap();
        states.push((file_len(&seg), m.clone()));
    };
    for i in 0..8u32 {
        let k = format!("key{i}");
        let v = format!("value-{i}-{}", "x".repeat(i as usize * 3));
        let ver = db.set(k.as_bytes(), v.as_bytes()).unwrap();
        m.set(k.as_bytes(), v.as_bytes(), None, ver);
        boundary(&db, &m, &mut states);
    }
    assert!(db.delete(b"key3").unwrap());
    m.delete(b"key3");
    boundary(&db, &m, &mut states);
    let tail = if how == History::GroupedTail {
        db.deferring()
    } else {
        db.clone()
    };
    // The last two records: a batch (overwrite, new key, delete, duplicate key) and a put.
    let mut b = Batch::new();
    b.put(b"key1".to_vec(), b"batched-1".to_vec())
        .put(b"new".to_vec(), b"first".to_vec())
        .delete(b"key2".to_vec())
        .put(b"new".to_vec(), b"second".to_vec());
    let ver = tail.write(&b).unwrap();
    m.set(b"key1", b"batched-1", None, ver);
    m.delete(b"key2");
    m.set(b"new", b"second", None, ver);
    boundary(&db, &m, &mut states);
    let ver = tail.set(b"key0", b"last-put").unwrap();
    m.set(b"key0", b"last-put", None, ver);
    boundary(&db, &m, &mut states);
    if how == History::Synced {
        db.close().unwrap();
    }
    drop((db, tail));
    let seg = segment_files(dir).pop().unwrap();
    (states, seg)
}

#[test]
fn truncation_at_every_offset_of_the_last_two_records() {
    let src = tempfile::tempdir().unwrap();
    let (states, seg) = build_history(src.path(), History::Unsynced);
    assert_eq!(segment_files(src.path()).len(), 1);
    let n = states.len();
    let from = states[n - 3].0;
    let to = states[n - 1].0;
    assert_eq!(to, file_len(&seg));
    for cut in from..=to {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = segment_files(work.path()).pop().unwrap();
        truncate(&seg, cut);
        // The surviving state is that of the last write that ended at or before the cut.
        let (_, want) = states.iter().rev().find(|(end, _)| *end <= cut).unwrap();
        let ctx = format!("cut at {cut} (records {from}..{to})");
        let db = Db::open(work.path(), fast_opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_matches(&db, want, 0, &ctx);
        // The torn tail must be gone before the next append, or it would swallow it.
        let mut want = want.clone();
        let ver = db.set(b"after", b"crash").unwrap();
        want.set(b"after", b"crash", None, ver);
        db.close().unwrap();
        drop(db);
        let db = Db::open(work.path(), fast_opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_matches(&db, &want, 0, &format!("{ctx}, after a write and reopen"));
        drop(db);
    }
}

#[test]
fn torn_batch_is_invisible() {
    let src = tempfile::tempdir().unwrap();
    let (states, _) = build_history(src.path(), History::Unsynced);
    let n = states.len();
    let (batch_start, before) = &states[n - 3];
    let (batch_end, _) = &states[n - 2];
    // Just before the commit record (29 + 4 bytes) and one byte short of the batch's end.
    for cut in [*batch_end - 33, *batch_end - 1, *batch_start + 1] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        truncate(&segment_files(work.path()).pop().unwrap(), cut);
        let db = Db::open(work.path(), fast_opts()).unwrap();
        assert_matches(&db, before, 0, &format!("batch cut at {cut}"));
        assert_eq!(db.get(b"new").unwrap(), None);
        assert!(db.get(b"key2").unwrap().is_some());
    }
}

fn zero_range(path: &Path, from: u64, to: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[from as usize..to as usize].fill(0);
    std::fs::write(path, bytes).unwrap();
}

/// A power loss during the last two (unsynced, unacknowledged) writes, with the disk's
/// writeback reordered: a sector in the middle of each never landed, while the bytes after
/// them did. No durability mark follows the first damage, so recovery must cut the tail
/// off and open at the state before those writes (it used to refuse with `Corruption`).
#[test]
fn reordered_torn_tail_is_cut_when_nothing_acknowledged_follows() {
    let src = tempfile::tempdir().unwrap();
    let (states, _) = build_history(src.path(), History::Unsynced);
    let n = states.len();
    let (batch_start, before) = &states[n - 3];
    let (batch_end, _) = &states[n - 2];
    let (put_end, _) = &states[n - 1];
    let work = tempfile::tempdir().unwrap();
    copy_dir(src.path(), work.path());
    let seg = segment_files(work.path()).pop().unwrap();
    // The key of the batch's first operation, and the middle of the last put (not its end).
    zero_range(&seg, batch_start + 29, batch_start + 33);
    zero_range(&seg, batch_end + 5, put_end - 3);
    let db = Db::open(work.path(), fast_opts()).expect("a reordered torn tail must open");
    assert_matches(&db, before, 0, "reordered torn tail");
    // The damage is gone before the next append.
    let mut want = before.clone();
    let ver = db.set(b"after", b"crash").unwrap();
    want.set(b"after", b"crash", None, ver);
    db.close().unwrap();
    drop(db);
    let db = Db::open(work.path(), fast_opts()).unwrap();
    assert_matches(
        &db,
        &want,
        0,
        "reordered torn tail, after a write and reopen",
    );
}

/// Damage in the tail segment that a later durability mark says was fsynced is not a torn
/// tail: the writes after it may have been acknowledged, so recovery must refuse rather
/// than cut them off. Under `Always` each write after the first starts with a mark saying
/// the one before it is durable.
#[test]
fn tail_damage_before_an_intact_write_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let (states, _) = build_history(src.path(), History::Synced);
    let n = states.len();
    let batch_start = states[n - 3].0 + MARK;
    let batch_end = states[n - 2].0;
    let delete_start = states[n - 4].0 + MARK;
    for (from, to, what) in [
        // The key of the delete before the batch; the batch and the put after it are intact.
        (delete_start + 29, delete_start + 31, "a delete"),
        // The key of the batch's first operation; the put after it is intact.
        (batch_start + 29, batch_start + 33, "a batch"),
        // The batch's commit record; the put after it is intact.
        (batch_end - 4, batch_end, "a batch commit"),
        // The last put: only the mark written by the clean close follows it.
        (batch_end + MARK + 29, batch_end + MARK + 31, "the last put"),
    ] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = segment_files(work.path()).pop().unwrap();
        zero_range(&seg, from, to);
        match Db::open(work.path(), fast_opts()) {
            Err(e) => assert!(e.is_corruption(), "damaged {what}: {e:?}"),
            Ok(_) => panic!("damage in {what} before an intact write must be refused"),
        }
    }
}

/// Regression (a CI failure of `group_commit_with_reordered_writeback`): writers of one
/// group commit append several records before the fsync they share, so a power loss can
/// leave a hole in an earlier one and a later one intact. Neither was acknowledged, and no
/// durability mark says otherwise, so recovery cuts the tail at the hole. It used to refuse
/// to open with `Corruption` ("unknown record kind") because an intact record followed.
#[test]
fn hole_in_a_group_of_unsynced_writes_is_a_torn_tail() {
    let src = tempfile::tempdir().unwrap();
    let (states, _) = build_history(src.path(), History::GroupedTail);
    let n = states.len();
    let (before_batch, before) = &states[n - 3];
    let batch_start = before_batch + MARK;
    for (from, to, what) in [
        // The batch's header (kind byte included); the put after it is intact.
        (batch_start, batch_start + 29, "the batch's first header"),
        // The key of the batch's first operation.
        (batch_start + 29, batch_start + 33, "the batch's first key"),
    ] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = segment_files(work.path()).pop().unwrap();
        zero_range(&seg, from, to);
        let db = Db::open(work.path(), fast_opts())
            .unwrap_or_else(|e| panic!("a hole in {what} must open: {e:?}"));
        assert_matches(&db, before, 0, what);
        assert_eq!(
            file_len(&seg),
            *before_batch + MARK,
            "{what}: cut at the hole"
        );
    }
}

/// Many keys over several 4 KiB segments; returns the model.
fn build_segments(dir: &Path, hints: bool) -> Model {
    let opts = Options {
        segment_size: 4096,
        ..fast_opts()
    };
    let db = Db::open(dir, opts).unwrap();
    let mut m = Model::default();
    for round in 0..2u32 {
        for i in 0..120u32 {
            if round == 1 && i % 3 != 0 {
                continue;
            }
            let k = format!("key{i:04}");
            let v = format!("{round}-{}", "v".repeat((i % 17) as usize * 5));
            let ver = db.set(k.as_bytes(), v.as_bytes()).unwrap();
            m.set(k.as_bytes(), v.as_bytes(), None, ver);
        }
    }
    for i in (0..120u32).step_by(7) {
        let k = format!("key{i:04}");
        db.delete(k.as_bytes()).unwrap();
        m.delete(k.as_bytes());
    }
    if hints {
        db.write_pending_hints().unwrap();
    }
    db.close().unwrap();
    m
}

fn flip_trials(hints: bool, trials: u32) {
    let src = tempfile::tempdir().unwrap();
    let m = build_segments(src.path(), hints);
    let segs = segment_files(src.path());
    assert!(segs.len() >= 4, "want several segments, got {}", segs.len());
    assert_eq!(
        hint_files(src.path()).len(),
        if hints { segs.len() - 1 } else { 0 }
    );
    let mut rng = StdRng::seed_from_u64(if hints { 1 } else { 2 });
    let (mut open_errors, mut read_errors, mut unnoticed) = (0, 0, 0);
    for trial in 0..trials {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        // A sealed segment: any but the last (active) one.
        let victim = segment_files(work.path())[rng.random_range(0..segs.len() - 1)].clone();
        let mut bytes = std::fs::read(&victim).unwrap();
        let flips = rng.random_range(1..=3);
        let mut at = Vec::new();
        for _ in 0..flips {
            let i = rng.random_range(0..bytes.len());
            bytes[i] ^= 1 << rng.random_range(0..8);
            at.push(i);
        }
        std::fs::write(&victim, &bytes).unwrap();
        let ctx = format!(
            "hints={hints} trial {trial}: flipped {} at {at:?}",
            victim.display()
        );
        let is_ours = |e: &Error| match e {
            Error::Corruption { path, .. } => path == &victim,
            Error::Format { path, .. } => path == &victim && at.iter().any(|i| *i < 8),
            _ => false,
        };
        let db = match Db::open(work.path(), fast_opts()) {
            Ok(db) => db,
            Err(e) => {
                assert!(
                    is_ours(&e),
                    "{ctx}: open failed with the wrong error: {e:?}"
                );
                open_errors += 1;
                continue;
            }
        };
        let mut noticed = false;
        for (k, v) in &m.map {
            match db.get(k) {
                Ok(got) => assert_eq!(got.as_ref(), Some(&v.value), "{ctx}: wrong value for {k:?}"),
                Err(e) => {
                    assert!(is_ours(&e), "{ctx}: get failed with the wrong error: {e:?}");
                    noticed = true;
                }
            }
        }
        for item in db.scan(..) {
            match item {
                Ok((k, v)) => assert_eq!(m.map.get(&k).map(|x| &x.value), Some(&v), "{ctx}: scan"),
                Err(e) => {
                    assert!(
                        is_ours(&e),
                        "{ctx}: scan failed with the wrong error: {e:?}"
                    );
                    noticed = true;
                }
            }
        }
        if noticed {
            read_errors += 1;
        } else {
            unnoticed += 1;
        }
    }
    eprintln!(
        "hints={hints}: {open_errors} open errors, {read_errors} read errors, {unnoticed} harmless flips"
    );
    if hints {
        assert!(
            read_errors > trials / 4,
            "flips in live records must be reported"
        );
    } else {
        assert!(
            open_errors > trials * 3 / 4,
            "a scan at open must see nearly every flip"
        );
    }
}

#[test]
fn byte_flips_in_sealed_segment_with_hint() {
    flip_trials(true, 150);
}

#[test]
fn byte_flips_in_sealed_segment_without_hint() {
    flip_trials(false, 150);
}

#[test]
fn damaged_hint_files_fall_back_to_scanning() {
    let src = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_000);
    let opts = opts_with(&clock, 4096);
    let db = Db::open(src.path(), opts.clone()).unwrap();
    let mut m = Model::default();
    for i in 0..300u32 {
        let k = format!("key{:03}", i % 90);
        let v = format!("value {i} {}", "z".repeat((i % 11) as usize * 7));
        let ver = db.set(k.as_bytes(), v.as_bytes()).unwrap();
        m.set(k.as_bytes(), v.as_bytes(), None, ver);
        if i == 200 {
            // Leaves compaction outputs with ids above the still-active segment.
            db.write_pending_hints().unwrap();
            db.compact_if_needed().unwrap();
        }
    }
    for i in (0..90u32).step_by(4) {
        db.delete(format!("key{i:03}").as_bytes()).unwrap();
        m.delete(format!("key{i:03}").as_bytes());
    }
    db.write_pending_hints().unwrap();
    db.close().unwrap();
    drop(db);
    let hints = hint_files(src.path());
    assert!(hints.len() >= 3);
    let mut rng = StdRng::seed_from_u64(7);
    for (h, _) in hints
        .iter()
        .enumerate()
        .flat_map(|h| std::iter::repeat_n(h, 3))
    {
        for damage in ["flip", "delete", "truncate", "empty"] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(src.path(), work.path());
            let hint = &hint_files(work.path())[h];
            let ctx = format!("{damage} {}", hint.display());
            match damage {
                "flip" => {
                    let mut b = std::fs::read(hint).unwrap();
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                    std::fs::write(hint, b).unwrap();
                }
                "delete" => std::fs::remove_file(hint).unwrap(),
                "truncate" => truncate(hint, rng.random_range(0..file_len(hint))),
                _ => truncate(hint, 0),
            }
            let db = Db::open(work.path(), opts.clone()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_matches(&db, &m, clock.now(), &ctx);
            let mut want = m.clone();
            let ver = db.set(b"later", b"write").unwrap();
            want.set(b"later", b"write", None, ver);
            db.close().unwrap();
            drop(db);
            let db = Db::open(work.path(), opts.clone()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_matches(&db, &want, clock.now(), &format!("{ctx}, after a write"));
            db.compact().unwrap();
            assert_matches(&db, &want, clock.now(), &format!("{ctx}, after compaction"));
        }
    }
}

/// Values around the scanner's 1 MiB read window, through the active-segment scan at
/// open, a sealed segment's scan, hint files and compaction; and a torn big record.
#[test]
fn values_around_the_scan_window() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 3 << 20,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let mut m = Model::default();
    let sizes = [
        (1 << 20) - 40,
        (1 << 20) - 29,
        1 << 20,
        (1 << 20) + 1,
        5,
        (2 << 20) + 7,
        0,
        1 << 20,
    ];
    for (i, n) in sizes.iter().enumerate() {
        let k = format!("big{i}");
        let v: Vec<u8> = (0..*n).map(|j| (j * 7 + i) as u8).collect();
        let ver = db.set(k.as_bytes(), &v).unwrap();
        m.set(k.as_bytes(), &v, None, ver);
    }
    assert_matches(&db, &m, 0, "written");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert_matches(&db, &m, 0, "reopened (scanned)");
    db.write_pending_hints().unwrap();
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert_matches(&db, &m, 0, "reopened (hints)");
    db.delete(b"big0").unwrap();
    m.delete(b"big0");
    db.compact().unwrap();
    assert_matches(&db, &m, 0, "compacted");
    // A torn big record at the end of the active segment.
    let v = vec![9u8; (1 << 20) + 100];
    db.set(b"torn", &v).unwrap();
    db.close().unwrap();
    drop(db);
    let seg = segment_files(dir.path()).pop().unwrap();
    truncate(&seg, file_len(&seg) - 50_000);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_matches(&db, &m, 0, "after a torn big record");
}

/// A directory written before durability marks (segment format version 1) opens with its
/// data, its tail segment is sealed rather than appended to (marks never go into a version 1
/// segment), and a version the build does not know is refused with `Format`.
#[test]
fn version_1_segments_are_read_and_never_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let (states, seg) = build_history(dir.path(), History::Unsynced);
    let set_version = |v: u8| {
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[7] = v;
        std::fs::write(&seg, bytes).unwrap();
    };
    set_version(1);
    let len = file_len(&seg);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    let mut want = states.last().unwrap().1.clone();
    assert_matches(&db, &want, 0, "version 1 segment");
    let ver = db.set(b"after", b"upgrade").unwrap();
    want.set(b"after", b"upgrade", None, ver);
    db.close().unwrap();
    drop(db);
    assert_eq!(file_len(&seg), len, "the version 1 segment took an append");
    assert_eq!(segment_files(dir.path()).len(), 2);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_matches(&db, &want, 0, "after the upgrade");
    drop(db);
    set_version(3);
    match Db::open(dir.path(), fast_opts()) {
        Err(Error::Format { path, reason }) => {
            assert_eq!(path, seg);
            assert!(reason.contains("version 3"), "{reason}");
        }
        other => panic!("version 3 must be refused: {:?}", other.map(|_| ())),
    }
}

/// A segment written by compaction was fsynced before it was ever used, so damage in it is
/// never a torn tail, even when it is the newest segment without a hint file (its hint was
/// lost) and carries no durability marks: the open is refused, nothing is cut off.
#[test]
fn damage_in_a_compaction_output_is_never_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    for round in 0..3u32 {
        for i in 0..100u32 {
            db.set(
                format!("key{i:03}").as_bytes(),
                format!("{round}-{i}").as_bytes(),
            )
            .unwrap();
        }
    }
    assert!(db.compact().unwrap().segments_in > 0);
    db.close().unwrap();
    drop(db);
    let newest = segment_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    assert_ne!(
        &bytes[12..16],
        &[0; 4],
        "the newest segment is a compaction output"
    );
    let hint = newest.with_extension("hint");
    std::fs::remove_file(&hint).unwrap();
    // The key of the first record; intact records follow it.
    zero_range(&newest, 16 + 29, 16 + 31);
    match Db::open(dir.path(), fast_opts()) {
        Err(e) => assert!(e.is_corruption(), "{e:?}"),
        Ok(_) => panic!("damage in a compaction output must be refused, not cut off"),
    }
    assert_eq!(
        std::fs::read(&newest).unwrap().len(),
        bytes.len(),
        "nothing cut"
    );
}
