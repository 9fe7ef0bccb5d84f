//! `cask-bench`: cask-engine side by side with redb, fjall and sled, in the shape of
//! redb's published benchmark (24-byte keys, 150-byte values).
//!
//! Every engine runs the same suite in turn, the whole rotation is repeated `--repeat`
//! times, and the report gives medians and ratios to cask, so that noise from a shared
//! machine hits every engine alike. See `docs/BENCHMARKS-embedded.md` for a run.
//!
//! ```sh
//! cargo run --release -p cask-bench -- --n 100000 --engines cask,redb,fjall,sled --repeat 3
//! ```
//!
//! RocksDB is a fifth engine behind the off-by-default `rocksdb` feature (system
//! `librocksdb-dev` + `libclang-dev`, `ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu`).

mod engines;
mod report;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use engines::{Kind, Kv, Res};
use report::{Better, Results};

const KEY_LEN: usize = 24;
const VALUE_LEN: usize = 150;

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(name = "cask-bench", about = "cask-engine vs redb, fjall and sled")]
struct Cli {
    /// Keys in the bulk load (the size of the database the other workloads run on).
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// Engines to run, comma separated (cask is the reference for ratios).
    #[arg(long, default_value = "cask,redb,fjall,sled")]
    engines: String,
    /// Repetitions of the whole rotation; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Individual durable writes (each synced before the next).
    #[arg(long, default_value_t = 300)]
    writes: usize,
    /// Number of durable batches in the batch-write workload.
    #[arg(long, default_value_t = 50)]
    batches: usize,
    /// Pairs per batch in the batch-write workload.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Random point reads (split over the threads in the multi-threaded case).
    #[arg(long, default_value_t = 100_000)]
    reads: usize,
    /// Random range reads.
    #[arg(long, default_value_t = 10_000)]
    range_reads: usize,
    /// Items per range read.
    #[arg(long, default_value_t = 10)]
    range_len: usize,
    /// Writer threads for the group-commit workload, comma separated.
    #[arg(long, default_value = "1,2,4,8")]
    gc_threads: String,
    /// Duration of each group-commit slice, in milliseconds (2 x --repeat slices per engine).
    #[arg(long, default_value_t = 400)]
    gc_ms: u64,
    /// Where the databases are created (a fresh subdirectory per run, removed after).
    #[arg(long, default_value = "target/bench-data")]
    data_dir: PathBuf,
    /// Where BENCHMARKS-embedded.md and bench-embedded.png are written.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// A TrueType font for the chart's text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
    #[command(subcommand)]
    child: Option<Child>,
}

/// Subcommands used internally: the benchmark re-executes itself to measure a fresh process.
#[derive(Subcommand, Debug, Clone)]
enum Child {
    /// Load keys durably, print "ready", keep writing until killed.
    KillChild {
        /// Engine name.
        #[arg(long)]
        engine: String,
        /// Database directory.
        #[arg(long)]
        dir: PathBuf,
        /// Keys to load before "ready".
        #[arg(long)]
        n: usize,
    },
    /// Load keys, print resident memory in KiB: "rss_before rss_after hwm".
    RssChild {
        /// Engine name.
        #[arg(long)]
        engine: String,
        /// Database directory.
        #[arg(long)]
        dir: PathBuf,
        /// Keys to load.
        #[arg(long)]
        n: usize,
    },
}

