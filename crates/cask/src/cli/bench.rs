//! `cask bench`: a quick benchmark against a data directory or, with `--remote`, a running
//! server over RESP. Reports operations per second and latency percentiles per operation,
//! as a table or (`--json`) for scripts.
//!
//! Keys are `bench:` followed by a 12-digit number drawn uniformly from `--keyspace`; values
//! are `--value-size` bytes. The benchmark's keys are deleted afterwards unless `--keep`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cask_engine::{Batch, Db, Options, SyncPolicy};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::progress::Progress;
use super::{CliError, CliResult};

/// An operation `cask bench` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchOp {
    /// Set a random key.
    Set,
    /// Get a random key.
    Get,
    /// Read `--scan-len` entries from a random key on (remote: `SCAN ... COUNT`).
    Scan,
}

/// Arguments of `cask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark the server at HOST:PORT over RESP instead of the data directory.
    #[arg(long, value_name = "HOST:PORT")]
    pub remote: Option<String>,
    /// Password for `--remote` (sent with AUTH).
    #[arg(long)]
    pub password: Option<String>,
    /// Operations to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "set,get,scan")]
    pub ops: Vec<BenchOp>,
    /// Requests per operation.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub requests: u64,
    /// Concurrent clients (one thread, and for --remote one connection, each).
    #[arg(short = 'c', long, default_value_t = 4)]
    pub clients: usize,
    /// Value size in bytes.
    #[arg(short = 'd', long, default_value_t = 100)]
    pub value_size: usize,
    /// Number of distinct keys.
    #[arg(short = 'r', long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// Entries read per scan.
    #[arg(long, default_value_t = 10)]
    pub scan_len: usize,
    /// Durability of the local database: always, interval, interval:MS or never.
    #[arg(long, default_value = "never")]
    pub sync: String,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the benchmark's keys instead of deleting them afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// The measurements of one operation.
#[derive(Debug, Serialize)]
pub struct OpResult {
    /// Which operation.
    pub op: BenchOp,
    /// Requests completed.
    pub requests: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Requests per second.
    pub ops_per_sec: f64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 95th percentile latency in microseconds.
    pub p95_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// Worst latency in microseconds.
    pub max_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    mode: &'static str,
    clients: usize,
    value_size: usize,
    keyspace: u64,
    results: Vec<OpResult>,
}

/// Runs `cask bench`.
pub fn run(dir: &Path, args: BenchArgs) -> CliResult {
    if args.clients == 0 || args.requests == 0 || args.keyspace == 0 {
        return Err(CliError::Message(
            "--clients, --requests and --keyspace must be at least 1".into(),
        ));
    }
    let (report, cleanup) = match &args.remote {
        Some(addr) => {
            let results = measure(&args, || Remote::connect(addr, args.password.as_deref()))?;
            let cleanup = if args.keep {
                Ok(())
            } else {
                remote_cleanup(addr, &args)
            };
            (
                Report {
                    target: addr.clone(),
                    mode: "remote",
                    ..report_base(&args, results)
                },
                cleanup,
            )
        }
        None => {
            let sync: SyncPolicy = args.sync.parse().map_err(CliError::Message)?;
            let db = Db::open(
                dir,
                Options {
                    sync,
                    background_compaction: false,
                    ..Options::default()
                },
            )?;
            let results = measure(&args, || {
                Ok(Local {
                    db: db.clone(),
                    scan_len: args.scan_len,
                })
            })?;
            let cleanup = if args.keep {
                Ok(())
            } else {
                local_cleanup(&db)
            };
            db.close()?;
            (
                Report {
                    target: dir.display().to_string(),
                    mode: "local",
                    ..report_base(&args, results)
                },
                cleanup,
            )
        }
    };
    cleanup?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(|e| CliError::Message(e.to_string()))?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_base(args: &BenchArgs, results: Vec<OpResult>) -> Report {
    Report {
        target: String::new(),
        mode: "",
        clients: args.clients,
        value_size: args.value_size,
        keyspace: args.keyspace,
        results,
    }
}

fn print_table(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(
        out,
        "{} benchmark of {}: {} clients, {}-byte values, {} keys",
        r.mode, r.target, r.clients, r.value_size, r.keyspace
    )?;
    writeln!(
        out,
        "{:<6} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "op", "requests", "ops/s", "p50", "p95", "p99", "max"
    )?;
    for x in &r.results {
        let op = format!("{:?}", x.op).to_lowercase();
        writeln!(
            out,
            "{op:<6} {:>10} {:>12.0} {:>10} {:>10} {:>10} {:>10}",
            x.requests,
            x.ops_per_sec,
            micros(x.p50_us),
            micros(x.p95_us),
            micros(x.p99_us),
            micros(x.max_us)
        )?;
    }
    Ok(())
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.1}µs")
    }
}

/// A client able to run the benchmark's operations.
trait Client: Send {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), CliError>;
    fn get(&mut self, key: &[u8]) -> Result<(), CliError>;
    fn scan(&mut self, from: &[u8]) -> Result<(), CliError>;
    /// Entries per scan, for clients that must say it in each request.
    fn set_scan_len(&mut self, _len: usize) {}
}

struct Local {
    db: Db,
    scan_len: usize,
}

impl Client for Local {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), CliError> {
        self.db.set(key, value)?;
        Ok(())
    }
    fn get(&mut self, key: &[u8]) -> Result<(), CliError> {
        self.db.get(key)?;
        Ok(())
    }
    fn scan(&mut self, from: &[u8]) -> Result<(), CliError> {
        for item in self.db.scan(from.to_vec()..).take(self.scan_len) {
            item?;
        }
        Ok(())
    }
}

