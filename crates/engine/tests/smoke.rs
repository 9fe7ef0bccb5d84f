//! Quick end-to-end checks of the public API.

use cask_engine::{Batch, Db, Error, Options, SyncPolicy, WriteOptions};

fn opts() -> Options {
    Options {
        sync: SyncPolicy::Never,
        background_compaction: false,
        ..Options::default()
    }
}

#[test]
fn set_get_delete_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let v1 = db.set(b"a", b"1").unwrap();
    let v2 = db.set(b"b", b"2").unwrap();
    assert!(v2 > v1);
    assert_eq!(db.last_version(), v2);
    assert!(db.delete(b"b").unwrap() && db.last_version() > v2);
    let v2 = db.set(b"b", b"2").unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert!(db.delete(b"a").unwrap());
    assert!(!db.delete(b"a").unwrap());
    assert_eq!(db.get(b"a").unwrap(), None);
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get(b"a").unwrap(), None);
    assert_eq!(db.get_versioned(b"b").unwrap(), Some((b"2".to_vec(), v2)));
    let mut b = Batch::new();
    b.put(b"x".to_vec(), b"1".to_vec()).delete(b"b".to_vec());
    db.write(&b).unwrap();
    assert_eq!(db.get(b"b").unwrap(), None);
    let all: Vec<_> = db.scan(..).map(|r| r.unwrap()).collect();
    assert_eq!(all, vec![(b"x".to_vec(), b"1".to_vec())]);
    match db.set_if(b"x", Some(1), b"2", WriteOptions::default()) {
        Err(Error::Conflict { .. }) => {}
        other => panic!("expected conflict, got {other:?}"),
    }
    assert!(matches!(
        Db::open(dir.path(), opts()),
        Err(Error::Locked { .. })
    ));
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get(b"x").unwrap(), Some(b"1".to_vec()));
    for i in 0..1000u32 {
        db.set(format!("k{i:04}").as_bytes(), &[7u8; 100]).unwrap();
    }
    let r = db.compact().unwrap();
    assert!(r.segments_in >= 1);
    // Compaction outputs carry hint files, and stats knows without touching the disk.
    assert!(
        db.stats()
            .segments
            .iter()
            .filter(|s| !s.active)
            .all(|s| s.has_hint)
    );
    assert_eq!(db.scan_prefix(b"k").count(), 1000);
    assert_eq!(
        db.scan_prefix(b"k").reverse().next().unwrap().unwrap().0,
        b"k0999".to_vec()
    );
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.scan_prefix(b"k").count(), 1000);
    assert_eq!(db.get(b"x").unwrap(), Some(b"1".to_vec()));
    // When compaction last ran survives a restart (it is in the output segments' headers).
    let stats = db.stats();
    let last = stats
        .last_compaction_ms
        .expect("compaction time known after reopen");
    assert!(
        db.now_ms().abs_diff(last) < 60_000,
        "last compaction {last} is not recent"
    );
    assert!(stats.segments.iter().any(|s| s.compacted_at.is_some()));
    assert!(
        stats
            .segments
            .iter()
            .filter(|s| s.compacted_at.is_some())
            .all(|s| s.has_hint)
    );
    assert!(
        stats
            .segments
            .iter()
            .all(|s| s.bytes == 16 + s.live_bytes + s.dead_bytes)
    );
}
