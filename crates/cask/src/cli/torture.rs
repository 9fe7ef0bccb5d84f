//! `cask torture`: process-crash torture of `cask serve`.
//!
//! Each cycle starts `cask serve` on the data directory (small segments and frequent
//! background compaction, so rotations, hint-file writes and compactions run all the time),
//! lets `--clients` connections write, kills the server with SIGKILL at a random moment,
//! restarts it and verifies the data against an oracle of acknowledged replies:
//! - every acknowledged SET is there with its value (or the value of the one request that
//!   was in flight on that key when the server died: it may or may not have applied);
//! - every acknowledged DEL is still a deletion (unless an in-flight SET re-created it);
//! - every counter equals its acknowledged INCRs, or one more if an INCR was in flight;
//! - no key exists that no client ever wrote, and no value that was never sent ("nothing
//!   from the future"); together with the first point: no holes.
//!
//! SIGKILL kills the process, not the machine: the page cache survives, so every policy
//! (`always`, `interval`, `never`) must keep every acknowledged write here. What a power
//! loss may take under `interval` and `never` is tested at the engine level (see
//! docs/RELIABILITY.md).
//!
//! Clients send one request at a time, so each has at most one request in flight. Each
//! client writes its own keys: `t<c>:u<n>` (unique keys, written once), `t<c>:h<j>`
//! (8 hot keys, overwritten with unique values: garbage for compaction) and `t<c>:ctr`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use clap::Args;

use super::{CliError, CliResult};

/// Arguments of `cask torture`.
#[derive(Debug, Args)]
pub struct TortureArgs {
    /// Kill-and-restart cycles to run.
    #[arg(long, default_value_t = 20)]
    pub cycles: u64,
    /// Concurrent client connections writing during each cycle.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub clients: u32,
    /// Durability policy of the server under test: always, interval, interval:MS, never.
    #[arg(long, default_value = "always")]
    pub sync: String,
    /// Seed of the random choices (kill moments, operations, sizes); default: the clock.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The `cask` binary to torture (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Longest time the clients write before the kill, in ms (the kill comes at a random
    /// moment between 20 ms and this).
    #[arg(long, default_value_t = 400)]
    pub max_run_ms: u64,
    /// Segment size handed to the server (`--max-segment-size`): small means frequent
    /// rotations, hint files and compactions.
    #[arg(long, default_value_t = 4096)]
    pub segment_size: u64,
    /// Background compaction interval handed to the server, in ms.
    #[arg(long, default_value_t = 10)]
    pub compaction_interval_ms: u64,
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// A minimal blocking RESP2 client (the `redis` crate is only a dev-dependency).
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut buf = Vec::new();
        Conn::encode(&mut buf, args);
        self.writer.write_all(&buf)?;
        self.read()
    }

    /// Sends every request at once, then reads every reply.
    fn pipeline(&mut self, reqs: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
        let mut buf = Vec::new();
        for r in reqs {
            let args: Vec<&[u8]> = r.iter().map(Vec::as_slice).collect();
            Conn::encode(&mut buf, &args);
        }
        self.writer.write_all(&buf)?;
        reqs.iter().map(|_| self.read()).collect()
    }

    fn read(&mut self) -> io::Result<Reply> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.len() < 3 || !line.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed or malformed reply",
            ));
        }
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let num = || {
            body.parse::<i64>()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, body.clone()))
        };
        Ok(match line[0] {
            b'+' => Reply::Simple(body),
            b'-' => Reply::Error(body),
            b':' => Reply::Int(num()?),
            b'$' => {
                let n = num()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut v = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut v)?;
                    v.truncate(n as usize);
                    Reply::Bulk(Some(v))
                }
            }
            b'*' => {
                let n = num()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read()?);
                }
                Reply::Array(items)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected reply type {:?}", other as char),
                ));
            }
        })
    }
}

/// xorshift64*: small, seedable, good enough to pick operations and moments.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Once a client has this many live unique keys it deletes instead of creating more, so
/// the data set (and each cycle's verification) stays bounded over 1,000 cycles.
const LIVE_UNIQUE_MAX: usize = 1500;

