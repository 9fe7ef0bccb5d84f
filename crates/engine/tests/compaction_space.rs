//! Regression: compaction used to keep every tombstone of a batch of deletes that was the
//! newest write (a batch shares one sequence number, and the newest sequence number must
//! survive). One record carrying it is enough.

use cask_engine::{Batch, Db, Options, SyncPolicy};

/// No fsyncs, no background compaction: the tests decide when to compact.
fn opts() -> Options {
    Options {
        sync: SyncPolicy::Never,
        background_compaction: false,
        ..Options::default()
    }
}

#[test]
fn newest_batch_of_deletes_leaves_one_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    for i in 0..1000u32 {
        db.set(format!("key{i:05}").as_bytes(), &[1u8; 100])
            .unwrap();
    }
    db.set(b"survivor", b"yes").unwrap();
    let mut batch = Batch::new();
    for i in 0..1000u32 {
        batch.delete(format!("key{i:05}").into_bytes());
    }
    let version = db.write(&batch).unwrap();
    db.compact().unwrap();
    let stats = db.stats();
    // The survivor (29 + 8 + 3 bytes) plus at most one 37-byte tombstone and headers.
    let tombstone = 29 + 8;
    assert!(
        stats.dead_bytes <= tombstone,
        "dead bytes after compaction: {stats:?}"
    );
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.last_version(), version, "versions must never go back");
    assert_eq!(db.get(b"key00007").unwrap(), None);
    assert_eq!(db.get(b"survivor").unwrap(), Some(b"yes".to_vec()));
    let next = db.set(b"after", b"x").unwrap();
    assert!(next > version);
}

/// Regression: a sealed segment made of tombstones that still shadow puts in an older,
/// mostly live segment was picked by every automatic compaction (its tombstones count as
/// dead bytes), rewritten whole (they must be kept while the older puts exist) and picked
/// again: a full rewrite every compaction interval, forever, reclaiming nothing. Seen in
/// the 1 M-element sorted-set benchmark (`compaction finished inputs=1 outputs=1
/// reclaimed=0` every 16 s on an idle server).
#[test]
fn tombstones_that_must_stay_are_not_rewritten_again_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let small_segments = || Options {
        segment_size: 64 << 10,
        ..opts()
    };
    let db = Db::open(dir.path(), small_segments()).unwrap();
    let key = |i: u32| format!("key{i:05}").into_bytes();
    // Old segments: 2,000 puts. Deleting one in five leaves them 80 % live (not picked).
    for i in 0..2000 {
        db.set(&key(i), &[7u8; 100]).unwrap();
    }
    // Seal the puts' last segment (nothing to compact yet), so that the tombstones get
    // a segment of their own, sealed by a record too large to join them.
    assert_eq!(db.compact().unwrap().segments_in, 0);
    let mut batch = Batch::new();
    for i in (0..2000).step_by(5) {
        batch.delete(key(i));
    }
    db.write(&batch).unwrap();
    db.set(b"large", &[1u8; 60 << 10]).unwrap();
    let first = db.compact_if_needed().unwrap();
    assert_eq!(
        first.segments_in, 1,
        "the tombstones' segment is picked once"
    );
    for round in 0..3 {
        let again = db.compact_if_needed().unwrap();
        assert_eq!(
            again.segments_in, 0,
            "round {round}: rewrote kept tombstones again: {again:?}"
        );
    }
    // A full compaction takes the old segments too: now the tombstones can go.
    db.compact().unwrap();
    let stats = db.stats();
    assert!(
        stats.dead_bytes < 100,
        "tombstones dropped by a full compaction: {stats:?}"
    );
    db.close().unwrap();
    let db = Db::open(dir.path(), small_segments()).unwrap();
    assert_eq!(db.get(&key(5)).unwrap(), None, "deleted stays deleted");
    assert_eq!(db.get(&key(6)).unwrap(), Some(vec![7u8; 100]));
}
