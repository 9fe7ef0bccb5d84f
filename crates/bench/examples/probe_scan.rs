//! Scratch probe (not committed): where does a 10-item cask scan spend its time?
use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir_in("target").unwrap();
    let db = cask_engine::Db::open(
        dir.path(),
        cask_engine::Options {
            background_compaction: false,
            ..Default::default()
        },
    )
    .unwrap();
    let n = 100_000u64;
    let mut keys = Vec::new();
    let mut b = cask_engine::Batch::new();
    for i in 0..n {
        let k = format!("{:024}", (i * 2654435761) % 1_000_000_007).into_bytes();
        b.put(k.clone(), vec![7u8; 150]);
        keys.push(k);
    }
    db.write(&b).unwrap();
    db.sync().unwrap();
    let iters = 20_000;
    for take in [1usize, 10, 100] {
        let t = Instant::now();
        for i in 0..iters {
            let k = &keys[(i * 7919) % keys.len()];
            let c = db.scan(k.clone()..).take(take).count();
            assert!(c > 0);
        }
        println!(
            "scan take {take}: {:.2} us",
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        );
    }
    let t = Instant::now();
    for i in 0..iters {
        let k = &keys[(i * 7919) % keys.len()];
        for _ in db.keys(k.clone()..).take(10) {}
    }
    println!(
        "keys take 10 (no values): {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / iters as f64
    );
    let t = Instant::now();
    for i in 0..iters * 10 {
        let k = &keys[(i * 7919) % keys.len()];
        db.get(k).unwrap();
    }
    println!(
        "get: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / (iters * 10) as f64
    );
}