/// Deterministic 24-byte key and 150-byte value number `i` of stream `seed`.
fn pairs(seed: u64, n: usize) -> Vec<Kv> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut k = vec![0u8; KEY_LEN];
            let mut v = vec![0u8; VALUE_LEN];
            rng.fill(&mut k[..]);
            rng.fill(&mut v[..]);
            (k, v)
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Bytes allocated on disk under `path` (st_blocks x 512, so preallocated but unused space
/// counts and sparse holes do not).
fn dir_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

fn kind(s: &str) -> Res<Kind> {
    Kind::parse(s).ok_or_else(|| format!("unknown engine {s:?}").into())
}

fn main() -> Res<()> {
    let cli = Cli::parse();
    match &cli.child {
        Some(Child::KillChild { engine, dir, n }) => kill_child(kind(engine)?, dir, *n),
        Some(Child::RssChild { engine, dir, n }) => rss_child(kind(engine)?, dir, *n),
        None => run(cli),
    }
}

fn run(cli: Cli) -> Res<()> {
    let kinds: Vec<Kind> = cli.engines.split(',').map(kind).collect::<Res<Vec<_>>>()?;
    let gc_threads: Vec<usize> = cli
        .gc_threads
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&cli.data_dir)?;
    let data_dir = cli.data_dir.canonicalize()?;
    let started = Instant::now();

    eprintln!("generating {} pairs", cli.n);
    let bulk = pairs(1, cli.n);
    let singles = pairs(2, cli.writes);
    let batch_pairs = pairs(3, cli.batches * cli.batch_size);
    let mut rng = StdRng::seed_from_u64(4);
    let read_idx: Vec<usize> = (0..cli.reads).map(|_| rng.random_range(0..cli.n)).collect();
    let range_idx: Vec<usize> = (0..cli.range_reads)
        .map(|_| rng.random_range(0..cli.n))
        .collect();
    let removed: Vec<Vec<u8>> = bulk[..cli.n / 2].iter().map(|(k, _)| k.clone()).collect();

    let mut res = Results::default();
    for rep in 0..cli.repeat {
        for &k in &kinds {
            eprintln!("[{rep}] {}: suite", k.name());
            let dir = tempfile::tempdir_in(&data_dir)?;
            suite(
                &cli,
                k,
                dir.path(),
                &bulk,
                &singles,
                &batch_pairs,
                &read_idx,
                &range_idx,
                &removed,
                &mut res,
            )?;
            drop(dir);
            eprintln!("[{rep}] {}: open after kill", k.name());
            let dir = tempfile::tempdir_in(&data_dir)?;
            let t = open_after_kill(k, dir.path(), cli.n)?;
            res.add("open after SIGKILL", "ms", Better::Lower, k.name(), t);
            drop(dir);
            eprintln!("[{rep}] {}: rss", k.name());
            let dir = tempfile::tempdir_in(&data_dir)?;
            let (before, after, hwm) = rss(k, dir.path(), cli.n)?;
            res.add(
                "RSS after load (delta)",
                "MiB",
                Better::Lower,
                k.name(),
                (after - before) / 1024.0,
            );
            res.add(
                "peak RSS (VmHWM)",
                "MiB",
                Better::Lower,
                k.name(),
                hwm / 1024.0,
            );
            drop(dir);
        }
    }
    group_commit_phase(&cli, &kinds, &gc_threads, &data_dir, &mut res)?;
    let fs = report::filesystem_of(&data_dir);
    let elapsed = started.elapsed();
    eprintln!("done in {:.0} s", elapsed.as_secs_f64());
    std::fs::create_dir_all(&cli.out)?;
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let md = report::markdown(&res, &names, &cli_summary(&cli), &fs, elapsed);
    let md_path = cli.out.join("BENCHMARKS-embedded.md");
    std::fs::write(&md_path, &md)?;
    println!("{md}");
    let png = cli.out.join("bench-embedded.png");
    match report::chart(&res, &names, &png, &cli.font) {
        Ok(()) => eprintln!("wrote {} and {}", md_path.display(), png.display()),
        Err(e) => eprintln!("wrote {}; no chart: {e}", md_path.display()),
    }
    Ok(())
}

fn cli_summary(cli: &Cli) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut s = format!("cargo run --release -p cask-bench -- {}", args.join(" "));
    s = s.trim_end().to_string();
    s.push_str(&format!(
        "\n# effective: --n {} --engines {} --repeat {} --writes {} --batches {} --batch-size {} \
         --reads {} --range-reads {} --range-len {} --gc-threads {} --gc-ms {}",
        cli.n,
        cli.engines,
        cli.repeat,
        cli.writes,
        cli.batches,
        cli.batch_size,
        cli.reads,
        cli.range_reads,
        cli.range_len,
        cli.gc_threads,
        cli.gc_ms
    ));
    s
}

