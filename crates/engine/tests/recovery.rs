//! Recovery: what a crash or damaged bytes leave behind, and what the engine makes of it.
//!
//! - Every-byte truncation of the active segment within its last records (a batch and a
//!   put): exactly the complete prefix survives, the torn tail is cut off before the next
//!   append, and a torn batch is invisible as a whole.
//! - Random byte flips in a sealed segment, read through its hint file or by a scan: open or
//!   read reports `Corruption` naming that segment (or `Format` for a damaged file magic),
//!   and no value that differs from the model is ever returned.
//! - Damaged, truncated or missing hint files: the segment is scanned instead; same data.
//! - Damage in the tail segment followed only by remnants of unacknowledged writes (a
//!   reordered writeback) is cut off; damage followed by an intact write is refused.

mod common;

use std::fs::OpenOptions;
use std::path::Path;

use cask_engine::{Batch, Db, Error, Options};
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

/// Writes a history into one segment, recording the model after each write and the file
/// length at which that write ends.
fn build_history(dir: &Path) -> (Vec<(u64, Model)>, std::path::PathBuf) {
    let db = Db::open(dir, fast_opts()).unwrap();
    let seg = segment_files(dir).pop();
    let mut m = Model::default();
    let mut states = Vec::new();
    let boundary = |db: &Db, m: &Model, states: &mut Vec<(u64, Model)>| {
        let seg = segment_files(db.dir()).pop().unwrap();
        states.push((file_len(&seg), m.clone()));
    };
    let _ = seg;
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
    // The last two records: a batch (overwrite, new key, delete, duplicate key) and a put.
    let mut b = Batch::new();
    b.put(b"key1".to_vec(), b"batched-1".to_vec())
        .put(b"new".to_vec(), b"first".to_vec())
        .delete(b"key2".to_vec())
        .put(b"new".to_vec(), b"second".to_vec());
    let ver = db.write(&b).unwrap();
    m.set(b"key1", b"batched-1", None, ver);
    m.delete(b"key2");
    m.set(b"new", b"second", None, ver);
    boundary(&db, &m, &mut states);
    let ver = db.set(b"key0", b"last-put").unwrap();
    m.set(b"key0", b"last-put", None, ver);
    boundary(&db, &m, &mut states);
    db.close().unwrap();
    let seg = segment_files(dir).pop().unwrap();
    (states, seg)
}

#[test]
fn truncation_at_every_offset_of_the_last_two_records() {
    let src = tempfile::tempdir().unwrap();
    let (states, seg) = build_history(src.path());
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
    let (states, _) = build_history(src.path());
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
/// them did. Nothing acknowledged follows the first damage, so recovery must cut the tail
/// off and open at the state before those writes (it used to refuse with `Corruption`).
#[test]
fn reordered_torn_tail_is_cut_when_nothing_acknowledged_follows() {
    let src = tempfile::tempdir().unwrap();
    let (states, _) = build_history(src.path());
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

/// Damage in the tail segment followed by an intact, complete write is not a torn tail: that
/// write may have been acknowledged, so recovery must refuse rather than cut it off.
#[test]
fn tail_damage_before_an_intact_write_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let (states, _) = build_history(src.path());
    let n = states.len();
    let (batch_start, _) = &states[n - 3];
    let (batch_end, _) = &states[n - 2];
    for (from, to, what) in [
        // The key of the delete before the batch; the batch and the put after it are intact.
        (states[n - 4].0 + 29, states[n - 4].0 + 31, "a delete"),
        // The key of the batch's first operation; the put after it is intact.
        (batch_start + 29, batch_start + 33, "a batch"),
        // The batch's commit record; the put after it is intact.
        (batch_end - 4, *batch_end, "a batch commit"),
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
