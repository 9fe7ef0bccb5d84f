//! Collecting samples, medians, the markdown report and the PNG chart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::engines::Res;

/// Which direction is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Times, sizes, memory.
    Lower,
    /// Throughput.
    Higher,
}

/// One row of the report: a workload and its samples per engine.
#[derive(Debug)]
pub struct Metric {
    /// Row title.
    pub name: String,
    /// Unit of the samples.
    pub unit: &'static str,
    /// Which direction is better.
    pub better: Better,
    /// Samples per engine (one per repetition).
    pub samples: BTreeMap<String, Vec<f64>>,
}

/// All samples of a run, rows in the order they were first recorded.
#[derive(Debug, Default)]
pub struct Results {
    /// The rows.
    pub metrics: Vec<Metric>,
    /// Footnotes per engine.
    pub notes: BTreeMap<String, String>,
}

impl Results {
    /// Records one sample.
    pub fn add(&mut self, name: &str, unit: &'static str, better: Better, engine: &str, v: f64) {
        let idx = match self.metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name: name.to_string(),
                    unit,
                    better,
                    samples: BTreeMap::new(),
                });
                self.metrics.len() - 1
            }
        };
        self.metrics[idx]
            .samples
            .entry(engine.to_string())
            .or_default()
            .push(v);
    }

    /// Records a footnote about an engine.
    pub fn note(&mut self, engine: &str, text: &str) {
        self.notes.insert(engine.to_string(), text.to_string());
    }
}

impl Metric {
    /// Median of an engine's samples.
    pub fn median(&self, engine: &str) -> Option<f64> {
        let mut v = self.samples.get(engine)?.clone();
        Some(median(&mut v))
    }

    /// How many times better cask is than `engine` (>1: cask better), from medians.
    pub fn ratio(&self, engine: &str) -> Option<f64> {
        let c = self.median("cask")?;
        let p = self.median(engine)?;
        let r = match self.better {
            Better::Lower => p / c,
            Better::Higher => c / p,
        };
        r.is_finite().then_some(r)
    }
}

/// Median (upper median for even lengths); NaN for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The mount's file system type and device for `path`, from /proc/mounts.
pub fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = path.to_string_lossy();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let mp = f[1];
        let matches = p == mp || p.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if matches && best.as_ref().is_none_or(|(l, _)| mp.len() > *l) {
            best = Some((mp.len(), format!("{} on {} ({})", f[2], mp, f[0])));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, s)| s)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib / 1048576.0),
        );
    format!("- CPU: {cpu}, nproc = {nproc}\n- RAM: {mem}\n- kernel: Linux {kernel}")
}