#[allow(clippy::too_many_arguments)]
fn suite(
    cli: &Cli,
    k: Kind,
    dir: &Path,
    bulk: &[Kv],
    singles: &[Kv],
    batch_pairs: &[Kv],
    read_idx: &[usize],
    range_idx: &[usize],
    removed: &[Vec<u8>],
    res: &mut Results,
) -> Res<()> {
    let name = k.name();
    let mut db = engines::open(k, dir)?;

    let t = Instant::now();
    db.bulk_load(bulk)?;
    res.add(
        &format!("bulk load ({} keys, 1 batch)", bulk.len()),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    let t = Instant::now();
    for (key, v) in singles {
        db.put_durable(key, v)?;
    }
    res.add(
        &format!("individual durable writes ({})", singles.len()),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    let t = Instant::now();
    for chunk in batch_pairs.chunks(cli.batch_size.max(1)) {
        db.batch_durable(chunk)?;
    }
    res.add(
        &format!("batch writes ({} x {})", cli.batches, cli.batch_size),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    let t = Instant::now();
    {
        let r = db.reader()?;
        let mut found = 0usize;
        for &i in read_idx {
            found += usize::from(r.get(&bulk[i].0)? > 0);
        }
        assert_eq!(found, read_idx.len(), "{name}: missing keys");
    }
    res.add(
        &format!("random reads ({}, 1 thread)", read_idx.len()),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    let t = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let db = &db;
        let handles: Vec<_> = read_idx
            .chunks(read_idx.len().div_ceil(2).max(1))
            .map(|part| {
                s.spawn(move || -> Res<usize> {
                    let r = db.reader()?;
                    let mut n = 0;
                    for &i in part {
                        n += r.get(&bulk[i].0)?;
                    }
                    Ok(n)
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "reader panicked")??;
        }
        Ok(())
    })?;
    res.add(
        &format!("random reads ({}, 2 threads)", read_idx.len()),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    let t = Instant::now();
    {
        let r = db.reader()?;
        for &i in range_idx {
            r.range(&bulk[i].0, cli.range_len)?;
        }
    }
    res.add(
        &format!(
            "random range reads ({} x {})",
            range_idx.len(),
            cli.range_len
        ),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    let t = Instant::now();
    db.remove_durable(removed)?;
    res.add(
        &format!("removals ({}, 1 batch)", removed.len()),
        "ms",
        Better::Lower,
        name,
        ms(t.elapsed()),
    );

    res.add(
        "disk size before compaction",
        "MiB",
        Better::Lower,
        name,
        dir_size(dir) as f64 / 1048576.0,
    );
    let t = Instant::now();
    let compacted = db.compact()?;
    let compact_ms = ms(t.elapsed());
    let after = dir_size(dir) as f64 / 1048576.0;
    if compacted {
        res.add("compaction", "ms", Better::Lower, name, compact_ms);
        res.add(
            "disk size after compaction",
            "MiB",
            Better::Lower,
            name,
            after,
        );
    } else {
        res.note(
            name,
            "has no compaction API: its 'after compaction' size is the size without one",
        );
        res.add(
            "disk size after compaction",
            "MiB",
            Better::Lower,
            name,
            after,
        );
    }
    if let Some(d) = db.describe() {
        res.note(name, &d);
    }
    db.close()?;

    let t = Instant::now();
    let db = engines::open(k, dir)?;
    let open_ms = ms(t.elapsed());
    // Sanity: a surviving key is there.
    assert!(
        db.reader()?.get(&bulk[bulk.len() - 1].0)? > 0,
        "{name}: key lost on reopen"
    );
    res.add("open after clean close", "ms", Better::Lower, name, open_ms);
    db.close()?;
    Ok(())
}

/// The group-commit workload. All engines stay open; for each thread count, short slices
/// of each engine and of the raw `write + fdatasync` probe alternate, `2 x --repeat` rounds,
/// so that the disk's changing fsync latency (it is shared) hits every engine alike.
fn group_commit_phase(
    cli: &Cli,
    kinds: &[Kind],
    gc_threads: &[usize],
    data_dir: &Path,
    res: &mut Results,
) -> Res<()> {
    let mut dirs = Vec::new();
    let mut dbs = Vec::new();
    for &k in kinds {
        let dir = tempfile::tempdir_in(data_dir)?;
        dbs.push((k, engines::open(k, dir.path())?));
        dirs.push(dir);
    }
    let raw_dir = tempfile::tempdir_in(data_dir)?;
    let slice = Duration::from_millis(cli.gc_ms);
    for &t in gc_threads {
        let mut cask_lat = Vec::new();
        let mut raw_lat = Vec::new();
        let mut raw2_lat = Vec::new();
        let settle = Duration::from_millis(200);
        for round in 0..cli.repeat * 2 {
            eprintln!("group commit x{t}, round {round}");
            // Raw probe first, right before cask, and again after the peers: the peers'
            // background threads (flushers, compactors) share the file system's journal.
            let (ops, lat) = raw_fdatasync(raw_dir.path(), slice)?;
            res.add(
                &format!("durable writes, {t} threads"),
                "ops/s",
                Better::Higher,
                "raw",
                ops,
            );
            raw_lat.extend(lat);
            for (k, db) in &dbs {
                std::thread::sleep(settle);
                let (ops, lat) = group_commit(db.as_ref(), t, slice)?;
                res.add(
                    &format!("durable writes, {t} threads"),
                    "ops/s",
                    Better::Higher,
                    k.name(),
                    ops,
                );
                if *k == Kind::Cask {
                    cask_lat.extend(lat);
                }
            }
            std::thread::sleep(settle);
            let (_, lat) = raw_fdatasync(raw_dir.path(), slice)?;
            raw2_lat.extend(lat);
            std::thread::sleep(settle);
        }
        let name = format!("p50 durable write latency, {t} threads");
        res.add(
            &name,
            "us",
            Better::Lower,
            "cask",
            report::median(&mut cask_lat),
        );
        res.add(
            &name,
            "us",
            Better::Lower,
            "raw",
            report::median(&mut raw_lat),
        );
        res.add(
            &name,
            "us",
            Better::Lower,
            "raw-after-peers",
            report::median(&mut raw2_lat),
        );
    }
    for (_, db) in dbs {
        db.close()?;
    }
    Ok(())
}

/// One thread appending a 200-byte record + `fdatasync` to one file for `dur`: the physical
/// limit of a durable write on this disk. Returns (ops/s, latencies in us).
fn raw_fdatasync(dir: &Path, dur: Duration) -> Res<(f64, Vec<f64>)> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buf = [0x5au8; 200];
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < dur {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((lat.len() as f64 / t0.elapsed().as_secs_f64(), lat))
}

/// `threads` writers doing durable single writes for `dur`; returns (ops/s, latencies in us).
fn group_commit(db: &dyn engines::Engine, threads: usize, dur: Duration) -> Res<(f64, Vec<f64>)> {
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let lats: Vec<Vec<f64>> = std::thread::scope(|s| -> Res<Vec<Vec<f64>>> {
        let handles: Vec<_> = (0..threads)
            .map(|tid| {
                let stop = &stop;
                s.spawn(move || -> Res<Vec<f64>> {
                    let mut rng = StdRng::seed_from_u64(rand::random::<u64>() ^ tid as u64);
                    let mut lat = Vec::new();
                    let mut k = [0u8; KEY_LEN];
                    let mut v = [0u8; VALUE_LEN];
                    rng.fill(&mut v[..]);
                    while !stop.load(Ordering::Relaxed) {
                        rng.fill(&mut k[..]);
                        let t = Instant::now();
                        db.put_durable(&k, &v)?;
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok(lat)
                })
            })
            .collect();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "writer panicked")?)
            .collect()
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    let all: Vec<f64> = lats.into_iter().flatten().collect();
    Ok((all.len() as f64 / elapsed, all))
}

fn child_cmd(sub: &str, k: Kind, dir: &Path, n: usize) -> Res<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.arg(sub)
        .arg("--engine")
        .arg(k.name())
        .arg("--dir")
        .arg(dir)
        .arg("--n")
        .arg(n.to_string());
    Ok(c)
}

/// Loads `n` keys in a child, SIGKILLs it while it keeps writing, times the open here.
fn open_after_kill(k: Kind, dir: &Path, n: usize) -> Res<f64> {
    let mut child = child_cmd("kill-child", k, dir, n)?
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{}: kill child said {line:?}", k.name()).into());
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill()?;
    child.wait()?;
    let t = Instant::now();
    let db = engines::open(k, dir)?;
    let open_ms = ms(t.elapsed());
    let last = &pairs(1, n)[n - 1].0;
    assert!(
        db.reader()?.get(last)? > 0,
        "{}: acknowledged key lost",
        k.name()
    );
    db.close()?;
    Ok(open_ms)
}

fn kill_child(k: Kind, dir: &Path, n: usize) -> Res<()> {
    let db = engines::open(k, dir)?;
    let all = pairs(1, n);
    for chunk in all.chunks(1000) {
        db.batch_durable(chunk)?;
    }
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    // Keep overwriting until killed, so the kill lands in the middle of writes.
    let mut i = 0usize;
    loop {
        let (key, v) = &all[i % n];
        db.put_durable(key, v)?;
        i += 1;
    }
}

fn status_kib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn rss_child(k: Kind, dir: &Path, n: usize) -> Res<()> {
    let before = status_kib("VmRSS:");
    let db = engines::open(k, dir)?;
    // Generate and load in chunks so the benchmark's own copy of the data stays small.
    let mut rng = StdRng::seed_from_u64(1);
    let mut left = n;
    while left > 0 {
        let m = left.min(10_000);
        let chunk: Vec<Kv> = (0..m)
            .map(|_| {
                let mut kk = vec![0u8; KEY_LEN];
                let mut v = vec![0u8; VALUE_LEN];
                rng.fill(&mut kk[..]);
                rng.fill(&mut v[..]);
                (kk, v)
            })
            .collect();
        db.batch_durable(&chunk)?;
        left -= m;
    }
    let after = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    println!("{before} {after} {hwm}");
    db.close()?;
    Ok(())
}

fn rss(k: Kind, dir: &Path, n: usize) -> Res<(f64, f64, f64)> {
    let out = child_cmd("rss-child", k, dir, n)?.output()?;
    if !out.status.success() {
        return Err(format!(
            "{}: rss child failed: {}",
            k.name(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v.as_slice() {
        [a, b, c] => Ok((*a, *b, *c)),
        _ => Err(format!("{}: rss child said {s:?}", k.name()).into()),
    }
}
