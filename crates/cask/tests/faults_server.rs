//! The server over a failing disk: the engine is opened on a `FaultVfs` and served
//! in-process (`cask::server::serve_on`), and EIO or ENOSPC is injected on writes or on
//! fsyncs, once or forever, at the Nth file operation of a client workload, for N = 1, 2,
//! ... until the workload completes without meeting the fault. Then:
//! - no write that failed is answered `+OK` (or with an integer): it gets `-ERR`, and so
//!   does every later write (the engine is poisoned until reopened);
//! - reads keep being served, on the failing connection and on another one, with the
//!   acknowledged values;
//! - after a power loss (only fsynced bytes survive) and a reopen, every acknowledged write
//!   is there with its value, counters equal their acknowledged increments (or one more:
//!   the failed one may have reached the disk), and no key that was never written exists.

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::sync::Arc;

use cask::config::{ServeArgs, ServerConfig};
use cask_engine::fault::{EIO, ENOSPC, FaultController, FaultVfs, Mode, Target};
use cask_engine::{Db, Options, SyncPolicy};
use redis::Commands;

struct Running {
    addr: std::net::SocketAddr,
    thread: std::thread::JoinHandle<()>,
    db: Db,
    ctl: Arc<FaultController>,
}

fn start(dir: &Path) -> Running {
    let vfs = FaultVfs::new();
    let ctl = vfs.controller();
    ctl.skip_syncs(true);
    ctl.track_durability(dir).unwrap();
    let opts = Options {
        sync: SyncPolicy::Always,
        segment_size: 4096,
        background_compaction: false,
        vfs: Arc::new(vfs),
        ..Options::default()
    };
    let db = Db::open(dir, opts).unwrap();
    let config = ServerConfig::resolve(&ServeArgs {
        port: Some(0),
        // No HTTP listener: tests run in parallel and would share its port.
        http_port: Some(0),
        sync: Some("always".into()),
        ..ServeArgs::default()
    })
    .unwrap();
    let std_listener = StdListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let served = db.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let _ = cask::server::serve_on(served, listener, config).await;
        });
    });
    Running {
        addr,
        thread,
        db,
        ctl,
    }
}

fn conn(addr: std::net::SocketAddr) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    c.get_connection().unwrap()
}

#[derive(Default)]
struct Outcome {
    /// Acknowledged SETs: key to value.
    acked: BTreeMap<String, String>,
    /// SETs answered with an error: key to value.
    failed: BTreeMap<String, String>,
    /// Acknowledged INCRs and failed ones.
    incr_ok: i64,
    incr_failed: i64,
    /// Whether the fault was met.
    hit: bool,
}

const STEPS: usize = 60;

fn workload(r: &Running, ctx: &str) -> Outcome {
    let mut c = conn(r.addr);
    let mut reader = conn(r.addr);
    let mut out = Outcome::default();
    for i in 0..STEPS {
        let failed_before = out.hit;
        let ok = if i % 4 == 3 {
            let res: redis::RedisResult<i64> = c.incr("ctr", 1);
            match res {
                Ok(n) => {
                    out.incr_ok += 1;
                    assert_eq!(n, out.incr_ok, "{ctx}");
                    true
                }
                Err(e) => {
                    assert_eq!(e.code(), Some("ERR"), "{ctx}: {e}");
                    out.incr_failed += 1;
                    false
                }
            }
        } else {
            let (k, v) = (
                format!("k{i:03}"),
                format!("value-{i}-{}", "x".repeat(i * 7)),
            );
            let res: redis::RedisResult<()> = c.set(&k, &v);
            match res {
                Ok(()) => {
                    out.acked.insert(k, v);
                    true
                }
                Err(e) => {
                    assert_eq!(e.code(), Some("ERR"), "{ctx}: SET {k}: {e}");
                    out.failed.insert(k, v);
                    false
                }
            }
        };
        if !ok {
            out.hit = true;
        }
        // Never +OK after a failure: the engine refuses writes until reopened.
        assert!(
            !(failed_before && ok),
            "{ctx}: step {i} acknowledged after a failure"
        );
        // Reads keep being served, with acknowledged values, on both connections.
        if let Some((k, v)) = out.acked.iter().next_back() {
            let got: Option<String> = c.get(k).unwrap_or_else(|e| panic!("{ctx}: GET {e}"));
            assert_eq!(got.as_ref(), Some(v), "{ctx}");
            let got: Option<String> = reader.get(k).unwrap_or_else(|e| panic!("{ctx}: GET {e}"));
            assert_eq!(got.as_ref(), Some(v), "{ctx}");
        }
    }
    if out.hit {
        // PING and DBSIZE still answer.
        let pong: String = redis::cmd("PING").query(&mut reader).unwrap();
        assert_eq!(pong, "PONG", "{ctx}");
    }
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut reader);
    out
}

fn run_once(target: Target, mode: Mode, errno: i32, n: u64) -> bool {
    let ctx = format!("{target:?} {mode:?} errno {errno} at op {n}");
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path());
    r.ctl.arm(r.ctl.ops() + n, target, mode, errno);
    let out = workload(&r, &ctx);
    r.thread.join().unwrap();
    let Running { db, ctl, .. } = r;
    // The power fails: nothing more reaches the disk, and only what was fsynced survives.
    ctl.crash_at(ctl.ops() + 1);
    let _ = db.close();
    drop(db);
    ctl.power_loss(dir.path()).unwrap();
    // Check through the server's own view of the keyspace: serve the reopened directory.
    let r = start(dir.path());
    let mut c = conn(r.addr);
    for (k, v) in &out.acked {
        let got: Option<String> = c.get(k).unwrap();
        assert_eq!(got.as_ref(), Some(v), "{ctx}: acknowledged {k}");
    }
    for (k, v) in &out.failed {
        let got: Option<String> = c.get(k).unwrap();
        assert!(
            got.is_none() || got.as_ref() == Some(v),
            "{ctx}: {k} = {got:?}"
        );
    }
    let ctr: Option<i64> = c.get("ctr").unwrap();
    let ctr = ctr.unwrap_or(0);
    assert!(
        ctr == out.incr_ok || (ctr == out.incr_ok + 1 && out.incr_failed > 0),
        "{ctx}: counter {ctr}, acknowledged {}, failed {}",
        out.incr_ok,
        out.incr_failed
    );
    let n_keys: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let most = out.acked.len() + out.failed.len() + 1;
    assert!(
        n_keys as usize <= most,
        "{ctx}: {n_keys} keys, at most {most} written"
    );
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut c);
    r.thread.join().unwrap();
    let _ = r.db.close();
    out.hit
}

/// N = 1, 2, ... until the workload completes without meeting the fault.
fn fault_loop(target: Target, mode: Mode, errno: i32) -> u64 {
    for n in 1..2000 {
        if !run_once(target, mode, errno, n) {
            let hits = n - 1;
            eprintln!(
                "{target:?} {mode:?} {errno}: completed at N = {n}, {hits} runs met the fault"
            );
            return hits;
        }
    }
    panic!("the workload never completed");
}

#[test]
fn eio_on_write_once() {
    assert!(fault_loop(Target::Writes, Mode::Once, EIO) >= 40);
}

#[test]
fn enospc_on_write_forever() {
    assert!(fault_loop(Target::Writes, Mode::Forever, ENOSPC) >= 40);
}

#[test]
fn eio_on_fsync_once() {
    assert!(fault_loop(Target::Syncs, Mode::Once, EIO) >= 40);
}

#[test]
fn enospc_on_fsync_forever() {
    assert!(fault_loop(Target::Syncs, Mode::Forever, ENOSPC) >= 40);
}