/// The markdown report.
pub fn markdown(
    r: &Results,
    engines: &[&str],
    command: &str,
    fs: &str,
    elapsed: Duration,
) -> String {
    let peers: Vec<&str> = engines.iter().copied().filter(|e| *e != "cask").collect();
    let mut s = String::new();
    s.push_str("# Embedded benchmarks: cask-engine vs redb, fjall, sled\n\n");
    s.push_str(
        "Generated by `crates/bench` (`cask-bench`), in the shape of redb's published benchmark: \
         24-byte random keys, 150-byte random values. Every engine runs the same suite in turn \
         (fresh directory each time), the rotation is repeated, and each cell is the **median** \
         of the repetitions. Ratios compare medians from the same run.\n\n",
    );
    s.push_str(
        "**Ratio convention:** `peer/cask` = how many times better cask is. For times, sizes and \
         memory it is peer ÷ cask (\"redb/cask 1.8x\" = redb takes 1.8x as long as cask); for \
         throughput it is cask ÷ peer. **> 1x: cask wins; < 1x: the peer wins.**\n\n",
    );
    s.push_str("Durability: cask `SyncPolicy::Always` (background compaction off, `compact()` called explicitly); redb `Durability::Immediate` on every write transaction; fjall `PersistMode::SyncAll` (batch durability, or `persist` after a single insert); sled 0.34.7 `flush()` after each durable operation. Every write workload returns only once the engine reports its data durable. Caveat: on Linux sled 0.34's `flush()` makes its log durable with `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)` (sled-0.34.7/src/pagecache/iobuf.rs), which neither flushes the device's write cache nor commits file metadata, so sled's durable-write numbers are not fsync-equivalent. fjall's compaction is `Keyspace::rotate_memtable_and_wait` + `major_compact` (a `#[doc(hidden)]` method); sled 0.34 has none. Disk sizes are allocated blocks (`st_blocks` x 512) of the whole directory.\n\n");
    s.push_str("## Machine\n\n");
    s.push_str(&machine());
    s.push_str(&format!("\n- data directory file system: {fs}\n"));
    s.push_str("- shared with other engineers' compilers while running: absolute numbers are noisy, ratios less so.\n");
    s.push_str(&format!(
        "- wall time of the run: {:.0} s\n\n",
        elapsed.as_secs_f64()
    ));
    s.push_str("## Command\n\n```sh\n");
    s.push_str(command);
    s.push_str("\n```\n\n## Results\n\n![chart](bench-embedded.png)\n\n");

    s.push_str("| workload | unit |");
    for e in engines {
        s.push_str(&format!(" {e} |"));
    }
    for p in &peers {
        s.push_str(&format!(" {p}/cask |"));
    }
    s.push_str("\n|---|---|");
    for _ in 0..engines.len() + peers.len() {
        s.push_str("---:|");
    }
    s.push('\n');
    for m in &r.metrics {
        if m.unit == "us" || !m.samples.keys().any(|k| engines.contains(&k.as_str())) {
            continue;
        }
        s.push_str(&format!("| {} | {} |", m.name, m.unit));
        for e in engines {
            s.push_str(&format!(" {} |", m.median(e).map_or("-".into(), fmt)));
        }
        for p in &peers {
            s.push_str(&format!(
                " {} |",
                m.ratio(p).map_or("-".into(), |r| format!("{}x", fmt(r)))
            ));
        }
        s.push('\n');
    }
    s.push_str("\n### Group commit: cask vs the disk's physical limit\n\n");
    s.push_str(
        "All engines stay open; for each thread count, slices of every engine and of a raw probe \
         (one thread appending a 200-byte record + `fdatasync` to one file in the same \
         directory: the physical limit of one durable write) alternate, 2 x `--repeat` rounds, \
         in the order raw, cask, peers, raw again, with 200 ms pauses between slices. \
         ops/s: median over slices; p50: over all writes of all slices.\n\n",
    );
    s.push_str("| writer threads | raw fdatasync ops/s (1 thread) | cask ops/s | raw p50 (us) | cask p50 (us) | cask p50 / raw p50 | raw p50 after the peers' slices (us) |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in &r.metrics {
        if let Some(t) = m.name.strip_prefix("durable writes, ") {
            let lat = r
                .metrics
                .iter()
                .find(|l| l.name == format!("p50 durable write latency, {t}"));
            let raw_p = lat.and_then(|l| l.median("raw")).unwrap_or(f64::NAN);
            let cask_p = lat.and_then(|l| l.median("cask")).unwrap_or(f64::NAN);
            let raw2_p = lat
                .and_then(|l| l.median("raw-after-peers"))
                .unwrap_or(f64::NAN);
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {}x | {} |\n",
                t.trim_end_matches(" threads"),
                fmt(m.median("raw").unwrap_or(f64::NAN)),
                fmt(m.median("cask").unwrap_or(f64::NAN)),
                fmt(raw_p),
                fmt(cask_p),
                fmt(cask_p / raw_p),
                fmt(raw2_p)
            ));
        }
    }
    if !r.notes.is_empty() {
        s.push_str("\n### Notes\n\n");
        for (e, n) in &r.notes {
            s.push_str(&format!("- {e}: {n}\n"));
        }
    }
    s.push_str("\n### All samples\n\n<details><summary>per repetition</summary>\n\n```\n");
    for m in &r.metrics {
        for (e, v) in &m.samples {
            let v: Vec<String> = v.iter().map(|x| fmt(*x)).collect();
            s.push_str(&format!(
                "{} [{}] {}: {}\n",
                m.name,
                m.unit,
                e,
                v.join(", ")
            ));
        }
    }
    s.push_str("```\n\n</details>\n");
    s
}

/// A horizontal bar chart of the ratios (log scale), one bar per workload and peer.
pub fn chart(r: &Results, engines: &[&str], out: &Path, font: &Path) -> Res<()> {
    use plotters::prelude::*;

    let bytes: &'static [u8] = Box::leak(std::fs::read(font)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "invalid font")?;

    let peers: Vec<&str> = engines.iter().copied().filter(|e| *e != "cask").collect();
    let mut rows: Vec<(String, usize, f64)> = Vec::new();
    for m in &r.metrics {
        for (pi, p) in peers.iter().enumerate() {
            if let Some(x) = m.ratio(p) {
                rows.push((format!("{}: {p}", m.name), pi, x));
            }
        }
    }
    if rows.is_empty() {
        return Err("nothing to plot".into());
    }
    let n = rows.len();
    let lo = rows.iter().map(|r| r.2).fold(1.0f64, f64::min).min(0.5) / 1.5;
    let hi = rows.iter().map(|r| r.2).fold(1.0f64, f64::max).max(2.0) * 8.0;
    let height = 140 + 22 * n as u32;
    let root = BitMapBackend::new(out, (1200, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "cask-engine vs peers: peer/cask (log scale; > 1 = cask better)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(420)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())?;
    let labels: Vec<String> = rows.iter().rev().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc("peer / cask")
        .x_label_formatter(&|x| format!("{x:.2}x"))
        .label_style(("sans-serif", 13))
        .disable_y_mesh()
        .draw()?;
    for (i, (_, pi, x)) in rows.iter().rev().enumerate() {
        let c = colors[*pi % colors.len()];
        chart.draw_series(std::iter::once(Rectangle::new(
            [
                (1.0, SegmentValue::Exact(i)),
                (*x, SegmentValue::Exact(i + 1)),
            ],
            c.filled(),
        )))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
        BLACK.stroke_width(2),
    )))?;
    for (pi, p) in peers.iter().enumerate() {
        let c = colors[pi % colors.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(lo, SegmentValue::Exact(0)), (lo, SegmentValue::Exact(0))],
                c.filled(),
            )))?
            .label(*p)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
