//! The fsync latency histogram in `Stats` counts every write-path fsync.

use cask_engine::{Db, Options, SYNC_LATENCY_BOUNDS_US, SyncPolicy};

#[test]
fn every_fsync_is_counted_in_one_latency_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().sync(SyncPolicy::Always)).unwrap();
    let before = db.stats();
    for i in 0..5u32 {
        db.set(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    let after = db.stats();
    assert_eq!(after.sync_latency.len(), SYNC_LATENCY_BOUNDS_US.len() + 1);
    let synced = after.syncs - before.syncs;
    assert!(
        synced >= 5,
        "always: one fsync per lone write, got {synced}"
    );
    let bucketed: u64 =
        after.sync_latency.iter().sum::<u64>() - before.sync_latency.iter().sum::<u64>();
    assert_eq!(bucketed, synced);
    assert!(after.sync_nanos > before.sync_nanos);
    db.close().unwrap();
}
