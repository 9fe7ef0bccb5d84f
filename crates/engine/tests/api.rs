//! API contracts: the directory lock, TTL visibility, batch atomicity, compare-and-set
//! conflicts, size limits, the empty key.

mod common;

use cask_engine::{Batch, Db, Error, Options, WriteOptions};
use common::*;

#[test]
fn second_open_is_locked_and_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    match Db::open(dir.path(), fast_opts()) {
        Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // A clone is the same handle: it keeps the lock alive.
    let clone = db.clone();
    drop(db);
    assert!(matches!(
        Db::open(dir.path(), fast_opts()),
        Err(Error::Locked { .. })
    ));
    clone.set(b"k", b"v").unwrap();
    drop(clone);
    // Released on drop of the last handle.
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    // Released on close, even while another clone is alive; that clone is then closed.
    let other = db.clone();
    db.close().unwrap();
    db.close().unwrap();
    assert!(matches!(other.get(b"k"), Err(Error::Closed)));
    assert!(matches!(other.set(b"k", b"w"), Err(Error::Closed)));
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn ttl_is_invisible_from_the_moment_of_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(10_000);
    let opts = opts_with(&clock, 1 << 20);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    db.set(b"a", b"plain").unwrap();
    let ver = db
        .set_with(b"t", b"ttl", WriteOptions::expire_at(10_100))
        .unwrap();
    let mut b = Batch::new();
    b.put_with_expiry(b"bt".to_vec(), b"batch-ttl".to_vec(), Some(10_100));
    db.write(&b).unwrap();
    let visible = |db: &Db| {
        (
            db.get(b"t").unwrap(),
            db.get_versioned(b"t").unwrap().map(|(_, v)| v),
            db.metadata(b"t").unwrap().map(|m| m.expire_at),
            db.contains(b"bt").unwrap(),
            db.scan(..).count(),
            db.keys(..).count(),
            db.scan_prefix(b"b").count(),
        )
    };
    clock.advance(99);
    assert_eq!(
        visible(&db),
        (
            Some(b"ttl".to_vec()),
            Some(ver),
            Some(Some(10_100)),
            true,
            3,
            3,
            1
        )
    );
    clock.advance(1);
    assert_eq!(visible(&db), (None, None, None, false, 1, 1, 0));
    assert!(!db.delete(b"t").unwrap(), "an expired key does not exist");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(visible(&db), (None, None, None, false, 1, 1, 0));
    // An expired key counts as absent for compare-and-set.
    db.set_if(b"t", None, b"again", WriteOptions::default())
        .unwrap();
    assert_eq!(db.get(b"t").unwrap(), Some(b"again".to_vec()));
    // Expiry in the past: accepted, never visible.
    db.set_with(b"p", b"past", WriteOptions::expire_at(5))
        .unwrap();
    assert_eq!(db.get(b"p").unwrap(), None);
    db.compact().unwrap();
    assert_eq!(db.get(b"p").unwrap(), None);
    assert_eq!(db.get(b"t").unwrap(), Some(b"again".to_vec()));
}

#[test]
fn cas_conflicts_report_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    let none = WriteOptions::default();
    let v1 = db.set_if(b"k", None, b"1", none).unwrap();
    match db.set_if(b"k", None, b"x", none) {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (None, Some(v1)))
        }
        other => panic!("{other:?}"),
    }
    match db.set_if(b"k", Some(v1 + 100), b"x", none) {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (Some(v1 + 100), Some(v1)))
        }
        other => panic!("{other:?}"),
    }
    match db.set_if(b"absent", Some(v1), b"x", none) {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (Some(v1), None))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.get(b"absent").unwrap(), None);
    let v2 = db.set_if(b"k", Some(v1), b"2", none).unwrap();
    assert!(v2 > v1);
    match db.delete_if(b"k", v1) {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (Some(v1), Some(v2)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.get_versioned(b"k").unwrap(), Some((b"2".to_vec(), v2)));
    db.delete_if(b"k", v2).unwrap();
    assert_eq!(db.get(b"k").unwrap(), None);
    // write_if: the check sees current versions; a failing check writes nothing.
    let v3 = db.set(b"a", b"a").unwrap();
    let mut b = Batch::new();
    b.put(b"a".to_vec(), b"A".to_vec())
        .put(b"b".to_vec(), b"B".to_vec());
    let r = db.write_if(&b, |ver| {
        Err(Error::Conflict {
            expected: Some(0),
            actual: ver(b"a"),
        })
    });
    assert!(matches!(r, Err(Error::Conflict { actual: Some(v), .. }) if v == v3));
    assert_eq!(db.get(b"a").unwrap(), Some(b"a".to_vec()));
    assert_eq!(db.get(b"b").unwrap(), None);
    let v4 = db.write_if(&b, |ver| {
        assert_eq!((ver(b"a"), ver(b"b")), (Some(v3), None));
        Ok(())
    });
    let v4 = v4.unwrap();
    assert_eq!(db.get_versioned(b"b").unwrap(), Some((b"B".to_vec(), v4)));
}