/// A request whose reply never came: it may or may not have been applied.
#[derive(Debug, Clone)]
enum InFlight {
    Set(String, Vec<u8>),
    Del(String),
    Incr,
}

/// What one client knows for certain.
#[derive(Debug, Default)]
struct Oracle {
    /// Key to its acknowledged value (`None`: acknowledged deletion).
    keys: BTreeMap<String, Option<Vec<u8>>>,
    /// Acknowledged INCRs.
    counter: i64,
    /// Next unique-key number.
    next_unique: u64,
    /// Unique keys written and not deleted (DEL candidates).
    live_unique: Vec<String>,
    in_flight: Option<InFlight>,
    acked_ops: u64,
}

/// One client's writing session; returns when `stop` is set or the server dies.
fn client_session(addr: &str, id: u32, oracle: &mut Oracle, rng: &mut Rng, stop: &AtomicBool) {
    let Ok(mut conn) = Conn::connect(addr) else {
        return;
    };
    let ctr = format!("t{id}:ctr");
    while !stop.load(Ordering::Relaxed) {
        let pick = rng.below(100);
        let op = if pick < 15 {
            InFlight::Incr
        } else if (pick < 22 || oracle.live_unique.len() > LIVE_UNIQUE_MAX)
            && !oracle.live_unique.is_empty()
        {
            let i = rng.below(oracle.live_unique.len() as u64) as usize;
            InFlight::Del(oracle.live_unique.swap_remove(i))
        } else {
            let key = if pick < 60 {
                oracle.next_unique += 1;
                format!("t{id}:u{}", oracle.next_unique)
            } else {
                format!("t{id}:h{}", rng.below(8))
            };
            let len = 16 + rng.below(400) as usize;
            let tag = format!("{key}={}/", rng.next());
            let value: Vec<u8> = tag.bytes().cycle().take(len.max(tag.len())).collect();
            InFlight::Set(key, value)
        };
        oracle.in_flight = Some(op.clone());
        let reply = match &op {
            InFlight::Incr => conn.call(&[b"INCR", ctr.as_bytes()]),
            InFlight::Del(k) => conn.call(&[b"DEL", k.as_bytes()]),
            InFlight::Set(k, v) => conn.call(&[b"SET", k.as_bytes(), v]),
        };
        let Ok(reply) = reply else {
            // The server died with this request in flight.
            return;
        };
        match (&op, reply) {
            (InFlight::Incr, Reply::Int(n)) => {
                oracle.counter += 1;
                if n != oracle.counter {
                    // Recorded for the verifier: a counter that disagrees while running.
                    oracle.counter = i64::MIN;
                    return;
                }
            }
            (InFlight::Del(k), Reply::Int(_)) => {
                oracle.keys.insert(k.clone(), None);
            }
            (InFlight::Set(k, v), Reply::Simple(s)) if s == "OK" => {
                if k.contains(":u") {
                    oracle.live_unique.push(k.clone());
                }
                oracle.keys.insert(k.clone(), Some(v.clone()));
            }
            (_, other) => {
                // An error reply: nothing was acknowledged. Stop this client: the verifier
                // reports it.
                eprintln!("cask torture: client {id}: unexpected reply {other:?} to {op:?}");
                oracle.counter = i64::MIN;
                return;
            }
        }
        oracle.in_flight = None;
        oracle.acked_ops += 1;
    }
}

struct ServerProc {
    child: Child,
    addr: String,
}

