//! `stats`, `compact` and `check`: looking after a data directory.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use cask_engine::{Options, Stats};
use serde::Serialize;

use super::progress::Progress;
use super::{CheckArgs, CliError, CliResult, StatsArgs, open_existing, open_oneshot};

/// `cask stats [--json]`.
pub fn stats(dir: &Path, args: StatsArgs) -> CliResult {
    let db = open_existing(dir)?;
    let stats = db.stats();
    let now = db.now_ms();
    db.close()?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &StatsJson::new(&stats)).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(render_stats(&stats, now).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON form of [`Stats`] printed by `stats --json`.
#[derive(Serialize)]
struct StatsJson {
    keys: u64,
    total_bytes: u64,
    live_bytes: u64,
    dead_bytes: u64,
    seq: u64,
    sync: String,
    compactions: u64,
    reclaimed_bytes: u64,
    last_compaction_ms: Option<u64>,
    last_compaction: Option<String>,
    writes: u64,
    syncs: u64,
    segments: Vec<SegmentJson>,
}

#[derive(Serialize)]
struct SegmentJson {
    id: u32,
    bytes: u64,
    live_bytes: u64,
    dead_bytes: u64,
    dead_pct: f64,
    active: bool,
    has_hint: bool,
}

impl StatsJson {
    fn new(s: &Stats) -> Self {
        StatsJson {
            keys: s.keys,
            total_bytes: s.total_bytes,
            live_bytes: s.live_bytes,
            dead_bytes: s.dead_bytes,
            seq: s.seq,
            sync: s.sync.to_string(),
            compactions: s.compactions,
            reclaimed_bytes: s.reclaimed_bytes,
            last_compaction_ms: s.last_compaction_ms,
            last_compaction: s.last_compaction_ms.map(rfc3339),
            writes: s.writes,
            syncs: s.syncs,
            segments: s
                .segments
                .iter()
                .map(|g| SegmentJson {
                    id: g.id,
                    bytes: g.bytes,
                    live_bytes: g.live_bytes,
                    dead_bytes: g.dead_bytes,
                    dead_pct: (dead_pct(g.dead_bytes, g.bytes) * 10.0).round() / 10.0,
                    active: g.active,
                    has_hint: g.has_hint,
                })
                .collect(),
        }
    }
}

/// The human-readable form of [`Stats`]; `now` (ms since the epoch) dates the last compaction.
pub fn render_stats(s: &Stats, now: u64) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "keys             {}", s.keys);
    let _ = writeln!(o, "total bytes      {}", size(s.total_bytes));
    let _ = writeln!(o, "live bytes       {}", size(s.live_bytes));
    let _ = writeln!(
        o,
        "dead bytes       {} ({:.1}%)",
        size(s.dead_bytes),
        dead_pct(s.dead_bytes, s.total_bytes)
    );
    let _ = writeln!(o, "sequence         {}", s.seq);
    let _ = writeln!(o, "sync policy      {}", s.sync);
    let _ = writeln!(
        o,
        "compactions      {} (since this process opened the database)",
        s.compactions
    );
    let last = match s.last_compaction_ms {
        Some(ms) => format!("{} ago ({})", ago(now.saturating_sub(ms)), rfc3339(ms)),
        None => "never (since open)".to_string(),
    };
    let _ = writeln!(o, "last compaction  {last}");
    let _ = writeln!(o, "reclaimed        {}", size(s.reclaimed_bytes));
    let _ = writeln!(o, "segments         {}", s.segments.len());
    let _ = writeln!(
        o,
        "  {:>10}  {:>12}  {:>12}  {:>12}  {:>6}  {:>6}  {:>4}",
        "id", "bytes", "live", "dead", "dead%", "active", "hint"
    );
    for g in &s.segments {
        let _ = writeln!(
            o,
            "  {:>10}  {:>12}  {:>12}  {:>12}  {:>5.1}%  {:>6}  {:>4}",
            g.id,
            g.bytes,
            g.live_bytes,
            g.dead_bytes,
            dead_pct(g.dead_bytes, g.bytes),
            if g.active { "yes" } else { "no" },
            if g.has_hint { "yes" } else { "no" },
        );
    }
    o
}

fn dead_pct(dead: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        dead as f64 * 100.0 / total as f64
    }
}

/// A byte count with a binary-unit approximation: `123456 (120.6 KiB)`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{bytes} ({v:.1} {})", UNITS[unit])
}

/// Milliseconds since the epoch as RFC 3339 UTC, to the second.
fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A duration in milliseconds, to the second: `3m 12s`, or `0s`.
fn ago(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// `cask compact`.
pub fn compact(dir: &Path) -> CliResult {
    let db = open_existing(dir)?;
    let before = db.stats();
    let progress = Progress::bytes("compacting");
    let report = db.compact_with_progress(&mut |done, total| progress.update(done, total));
    progress.finish();
    let report = report?;
    let after = db.stats();
    db.close()?;
    if report.segments_in == 0 {
        println!("nothing to compact: no segment holds dead data");
    } else {
        println!(
            "compacted {} segment(s) into {}: {} -> {}, kept {} records, dropped {}",
            report.segments_in,
            report.segments_out,
            size(report.bytes_in),
            size(report.bytes_out),
            report.records_kept,
            report.records_dropped
        );
    }
    println!(
        "database: {} -> {}, reclaimed {}",
        size(before.total_bytes),
        size(after.total_bytes),
        size(report.reclaimed())
    );
    Ok(ExitCode::SUCCESS)
}

/// `cask check [--repair]`: exit status 0 when clean (or repaired), 1 when damaged.
pub fn check(dir: &Path, args: CheckArgs) -> CliResult {
    let opts = Options::default();
    let progress = Progress::bytes(if args.repair { "repairing" } else { "checking" });
    let report = cask_engine::check(dir, &opts, args.repair, &mut |done, total| {
        progress.update(done, total)
    });
    progress.finish();
    let report = report?;
    let mut out = io::stdout().lock();
    for p in &report.problems {
        writeln!(
            out,
            "{}: offset {}: {} ({} bytes)",
            p.path.display(),
            p.offset,
            p.reason,
            p.len
        )?;
    }
    let summary = format!(
        "{} segment(s), {} intact record(s), {}",
        report.segments,
        report.records,
        size(report.bytes)
    );
    if report.is_ok() {
        writeln!(out, "ok: {summary}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let dropped: u64 = report.problems.iter().map(|p| p.len).sum();
    if !args.repair {
        writeln!(out, "{} problem(s) in {summary}", report.problems.len())?;
        out.flush()?;
        eprintln!("cask: the database is damaged; `cask check --repair` keeps every intact record");
        return Ok(ExitCode::FAILURE);
    }
    writeln!(
        out,
        "repaired: dropped {} damaged range(s), {} byte(s); kept {summary}",
        report.problems.len(),
        dropped
    )?;
    out.flush()?;
    // Trust the repair only once a fresh pass finds nothing.
    let again = cask_engine::check(dir, &opts, false, &mut |_, _| {})?;
    if let Some(p) = again.problems.first() {
        return Err(CliError::Message(format!(
            "repair left {} problem(s); the first: {}: offset {}: {}",
            again.problems.len(),
            p.path.display(),
            p.offset,
            p.reason
        )));
    }
    // Records that each verify can still fail to open together (for instance a batch that
    // lost one of its records), so a repair succeeds only if the database opens.
    match open_oneshot(dir).and_then(|db| Ok(db.close()?)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::Message(format!(
            "repair finished but the database still does not open: {e}"
        ))),
    }
}