#[test]
fn batches_are_atomic_and_share_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    db.set(b"gone", b"x").unwrap();
    db.set(b"dup", b"old").unwrap();
    let mut b = Batch::new();
    b.put(b"a".to_vec(), b"1".to_vec())
        .put(b"dup".to_vec(), b"first".to_vec())
        .delete(b"gone".to_vec())
        .delete(b"dup".to_vec())
        .put(b"dup".to_vec(), b"last".to_vec())
        .put(b"c".to_vec(), b"3".to_vec())
        .delete(b"c".to_vec());
    let ver = db.write(&b).unwrap();
    let check = |db: &Db| {
        assert_eq!(db.get_versioned(b"a").unwrap(), Some((b"1".to_vec(), ver)));
        assert_eq!(
            db.get_versioned(b"dup").unwrap(),
            Some((b"last".to_vec(), ver))
        );
        assert_eq!(db.get(b"gone").unwrap(), None);
        assert_eq!(db.get(b"c").unwrap(), None);
        assert_eq!(db.scan(..).count(), 2);
    };
    check(&db);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    check(&db);
    db.compact().unwrap();
    check(&db);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    check(&db);
    // An empty batch writes nothing.
    let before = db.last_version();
    assert_eq!(db.write(&Batch::new()).unwrap(), before);
    assert_eq!(db.last_version(), before);
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn oversized_keys_values_and_batches_are_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_key_size: 16,
        max_value_size: 64,
        max_batch_size: 500,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    db.set(&[b'k'; 16], &[b'v'; 64]).unwrap();
    let (seq, bytes) = (db.last_version(), disk_bytes(dir.path()));
    let too_large = |r: cask_engine::Result<u64>, what: &str, size: u64, limit: u64| match r {
        Err(Error::TooLarge {
            what: w,
            size: s,
            limit: l,
        }) => assert_eq!((w, s, l), (what, size, limit)),
        other => panic!("expected TooLarge {what}, got {other:?}"),
    };
    too_large(db.set(&[b'k'; 17], b"v"), "key", 17, 16);
    too_large(db.set(b"k", &[0; 65]), "value", 65, 64);
    too_large(
        db.set_with(b"k", &[0; 65], WriteOptions::expire_at(u64::MAX)),
        "value",
        65,
        64,
    );
    too_large(
        db.set_if(b"k", None, &[0; 65], WriteOptions::default()),
        "value",
        65,
        64,
    );
    assert!(matches!(
        db.delete(&[b'k'; 17]),
        Err(Error::TooLarge { what: "key", .. })
    ));
    let mut b = Batch::new();
    b.put(b"ok".to_vec(), b"ok".to_vec())
        .put(b"big".to_vec(), vec![0; 65]);
    too_large(db.write(&b), "value", 65, 64);
    let mut b = Batch::new();
    for i in 0..10u8 {
        b.put(vec![i], vec![0; 40]);
    }
    // 10 records of 29 + 1 + 40 bytes.
    too_large(db.write(&b), "batch", 700, 500);
    assert_eq!(db.last_version(), seq);
    assert_eq!(disk_bytes(dir.path()), bytes);
    assert_eq!(db.get(b"ok").unwrap(), None);
    assert_eq!(db.get(&[0]).unwrap(), None);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(db.scan(..).count(), 1);
}

#[test]
fn empty_key_and_empty_value_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    db.set(b"", b"empty key").unwrap();
    db.set(b"e", b"").unwrap();
    db.set(b"\x00", b"nul").unwrap();
    let all = |db: &Db| db.scan(..).collect::<Result<Vec<_>, _>>().unwrap();
    let want = vec![
        (b"".to_vec(), b"empty key".to_vec()),
        (b"\x00".to_vec(), b"nul".to_vec()),
        (b"e".to_vec(), b"".to_vec()),
    ];
    assert_eq!(all(&db), want);
    assert_eq!(db.get(b"").unwrap(), Some(b"empty key".to_vec()));
    assert_eq!(db.get(b"e").unwrap(), Some(Vec::new()));
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_eq!(all(&db), want);
    db.compact().unwrap();
    assert_eq!(all(&db), want);
    assert!(db.delete(b"").unwrap());
    assert_eq!(db.get(b"").unwrap(), None);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_eq!(db.get(b"").unwrap(), None);
    assert_eq!(db.scan(..).count(), 2);
}

