//! Measures open time with and without hint files, and the keydir's resident memory per key.
//!
//! `cargo run --release -p cask-engine --example open_time -- N [DIR]`
//! loads N keys (24-byte keys, 150-byte values) into DIR (a temp dir by default) unless it
//! already holds them, then opens it with hint files and with a full scan, printing the
//! time of each and the growth of resident memory during the open.

use std::time::Instant;

use cask_engine::{Db, Options, SyncPolicy};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// User + system CPU time of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after_comm
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat (utime, stime) are at indexes 11 and 12 after the comm field.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn key(i: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    k[8..16].copy_from_slice(&i.to_be_bytes());
    k[16..].copy_from_slice(b"cask-key");
    k
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--open") {
        let mode = std::env::args().nth(2).unwrap_or_default();
        let dir = std::env::args().nth(3).unwrap_or_default();
        let n: u64 = std::env::args().nth(4).unwrap_or_default().parse()?;
        return open_once(&mode, std::path::Path::new(&dir), n);
    }
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let tmp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let opts = || Options {
        sync: SyncPolicy::Never,
        background_compaction: false,
        ..Options::default()
    };
    {
        let db = Db::open(&dir, opts())?;
        if db.stats().keys != n {
            let t = Instant::now();
            let value = [0x42u8; 150];
            for i in 0..n {
                db.set(&key(i), &value)?;
            }
            db.close()?;
            println!("loaded {n} keys in {:.2?}", t.elapsed());
        }
    }
    {
        // Seal the active segment and write every hint file.
        let db = Db::open(&dir, opts())?;
        db.write_pending_hints()?;
        db.close()?;
    }
    // Each open runs in a fresh child process so that its resident memory is its own.
    let exe = std::env::current_exe()?;
    for mode in ["hints", "scan"] {
        let out = std::process::Command::new(&exe)
            .arg("--open")
            .arg(mode)
            .arg(&dir)
            .arg(n.to_string())
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
    }
    Ok(())
}

fn open_once(mode: &str, dir: &std::path::Path, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let opts = Options {
        sync: SyncPolicy::Never,
        background_compaction: false,
        use_hint_files: mode == "hints",
        ..Options::default()
    };
    let (rss0, cpu0) = (rss_bytes(), cpu_seconds());
    let t = Instant::now();
    let db = Db::open(dir, opts)?;
    let took = t.elapsed();
    let (rss1, cpu1) = (rss_bytes(), cpu_seconds());
    let keys = db.stats().keys;
    if keys != n {
        return Err(format!("expected {n} keys, found {keys}").into());
    }
    let grew = rss1.saturating_sub(rss0);
    println!(
        "open ({mode}): {:.2} s wall, {:.2} s CPU, {keys} keys; RSS +{:.1} MiB = {:.1} bytes/key (24-byte keys)",
        took.as_secs_f64(),
        cpu1 - cpu0,
        grew as f64 / (1 << 20) as f64,
        grew as f64 / keys as f64
    );
    db.close()?;
    Ok(())
}
