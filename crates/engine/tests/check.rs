//! `check` and `check --repair` on damaged directories: damage is reported with its path,
//! repair salvages every intact record, and the repaired directory opens and never serves
//! a value the key did not have.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use cask_engine::{Batch, Db, Error, Options, check};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every value each key ever had.
type History = BTreeMap<Vec<u8>, HashSet<Vec<u8>>>;

fn build(dir: &Path) -> (Model, History) {
    let opts = Options {
        segment_size: 4096,
        ..fast_opts()
    };
    let db = Db::open(dir, opts).unwrap();
    let mut m = Model::default();
    let mut h = History::new();
    let mut rng = StdRng::seed_from_u64(3);
    for i in 0..300u32 {
        let k = format!("key{:02}", rng.random_range(0..50)).into_bytes();
        let v = format!("{i}-{}", "p".repeat(rng.random_range(0..60))).into_bytes();
        h.entry(k.clone()).or_default().insert(v.clone());
        match i % 10 {
            0..6 => {
                let ver = db.set(&k, &v).unwrap();
                m.set(&k, &v, None, ver);
            }
            6 => {
                db.delete(&k).unwrap();
                m.delete(&k);
            }
            _ => {
                let k2 = format!("key{:02}", rng.random_range(0..50)).into_bytes();
                let mut b = Batch::new();
                b.put(k.clone(), v.clone()).put(k2.clone(), v.clone());
                h.entry(k2.clone()).or_default().insert(v.clone());
                let ver = db.write(&b).unwrap();
                m.set(&k, &v, None, ver);
                m.set(&k2, &v, None, ver);
            }
        }
    }
    db.close().unwrap();
    (m, h)
}

#[test]
fn clean_directory_checks_ok_and_open_database_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let r = check(dir.path(), &fast_opts(), false, &mut |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert!(r.records >= 300);
    let db = Db::open(dir.path(), fast_opts()).unwrap();
    assert!(matches!(
        check(dir.path(), &fast_opts(), false, &mut |_, _| {}),
        Err(Error::Locked { .. })
    ));
    drop(db);
}

#[test]
fn repair_salvages_intact_records_and_the_result_opens() {
    let src = tempfile::tempdir().unwrap();
    let (m, history) = build(src.path());
    let segs = segment_files(src.path());
    assert!(segs.len() >= 4);
    let mut rng = StdRng::seed_from_u64(11);
    for trial in 0..60 {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let victim = segment_files(work.path())[rng.random_range(0..segs.len() - 1)].clone();
        let mut bytes = std::fs::read(&victim).unwrap();
        let at = rng.random_range(16..bytes.len());
        bytes[at] ^= 0x40;
        std::fs::write(&victim, &bytes).unwrap();
        let ctx = format!("trial {trial}: flipped byte {at} of {}", victim.display());
        let r = check(work.path(), &fast_opts(), false, &mut |_, _| {}).unwrap();
        assert!(!r.is_ok(), "{ctx}: check saw nothing");
        assert!(
            r.problems.iter().all(|p| p.path == victim),
            "{ctx}: {:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.offset <= at as u64 && at as u64 <= p.offset + p.len),
            "{ctx}: {:?}",
            r.problems
        );
        let r = check(work.path(), &fast_opts(), true, &mut |_, _| {}).unwrap();
        assert!(r.repaired);
        let r = check(work.path(), &fast_opts(), false, &mut |_, _| {}).unwrap();
        assert!(
            r.is_ok(),
            "{ctx}: still damaged after repair: {:?}",
            r.problems
        );
        let db = Db::open(work.path(), fast_opts())
            .unwrap_or_else(|e| panic!("{ctx}: repaired directory does not open: {e}"));
        let mut lost = 0;
        for item in db.scan(..) {
            let (k, v) = item.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(
                history.get(&k).is_some_and(|h| h.contains(&v)),
                "{ctx}: {k:?} has a value it never had"
            );
            if m.map.get(&k).map(|x| &x.value) != Some(&v) {
                lost += 1;
            }
        }
        // One damaged record (or batch) affects at most a few keys.
        assert!(lost <= 4, "{ctx}: {lost} keys differ from the model");
    }
}