#[test]
fn scans_skip_keys_deleted_or_changed_ahead_of_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    for i in 0..10u32 {
        db.set(format!("k{i}").as_bytes(), b"old").unwrap();
    }
    let mut scan = db.scan(..);
    let mut keys = db.keys(..);
    assert_eq!(scan.next().unwrap().unwrap().0, b"k0".to_vec());
    assert_eq!(keys.next().unwrap().unwrap(), b"k0".to_vec());
    db.delete(b"k5").unwrap();
    db.set(b"k6", b"new").unwrap();
    let rest: Vec<_> = scan.map(|r| r.unwrap()).collect();
    assert!(
        !rest.iter().any(|(k, _)| k == b"k5"),
        "a key deleted ahead of the scan was returned"
    );
    assert_eq!(
        rest.iter()
            .find(|(k, _)| k == b"k6")
            .map(|(_, v)| v.clone()),
        Some(b"new".to_vec()),
        "a scan reads each key at its newest version"
    );
    let rest: Vec<_> = keys.map(|r| r.unwrap()).collect();
    assert!(
        !rest.contains(&b"k5".to_vec()),
        "a key deleted ahead of the listing was returned"
    );
}

#[test]
fn lowering_the_value_limit_never_drops_stored_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    db.set(b"small", b"x").unwrap();
    db.set(b"big", &[7u8; 100]).unwrap();
    db.close().unwrap();
    drop(db);
    let small_limit = Options {
        max_value_size: 50,
        ..fast_opts()
    };
    // Refusing to open is fine; silently cutting the record off as a "torn tail" is not.
    if let Ok(db) = Db::open(dir.path(), small_limit) {
        assert_eq!(db.get(b"big").unwrap(), Some(vec![7u8; 100]));
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert_eq!(db.get(b"big").unwrap(), Some(vec![7u8; 100]));
}

#[test]
fn expiry_at_time_zero_is_already_expired() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    db.set_with(b"a", b"1", WriteOptions::expire_at(0)).unwrap();
    db.set_if(b"b", None, b"2", WriteOptions::expire_at(0))
        .unwrap();
    let mut batch = Batch::new();
    batch.put_with_expiry(b"c".to_vec(), b"3".to_vec(), Some(0));
    db.write(&batch).unwrap();
    for k in [b"a", b"b", b"c"] {
        assert_eq!(
            db.get(k).unwrap(),
            None,
            "{k:?} expired at the epoch is visible"
        );
    }
    assert_eq!(db.scan(..).count(), 0);
}

#[test]
fn count_matches_a_listing_across_chunks_and_skips_expired_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    let mut batch = Batch::new();
    // More than one counting chunk (64 Ki entries).
    for i in 0..70_000u32 {
        batch.put(format!("a{i:06}").into_bytes(), b"v".to_vec());
        if batch.len() == 10_000 {
            db.write(&batch).unwrap();
            batch.clear();
        }
    }
    db.write(&batch).unwrap();
    db.set(b"b1", b"v").unwrap();
    db.set_with(b"b2", b"v", WriteOptions::expire_at(1))
        .unwrap();
    db.set(b"c", b"v").unwrap();
    db.delete(b"c").unwrap();
    let lo = |k: &[u8]| std::ops::Bound::Included(k.to_vec());
    let hi = |k: &[u8]| std::ops::Bound::Excluded(k.to_vec());
    assert_eq!(db.count(..).unwrap(), 70_001);
    assert_eq!(db.count((lo(b"a"), hi(b"b"))).unwrap(), 70_000);
    assert_eq!(db.count((lo(b"b"), hi(b"c"))).unwrap(), 1);
    assert_eq!(db.count((lo(b"a050000"), hi(b"a050010"))).unwrap(), 10);
    for range in [(lo(b"z"), hi(b"a")), (hi(b"b"), hi(b"b"))] {
        assert_eq!(db.count(range.clone()).unwrap(), 0);
        assert_eq!(db.keys(range).count(), 0);
    }
    assert_eq!(db.count(..).unwrap() as usize, db.keys(..).count());
}

