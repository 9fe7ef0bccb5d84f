//! Per-command statistics for `INFO commandstats`, reset by `CONFIG RESETSTAT` (the
//! Prometheus counters in `metrics.rs` only ever grow, so they cannot serve both).
//!
//! As in Redis: `calls` and `usec` count executions (a command queued by MULTI counts when
//! EXEC runs it; a blocking command counts once, when it is served, times out or is
//! unblocked), `failed_calls` those that replied with an error, and `rejected_calls` those
//! refused before running (wrong number of arguments, `NOAUTH`, not allowed in this
//! context). Unknown commands have no entry.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
struct Stat {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// The table, indexed like the command table.
#[derive(Debug)]
pub struct CommandStats {
    stats: Vec<Stat>,
}

impl CommandStats {
    /// A table for `n` commands.
    pub fn new(n: usize) -> CommandStats {
        CommandStats {
            stats: (0..n).map(|_| Stat::default()).collect(),
        }
    }

    /// One execution of command `index` that took `took` and replied with an error if
    /// `failed`.
    pub fn call(&self, index: usize, took: Duration, failed: bool) {
        if let Some(s) = self.stats.get(index) {
            s.calls.fetch_add(1, Ordering::Relaxed);
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            s.usec.fetch_add(us, Ordering::Relaxed);
            if failed {
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Command `index` was refused before it ran.
    pub fn reject(&self, index: usize) {
        if let Some(s) = self.stats.get(index) {
            s.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Zeroes every counter (CONFIG RESETSTAT).
    pub fn reset(&self) {
        for s in &self.stats {
            for c in [&s.calls, &s.usec, &s.rejected, &s.failed] {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The body of INFO's `commandstats` section: one line per command used since the last
    /// reset, `names` giving the command names in table order.
    pub fn render(&self, names: impl IntoIterator<Item = &'static str>) -> String {
        let mut out = String::new();
        for (s, name) in self.stats.iter().zip(names) {
            let calls = s.calls.load(Ordering::Relaxed);
            let rejected = s.rejected.load(Ordering::Relaxed);
            let failed = s.failed.load(Ordering::Relaxed);
            if calls == 0 && rejected == 0 && failed == 0 {
                continue;
            }
            let usec = s.usec.load(Ordering::Relaxed);
            let per_call = if calls == 0 {
                0.0
            } else {
                usec as f64 / calls as f64
            };
            let _ = write!(
                out,
                "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                 rejected_calls={rejected},failed_calls={failed}\r\n"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_failures_and_rejections_and_resets() {
        let s = CommandStats::new(3);
        s.call(1, Duration::from_micros(10), false);
        s.call(1, Duration::from_micros(20), true);
        s.reject(2);
        s.call(7, Duration::from_micros(1), false); // out of range: ignored
        let text = s.render(["get", "set", "lpush"]);
        assert_eq!(
            text,
            "cmdstat_set:calls=2,usec=30,usec_per_call=15.00,rejected_calls=0,failed_calls=1\r\n\
             cmdstat_lpush:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n"
        );
        s.reset();
        assert_eq!(s.render(["get", "set", "lpush"]), "");
    }
}
