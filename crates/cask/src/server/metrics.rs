//! Prometheus metrics of both servers, served as text by the HTTP API's `GET /metrics`.
//!
//! - `cask_commands_total{server,command,result}` and
//!   `cask_command_duration_seconds{server,command}`: every RESP command (by command name)
//!   and every HTTP operation (by operation name, e.g. `kv.get`), with `result` `ok` or
//!   `error` (a RESP error reply; an HTTP status of 400 or more).
//! - `cask_http_responses_total{status}`: HTTP responses by status code.
//! - `cask_connected_clients{server}`: open connections of each server.
//! - From the engine, read at scrape time: `cask_keys`, `cask_disk_bytes`, `cask_live_bytes`,
//!   `cask_dead_bytes`, `cask_segments`, `cask_compactions_total`,
//!   `cask_compaction_reclaimed_bytes_total`, `cask_fsyncs_total`,
//!   `cask_fsync_duration_seconds` (histogram of the write path's fsyncs) and
//!   `cask_engine_writes_total`.
//!
//! The RESP hot path does no label lookup: the per-command counters and histograms are
//! resolved once at start, indexed like the command table.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use cask_engine::{Db, SYNC_LATENCY_BOUNDS_US};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Labels of the per-operation metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// `resp` or `http`.
    pub server: String,
    /// Command or operation name.
    pub command: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of the latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// `resp` or `http`.
    pub server: String,
    /// Command or operation name.
    pub command: String,
}

/// Labels of the HTTP status counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The status code.
    pub status: u16,
}

/// Labels of the client gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `resp` or `http`.
    pub server: String,
}

/// The handles of one command: ok and error counters, latency histogram.
#[derive(Debug, Clone)]
struct CommandHandles {
    ok: Counter,
    error: Counter,
    latency: Histogram,
}

/// Every metric of a running server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    ops: Family<OpLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    statuses: Family<StatusLabels, Counter>,
    resp: Vec<CommandHandles>,
    resp_clients: Gauge<i64, AtomicI64>,
    /// Open HTTP connections (maintained by the HTTP listener).
    pub http_clients: Gauge<i64, AtomicI64>,
}