/// A scan reads the values of nearby records with one `pread` per run; a value read ahead
/// must never be returned once the key has been overwritten or deleted (or the record moved
/// by compaction) before the scan reaches it.
#[test]
fn values_read_ahead_by_a_scan_yield_to_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    let key = |i: u32| format!("k{i:03}").into_bytes();
    for i in 0..200 {
        db.set(&key(i), format!("v{i}").as_bytes()).unwrap();
    }
    let mut scan = db.scan(..);
    // The first chunk (16 entries) and its values are read when the scan starts.
    assert_eq!(scan.next().unwrap().unwrap(), (key(0), b"v0".to_vec()));
    db.set(&key(1), b"newer").unwrap();
    db.delete(&key(2)).unwrap();
    db.set(&key(40), b"far ahead").unwrap();
    // Compaction moves every record that is still live: values read ahead of the move are
    // equal bytes but stale locations, and must be read again.
    db.compact().unwrap();
    db.set(&key(3), b"after compaction").unwrap();
    let rest: Vec<(Vec<u8>, Vec<u8>)> = scan.map(Result::unwrap).collect();
    assert_eq!(rest[0], (key(1), b"newer".to_vec()));
    assert_eq!(rest[1], (key(3), b"after compaction".to_vec()));
    assert_eq!(rest[2], (key(4), b"v4".to_vec()));
    assert!(
        rest.iter().all(|(k, _)| *k != key(2)),
        "deleted key returned"
    );
    assert_eq!(rest.len(), 198);
    let far = rest.iter().find(|(k, _)| *k == key(40)).unwrap();
    assert_eq!(far.1, b"far ahead");
    for (k, v) in &rest {
        let i: u32 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
        if ![1, 3, 40].contains(&i) {
            assert_eq!(v, format!("v{i}").as_bytes());
        }
    }
}

/// With nothing written since a chunk was read ahead, its values are served without looking
/// the keys up again, but a key whose expiry passes meanwhile is still not returned; a
/// scan told how many entries to expect reads them in one chunk and returns the same.
#[test]
fn values_read_ahead_respect_expiry_reached_while_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(10_000);
    let db = Db::open(dir.path(), opts_with(&clock, 1 << 20)).unwrap();
    let key = |i: u32| format!("k{i:03}").into_bytes();
    for i in 0..100 {
        let opts = match i {
            5 | 60 => WriteOptions::expire_at(10_050),
            _ => WriteOptions::default(),
        };
        db.set_with(&key(i), format!("v{i}").as_bytes(), opts)
            .unwrap();
    }
    let all: Vec<(Vec<u8>, Vec<u8>)> = db.scan(..).expect(100).map(Result::unwrap).collect();
    assert_eq!(all.len(), 100);
    for expect in [0, 100] {
        let mut scan = db.scan(..).expect(expect);
        assert_eq!(scan.next().unwrap().unwrap(), (key(0), b"v0".to_vec()));
        clock.advance(if expect == 0 { 100 } else { 0 });
        let rest: Vec<Vec<u8>> = scan.map(|r| r.unwrap().0).collect();
        assert!(
            !rest.contains(&key(5)) && !rest.contains(&key(60)),
            "{expect}"
        );
        assert_eq!(rest.len(), 97, "{expect}");
    }
}

/// Flips every byte equal to `from` in the database's segment files to `to`.
fn rewrite_bytes_on_disk(dir: &std::path::Path, from: u8, to: u8) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "seg") {
            let mut b = std::fs::read(&path).unwrap();
            b.iter_mut().filter(|x| **x == from).for_each(|x| *x = to);
            std::fs::write(&path, b).unwrap();
        }
    }
}

#[test]
fn small_values_are_served_from_the_value_cache_and_only_for_the_current_record() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        value_cache_max_value: 16,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    // A new record of a key replaces the cached one; an old value never comes back, also
    // after compaction moved the records.
    db.set(b"hot", b"CCCC").unwrap();
    assert_eq!(db.get(b"hot").unwrap(), Some(b"CCCC".to_vec()));
    db.set(b"hot", &[b'C'; 40]).unwrap();
    assert_eq!(db.get(b"hot").unwrap(), Some(vec![b'C'; 40]));
    db.set(b"hot", b"DDDD").unwrap();
    db.compact().unwrap();
    assert_eq!(db.get(b"hot").unwrap(), Some(b"DDDD".to_vec()));
    db.set(b"hot", b"AAAA").unwrap();
    db.set(b"large", &[b'A'; 17]).unwrap();
    db.set(b"gone", b"AAAA").unwrap();
    db.delete(b"gone").unwrap();
    // Garble the values on disk behind the engine's back: a read that goes to the file
    // now fails its checksum, one served from the cache does not.
    rewrite_bytes_on_disk(dir.path(), b'A', b'B');
    assert_eq!(db.get(b"hot").unwrap(), Some(b"AAAA".to_vec()));
    assert!(matches!(db.get(b"large"), Err(Error::Corruption { .. })));
    assert_eq!(db.get(b"gone").unwrap(), None);
    drop(db);

    // With no slots every read goes to the file.
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        value_cache_slots: 0,
        ..fast_opts()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    db.set(b"hot", b"AAAA").unwrap();
    rewrite_bytes_on_disk(dir.path(), b'A', b'B');
    assert!(matches!(db.get(b"hot"), Err(Error::Corruption { .. })));
}
