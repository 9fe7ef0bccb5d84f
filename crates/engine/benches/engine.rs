#![expect(
    missing_docs,
    reason = "criterion's macros generate undocumented functions"
)]
//! Criterion benchmarks of the engine's basic operations: set (sync never and always),
//! get, scan and open. Run with `cargo bench -p cask-engine --bench engine`.

use std::hint::black_box;
use std::time::Duration;

use cask_engine::{Db, Options, SyncPolicy};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::StdRng};

const VALUE: [u8; 150] = [0x5a; 150];

fn opts(sync: SyncPolicy) -> Options {
    Options {
        sync,
        background_compaction: false,
        ..Options::default()
    }
}

fn key(i: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(b"key:0000");
    k[8..16].copy_from_slice(&i.to_be_bytes());
    k[16..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    k
}

fn filled(n: u64) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts(SyncPolicy::Never)).expect("open");
    for i in 0..n {
        db.set(&key(i), &VALUE).expect("set");
    }
    (dir, db)
}

fn bench_set(c: &mut Criterion) {
    let mut g = c.benchmark_group("set");
    g.throughput(Throughput::Elements(1));
    for (name, sync) in [("never", SyncPolicy::Never), ("always", SyncPolicy::Always)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), opts(sync)).expect("open");
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                db.set(&key(i), &VALUE).expect("set")
            })
        });
    }
    // The physical limit of a durable write on this disk: append 203 bytes (one record of a
    // 24-byte key and 150-byte value) and fdatasync, with nothing else.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("raw"))
        .expect("raw file");
    let record = [0x5au8; 203];
    g.bench_function("raw_append_fdatasync", |b| {
        b.iter(|| {
            use std::io::Write;
            (&file).write_all(&record).expect("write");
            file.sync_data().expect("fdatasync")
        })
    });
    g.finish();
}

fn bench_get(c: &mut Criterion) {
    let n = 100_000;
    let (_dir, db) = filled(n);
    let mut rng = StdRng::seed_from_u64(7);
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    g.bench_function("random_hit", |b| {
        b.iter(|| black_box(db.get(&key(rng.random_range(0..n))).expect("get")))
    });
    g.bench_function("miss", |b| {
        b.iter(|| black_box(db.get(b"absent-key").expect("get")))
    });
    g.finish();
}

fn bench_scan(c: &mut Criterion) {
    let n = 100_000;
    let (_dir, db) = filled(n);
    let mut rng = StdRng::seed_from_u64(7);
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(100));
    g.bench_function("100_from_random_start", |b| {
        b.iter(|| {
            let start = key(rng.random_range(0..n)).to_vec();
            db.scan(start..)
                .take(100)
                .map(|r| r.expect("scan").1.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn bench_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, hints) in [("100k_keys_hints", true), ("100k_keys_scan", false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let o = Options {
                segment_size: 4 << 20,
                ..opts(SyncPolicy::Never)
            };
            let db = Db::open(dir.path(), o).expect("open");
            for i in 0..100_000 {
                db.set(&key(i), &VALUE).expect("set");
            }
            db.write_pending_hints().expect("hints");
            db.close().expect("close");
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    let o = Options {
                        use_hint_files: hints,
                        segment_size: 4 << 20,
                        ..opts(SyncPolicy::Never)
                    };
                    let db = Db::open(dir.path(), o).expect("open");
                    assert_eq!(db.stats().keys, 100_000);
                    db.close().expect("close");
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_set, bench_get, bench_scan, bench_open);
criterion_main!(benches);