/// A minimal blocking RESP2 client: enough to send commands and check their replies.
struct Remote {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    scan_len: String,
}

impl Remote {
    fn connect(addr: &str, password: Option<&str>) -> Result<Remote, CliError> {
        let stream = TcpStream::connect(addr)
            .map_err(|e| CliError::Message(format!("cannot connect to {addr}: {e}")))?;
        stream.set_nodelay(true)?;
        let mut r = Remote {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            scan_len: "10".into(),
        };
        if let Some(pw) = password {
            r.call(&[b"AUTH", pw.as_bytes()])?;
        }
        Ok(r)
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<(), CliError> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&buf)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<(), CliError> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.len() < 3 || !line.ends_with(b"\r\n") {
            return Err(CliError::Message(
                "server closed the connection or sent a malformed reply".into(),
            ));
        }
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let count = || {
            body.parse::<i64>()
                .map_err(|_| CliError::Message(format!("malformed reply: {body:?}")))
        };
        match line[0] {
            b'+' | b':' => Ok(()),
            b'-' => Err(CliError::Message(format!("server replied: {body}"))),
            b'$' => {
                let n = count()?;
                if n >= 0 {
                    let mut skip = vec![0u8; n as usize + 2];
                    io::Read::read_exact(&mut self.reader, &mut skip)?;
                }
                Ok(())
            }
            b'*' => {
                for _ in 0..count()?.max(0) {
                    self.read_reply()?;
                }
                Ok(())
            }
            _ => Err(CliError::Message(format!(
                "unexpected reply type {:?}",
                line[0] as char
            ))),
        }
    }
}

impl Client for Remote {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), CliError> {
        self.call(&[b"SET", key, value])
    }
    fn get(&mut self, key: &[u8]) -> Result<(), CliError> {
        self.call(&[b"GET", key])
    }
    fn set_scan_len(&mut self, len: usize) {
        self.scan_len = len.to_string();
    }
    fn scan(&mut self, _from: &[u8]) -> Result<(), CliError> {
        let count = self.scan_len.clone();
        self.call(&[
            b"SCAN",
            b"0",
            b"MATCH",
            b"bench:*",
            b"COUNT",
            count.as_bytes(),
        ])
    }
}

/// A small, fast, seedable generator (splitmix64) for key choice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn bench_key(i: u64) -> Vec<u8> {
    format!("bench:{i:012}").into_bytes()
}

fn measure<C: Client>(
    args: &BenchArgs,
    connect: impl Fn() -> Result<C, CliError> + Sync,
) -> Result<Vec<OpResult>, CliError> {
    let value = vec![b'x'; args.value_size];
    let mut results = Vec::new();
    for &op in &args.ops {
        let mut clients = (0..args.clients)
            .map(|_| connect())
            .collect::<Result<Vec<C>, _>>()?;
        for c in &mut clients {
            c.set_scan_len(args.scan_len);
        }
        let done = AtomicU64::new(0);
        let progress = Progress::count(&format!("{op:?}").to_lowercase(), args.requests);
        let start = Instant::now();
        let per_client = args.requests / args.clients as u64;
        let extra = args.requests % args.clients as u64;
        let outcome: Result<Vec<Vec<u32>>, CliError> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(t, mut client)| {
                    let (done, value) = (&done, &value);
                    let n = per_client + u64::from((t as u64) < extra);
                    s.spawn(move || -> Result<Vec<u32>, CliError> {
                        let mut rng = Rng(0x5eed ^ ((t as u64) << 32) ^ op as u64);
                        let mut lat = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            let key = bench_key(rng.next() % args.keyspace);
                            let t0 = Instant::now();
                            match op {
                                BenchOp::Set => client.set(&key, value)?,
                                BenchOp::Get => client.get(&key)?,
                                BenchOp::Scan => client.scan(&key)?,
                            }
                            lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(lat)
                    })
                })
                .collect();
            while handles.iter().any(|h| !h.is_finished()) {
                progress.set(done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(50));
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| CliError::Message("a benchmark thread panicked".into()))?
                })
                .collect()
        });
        let seconds = start.elapsed().as_secs_f64();
        progress.finish();
        let mut lat: Vec<u32> = outcome?.into_iter().flatten().collect();
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        results.push(OpResult {
            op,
            requests: lat.len() as u64,
            seconds,
            ops_per_sec: lat.len() as f64 / seconds,
            p50_us: pct(0.50),
            p95_us: pct(0.95),
            p99_us: pct(0.99),
            max_us: pct(1.0),
        });
    }
    Ok(results)
}

fn local_cleanup(db: &Db) -> Result<(), CliError> {
    let keys: Vec<Vec<u8>> = db
        .scan_prefix(b"bench:")
        .into_keys()
        .collect::<Result<_, _>>()?;
    for chunk in keys.chunks(10_000) {
        let mut batch = Batch::new();
        for k in chunk {
            batch.delete(k.clone());
        }
        db.write(&batch)?;
    }
    Ok(())
}

fn remote_cleanup(addr: &str, args: &BenchArgs) -> Result<(), CliError> {
    let mut r = Remote::connect(addr, args.password.as_deref())?;
    let keys: Vec<Vec<u8>> = (0..args.keyspace).map(bench_key).collect();
    for chunk in keys.chunks(1000) {
        let mut cmd: Vec<&[u8]> = vec![b"DEL"];
        cmd.extend(chunk.iter().map(|k| k.as_slice()));
        r.call(&cmd)?;
    }
    Ok(())
}