fn start_server(args: &TortureArgs, binary: &Path, dir: &Path) -> Result<ServerProc, CliError> {
    let mut child = Command::new(binary)
        .arg("--dir")
        .arg(dir)
        // No HTTP listener: it would take the default port 7380 and fail to start whenever
        // another server on the machine already has it.
        .args([
            "serve",
            "--port",
            "0",
            "--http-port",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .arg("--sync")
        .arg(&args.sync)
        .arg("--max-segment-size")
        .arg(args.segment_size.to_string())
        .arg("--compaction-interval-ms")
        .arg(args.compaction_interval_ms.to_string())
        .env("CASK_LOG", "warn")
        .env_remove("CASK_REQUIREPASS")
        .env_remove("CASK_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Message(format!("cannot start {}: {e}", binary.display())))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("cask: listening on ") {
                let _ = tx.send(Ok(addr.trim().to_owned()));
                sent = true;
            } else if !sent {
                let _ = tx.send(Err(line));
            } else if line.contains("ERROR") || line.contains("panicked") {
                eprintln!("cask torture: server: {line}");
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(addr)) => return Ok(ServerProc { child, addr }),
            Ok(Err(line)) => output.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::Message(format!(
                    "the server did not start: {}",
                    output.join(" | ")
                )));
            }
        }
    }
}

/// Whether a compaction or hint-file write was caught in the act: temporary files exist.
fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .count()
        })
        .unwrap_or(0)
}

/// Checks the restarted server against the oracles; resolves in-flight requests.
fn verify(addr: &str, oracles: &mut [Oracle]) -> Result<u64, String> {
    let mut conn = Conn::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    let mut checked = 0u64;
    let mut allowed: HashMap<String, Vec<Option<Vec<u8>>>> = HashMap::new();
    for (id, o) in oracles.iter_mut().enumerate() {
        if o.counter == i64::MIN {
            return Err(format!(
                "client {id} saw a wrong reply while running (see above)"
            ));
        }
        let ctr = format!("t{id}:ctr");
        let mut keys: Vec<(String, Vec<Option<Vec<u8>>>)> = o
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), vec![v.clone()]))
            .collect();
        match &o.in_flight {
            Some(InFlight::Set(k, v)) => match keys.iter_mut().find(|(x, _)| x == k) {
                Some((_, opts)) => opts.push(Some(v.clone())),
                None => keys.push((k.clone(), vec![None, Some(v.clone())])),
            },
            Some(InFlight::Del(k)) => {
                if let Some((_, opts)) = keys.iter_mut().find(|(x, _)| x == k) {
                    opts.push(None);
                }
            }
            _ => {}
        }
        for chunk in keys.chunks(500) {
            let reqs: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|(k, _)| vec![b"GET".to_vec(), k.as_bytes().to_vec()])
                .collect();
            let replies = conn.pipeline(&reqs).map_err(|e| format!("GET: {e}"))?;
            for ((k, opts), reply) in chunk.iter().zip(replies) {
                let got = match reply {
                    Reply::Bulk(v) => v,
                    other => return Err(format!("GET {k}: unexpected reply {other:?}")),
                };
                if !opts.contains(&got) {
                    return Err(format!(
                        "{k}: found {:?}, acknowledged {:?}",
                        got.as_deref().map(String::from_utf8_lossy),
                        opts[0].as_deref().map(String::from_utf8_lossy)
                    ));
                }
                checked += 1;
                // Resolve the in-flight request: what is there now is the truth.
                o.keys.insert(k.clone(), got.clone());
                if got.is_some() && k.contains(":u") && !o.live_unique.contains(k) {
                    o.live_unique.push(k.clone());
                }
            }
        }
        for (k, opts) in keys {
            allowed.insert(k, opts);
        }
        // Acknowledged deletions just verified absent leave the oracle: should one come
        // back after a later crash, the KEYS check below finds a key the oracle lacks.
        o.keys.retain(|_, v| v.is_some());
        let got = match conn.call(&[b"GET", ctr.as_bytes()]) {
            Ok(Reply::Bulk(Some(v))) => String::from_utf8_lossy(&v)
                .parse::<i64>()
                .map_err(|_| format!("{ctr}: not a number"))?,
            Ok(Reply::Bulk(None)) => 0,
            other => return Err(format!("GET {ctr}: {other:?}")),
        };
        let in_flight_incr = matches!(o.in_flight, Some(InFlight::Incr));
        if got != o.counter && !(in_flight_incr && got == o.counter + 1) {
            return Err(format!(
                "{ctr} = {got}, acknowledged increments {}{}",
                o.counter,
                if in_flight_incr {
                    " (+1 in flight)"
                } else {
                    ""
                }
            ));
        }
        o.counter = got;
        o.in_flight = None;
        checked += 1;
    }
    // Nothing from the future: every key was written by some client.
    let all = match conn.call(&[b"KEYS", b"*"]) {
        Ok(Reply::Array(items)) => items,
        other => return Err(format!("KEYS: {other:?}")),
    };
    for item in all {
        let Reply::Bulk(Some(k)) = item else {
            return Err(format!("KEYS: unexpected item {item:?}"));
        };
        let k = String::from_utf8_lossy(&k).into_owned();
        let is_ctr = k.ends_with(":ctr")
            && k.strip_prefix('t')
                .and_then(|r| r.strip_suffix(":ctr"))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n < oracles.len());
        if !is_ctr && !allowed.contains_key(&k) {
            return Err(format!(
                "{k} exists but no client wrote it, or its deletion was acknowledged"
            ));
        }
    }
    Ok(checked)
}

