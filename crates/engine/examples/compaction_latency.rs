//! Measures foreground write latency while a compaction runs, against the same writes with
//! no compaction, in one run.
//!
//! `cargo run --release -p cask-engine --example compaction_latency -- [always|interval|never] [KEYS]`
//!
//! Loads KEYS keys (default 200 000) of 1 KiB, overwrites each three times (75% garbage,
//! about 0.8 GB on disk), then times single writes of fresh keys: first with nothing else
//! running, then while `Db::compact()` rewrites everything in another thread.

use std::time::{Duration, Instant};

use cask_engine::{Db, Options, SyncPolicy};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>) {
    lat.sort_unstable();
    println!(
        "{label:<22} writes={:>7} p50={:>9.1?} p99={:>9.1?} p99.9={:>9.1?} max={:>9.1?}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat[lat.len() - 1]
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sync: SyncPolicy = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "interval".into())
        .parse()?;
    let keys: u64 = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let opts = Options {
        sync,
        background_compaction: false,
        segment_size: 64 << 20,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts)?;
    let value = vec![0x61u8; 1024];
    let loader = db.deferring();
    for round in 0..4u8 {
        for i in 0..keys {
            loader.set(format!("key:{i:012}").as_bytes(), &value)?;
        }
        println!("load round {round} done");
    }
    db.sync()?;
    let before = db.stats();
    println!(
        "before: {} segments, {:.0} MiB total, {:.0} MiB live",
        before.segments.len(),
        before.total_bytes as f64 / 1048576.0,
        before.live_bytes as f64 / 1048576.0
    );
    let write = |n: &mut u64| -> Result<Duration, cask_engine::Error> {
        *n += 1;
        let t = Instant::now();
        db.set(format!("new:{n:012}").as_bytes(), &value)?;
        Ok(t.elapsed())
    };
    let mut n = 0u64;
    let mut quiet = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        quiet.push(write(&mut n)?);
    }
    let compactor = {
        let db = db.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = db.compact();
            (r, t.elapsed())
        })
    };
    let mut during = Vec::new();
    while !compactor.is_finished() {
        during.push(write(&mut n)?);
    }
    let (report_c, took) = compactor.join().expect("compaction thread");
    let rc = report_c?;
    println!(
        "compaction: {took:.2?}, {} segments -> {}, reclaimed {:.0} MiB",
        rc.segments_in,
        rc.segments_out,
        rc.reclaimed() as f64 / 1048576.0
    );
    println!("sync policy: {sync}, 1 KiB values, one writer thread");
    report("no compaction", quiet);
    report("during compaction", during);
    db.close()?;
    Ok(())
}
