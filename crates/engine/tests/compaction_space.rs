//! Regression: compaction used to keep every tombstone of a batch of deletes that was the
//! newest write (a batch shares one sequence number, and the newest sequence number must
//! survive). One record carrying it is enough.

use cask_engine::{Batch, Db, Options, SyncPolicy};

#[test]
fn newest_batch_of_deletes_leaves_one_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options {
        sync: SyncPolicy::Never,
        background_compaction: false,
        ..Options::default()
    };
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