/// Runs `cask torture` on `dir` (which must be new or empty). Prints a summary on stdout.
pub fn run(dir: &Path, args: &TortureArgs) -> CliResult {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    if args.max_run_ms < 20 {
        return Err(CliError::Message("--max-run-ms must be at least 20".into()));
    }
    if std::fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some()) {
        return Err(CliError::Message(format!(
            "{} is not empty: cask torture needs a new or empty directory (it kills the \
             server over and over and checks every key in it)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    println!(
        "cask torture: {} cycles, {} clients, --sync {}, seed {seed}, dir {}",
        args.cycles,
        args.clients,
        args.sync,
        dir.display()
    );
    let mut rng = Rng::new(seed);
    let mut oracles: Vec<Oracle> = (0..args.clients).map(|_| Oracle::default()).collect();
    let mut client_rngs: Vec<Rng> = (0..args.clients)
        .map(|c| Rng::new(seed ^ (u64::from(c) + 1).wrapping_mul(0xA24B_AED4_963E_E407)))
        .collect();
    let started = Instant::now();
    let mut caught_tmp = 0u64;
    let mut acked_total = 0u64;
    let mut checked_total = 0u64;
    let mut server = start_server(args, &binary, dir)?;
    for cycle in 1..=args.cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let before: u64 = oracles.iter().map(|o| o.acked_ops).sum();
        let run_ms = 20 + rng.below(args.max_run_ms - 19);
        std::thread::scope(|s| {
            let addr = &server.addr;
            for (id, (o, r)) in oracles.iter_mut().zip(client_rngs.iter_mut()).enumerate() {
                let stop = stop.clone();
                s.spawn(move || client_session(addr, id as u32, o, r, &stop));
            }
            std::thread::sleep(Duration::from_millis(run_ms));
            // SIGKILL, while the clients are still writing.
            let _ = server.child.kill();
            let _ = server.child.wait();
            stop.store(true, Ordering::Relaxed);
        });
        if temp_files(dir) > 0 {
            caught_tmp += 1;
        }
        let acked: u64 = oracles.iter().map(|o| o.acked_ops).sum::<u64>() - before;
        acked_total += acked;
        server = start_server(args, &binary, dir)?;
        match verify(&server.addr, &mut oracles) {
            Ok(n) => checked_total += n,
            Err(e) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                return Err(CliError::Message(format!(
                    "cycle {cycle} (seed {seed}, data kept in {}): {e}",
                    dir.display()
                )));
            }
        }
        if cycle % 10 == 0 || cycle == args.cycles {
            eprintln!(
                "cask torture: cycle {cycle}/{}: {acked_total} writes acknowledged, \
                 {checked_total} checks, {caught_tmp} kills during compaction/hint writes, {:.0} s",
                args.cycles,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    println!(
        "cask torture: PASS: {} cycles, {} clients, --sync {}, seed {seed}: {acked_total} \
         acknowledged writes, {checked_total} key checks, {caught_tmp} kills with a \
         compaction or hint file in progress, {:.1} s",
        args.cycles,
        args.clients,
        args.sync,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