fn latency_histogram() -> Histogram {
    // 10 µs to ~2.6 s.
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

impl Metrics {
    /// Registers every metric; `commands` are the RESP command names in command-table order.
    pub fn new(db: Db, commands: &[&str]) -> Metrics {
        let mut registry = Registry::default();
        let ops = Family::<OpLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let statuses = Family::<StatusLabels, Counter>::default();
        let clients = Family::<ServerLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "cask_commands",
            "Commands (RESP) and operations (HTTP) executed, by result",
            ops.clone(),
        );
        registry.register(
            "cask_command_duration_seconds",
            "Time to execute a command or HTTP operation (durability wait included for HTTP)",
            latency.clone(),
        );
        registry.register(
            "cask_http_responses",
            "HTTP responses by status code",
            statuses.clone(),
        );
        registry.register(
            "cask_connected_clients",
            "Open client connections by server",
            clients.clone(),
        );
        registry.register_collector(Box::new(EngineCollector { db }));
        // One statement per lookup: a family's guard lives to the end of its statement, and
        // a second lookup in the same statement would deadlock on the family's lock.
        let mut resp = Vec::with_capacity(commands.len());
        for name in commands {
            let ok = ops.get_or_create(&op_labels("resp", name, true)).clone();
            let error = ops.get_or_create(&op_labels("resp", name, false)).clone();
            let latency = latency
                .get_or_create(&LatencyLabels {
                    server: "resp".into(),
                    command: (*name).into(),
                })
                .clone();
            resp.push(CommandHandles { ok, error, latency });
        }
        let resp_clients = clients
            .get_or_create(&ServerLabels {
                server: "resp".into(),
            })
            .clone();
        let http_clients = clients
            .get_or_create(&ServerLabels {
                server: "http".into(),
            })
            .clone();
        Metrics {
            registry,
            ops,
            latency,
            statuses,
            resp,
            resp_clients,
            http_clients,
        }
    }

    /// Records one RESP command by its index in the command table.
    pub fn resp_command(&self, index: usize, ok: bool, took: Duration) {
        if let Some(h) = self.resp.get(index) {
            if ok { &h.ok } else { &h.error }.inc();
            h.latency.observe(took.as_secs_f64());
        }
    }

    /// Records one HTTP operation and its response status.
    pub fn http_op(&self, op: &str, status: u16, took: Duration) {
        let labels = op_labels("http", op, status < 400);
        self.ops.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&LatencyLabels {
                server: "http".into(),
                command: op.into(),
            })
            .observe(took.as_secs_f64());
        let status = StatusLabels { status };
        self.statuses.get_or_create(&status).inc();
    }

    /// The Prometheus text exposition; `resp_clients` is the RESP server's connection count.
    pub fn render(&self, resp_clients: usize) -> String {
        self.resp_clients
            .set(i64::try_from(resp_clients).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

fn op_labels(server: &str, command: &str, ok: bool) -> OpLabels {
    OpLabels {
        server: server.into(),
        command: command.into(),
        result: if ok { "ok" } else { "error" }.into(),
    }
}

/// Reads the engine's statistics at each scrape.
#[derive(Debug)]
struct EngineCollector {
    db: Db,
}

/// The engine's fsync histogram, from its bucket counts.
#[derive(Debug)]
struct FsyncHistogram {
    sum_seconds: f64,
    buckets: Vec<(f64, u64)>,
    count: u64,
}

impl TypedMetric for FsyncHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FsyncHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_seconds,
            self.count,
            &self.buckets,
            None,
        )
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.db.stats();
        let gauges: [(&str, &str, u64); 5] = [
            (
                "cask_keys",
                "Records in the engine's index: every key of every database (and element \
                 records of typed values); expired keys not yet collected included",
                s.keys,
            ),
            (
                "cask_disk_bytes",
                "Bytes of all segment files",
                s.total_bytes,
            ),
            (
                "cask_live_bytes",
                "Bytes of records the index points at",
                s.live_bytes,
            ),
            (
                "cask_dead_bytes",
                "Bytes of overwritten, deleted or expired records awaiting compaction",
                s.dead_bytes,
            ),
            ("cask_segments", "Segment files", s.segments.len() as u64),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 4] = [
            (
                "cask_compactions",
                "Compactions completed since start",
                s.compactions,
            ),
            (
                "cask_compaction_reclaimed_bytes",
                "Bytes reclaimed by compaction since start",
                s.reclaimed_bytes,
            ),
            (
                "cask_fsyncs",
                "fsyncs of the write path since start",
                s.syncs,
            ),
            (
                "cask_engine_writes",
                "Writes acknowledged by the engine since start",
                s.writes,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(s.sync_latency.len());
        for (i, n) in s.sync_latency.iter().enumerate() {
            cumulative += n;
            let bound = SYNC_LATENCY_BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
            buckets.push((bound, cumulative));
        }
        let h = FsyncHistogram {
            sum_seconds: s.sync_nanos as f64 / 1e9,
            count: cumulative,
            buckets,
        };
        h.encode(encoder.encode_descriptor(
            "cask_fsync_duration_seconds",
            "Duration of the write path's fsyncs",
            None,
            MetricType::Histogram,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_reports_commands_engine_and_clients() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), cask_engine::Options::default()).unwrap();
        db.set(b"a", b"1").unwrap();
        let m = Metrics::new(db.clone(), &["get", "set"]);
        m.resp_command(1, true, Duration::from_micros(30));
        m.resp_command(0, false, Duration::from_micros(30));
        m.http_op("kv.get", 404, Duration::from_micros(30));
        m.http_clients.inc();
        let text = m.render(3);
        for want in [
            "cask_commands_total{server=\"resp\",command=\"set\",result=\"ok\"} 1",
            "cask_commands_total{server=\"resp\",command=\"get\",result=\"error\"} 1",
            "cask_commands_total{server=\"http\",command=\"kv.get\",result=\"error\"} 1",
            "cask_http_responses_total{status=\"404\"} 1",
            "cask_connected_clients{server=\"resp\"} 3",
            "cask_connected_clients{server=\"http\"} 1",
            "cask_keys 1",
            "cask_fsync_duration_seconds_bucket{le=\"+Inf\"}",
            "cask_command_duration_seconds_bucket{le=\"0.00004\",server=\"resp\",command=\"set\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
        db.close().unwrap();
    }
}
