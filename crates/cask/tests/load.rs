//! A bounded load test on loopback, with hostile clients in parallel.
//!
//! 1,000 concurrent connections run mixed GET / SET / INCR on their own keys for a fixed
//! time (`CASK_LOAD_SECS`, default 5) while other connections send malformed frames,
//! oversized bulk lengths, and drip valid requests one byte at a time. Then:
//! - the server is still up and every well-formed connection was served (each completed
//!   requests, and none got an error);
//! - every hostile frame got a `-ERR Protocol error` and its connection was closed;
//! - the server's resident memory (VmRSS) never exceeded `CASK_LOAD_RSS_MB` (default
//!   256 MiB), sampled every 100 ms;
//! - afterwards each connection's key holds its last acknowledged value and each counter
//!   its number of acknowledged increments.
//!
//! The longer mode: `CASK_LOAD_SECS=60 cargo test -p cask --release --test load -- --nocapture`.

mod server_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use server_common::Server;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Client {
            r: BufReader::new(r),
            w,
        })
    }

    async fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        self.w.write_all(&server_common::resp(args)).await?;
        self.read().await
    }

    async fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).await?;
        if line.len() < 3 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        Ok(match line[0] {
            b'+' => Reply::Simple(body),
            b'-' => Reply::Error(body),
            b':' => Reply::Int(body.parse().unwrap()),
            b'$' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut v = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut v).await?;
                    v.truncate(n as usize);
                    Reply::Bulk(Some(v))
                }
            }
            t => panic!("unexpected reply type {t}"),
        })
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What one well-formed connection did.
struct Done {
    id: usize,
    ops: u64,
    last_value: Option<Vec<u8>>,
    incrs: i64,
}

async fn well_formed(addr: std::net::SocketAddr, id: usize, stop: Arc<AtomicBool>) -> Done {
    let mut c = Client::connect(addr).await.expect("connect");
    let key = format!("load:{id}:k");
    let ctr = format!("load:{id}:n");
    let mut done = Done {
        id,
        ops: 0,
        last_value: None,
        incrs: 0,
    };
    let mut i = 0u64;
    // Every connection does at least a few requests, however late it got going.
    while !stop.load(Ordering::Relaxed) || done.ops < 3 {
        i += 1;
        match i % 3 {
            0 => {
                let v = format!("{id}-{i}-{}", "v".repeat((i % 50) as usize)).into_bytes();
                let r = c.call(&[b"SET", key.as_bytes(), &v]).await.expect("SET");
                assert_eq!(r, Reply::Simple("OK".into()), "conn {id}");
                done.last_value = Some(v);
            }
            1 => {
                let r = c.call(&[b"INCR", ctr.as_bytes()]).await.expect("INCR");
                done.incrs += 1;
                assert_eq!(r, Reply::Int(done.incrs), "conn {id}");
            }
            _ => {
                let r = c.call(&[b"GET", key.as_bytes()]).await.expect("GET");
                assert_eq!(r, Reply::Bulk(done.last_value.clone()), "conn {id}");
            }
        }
        done.ops += 1;
    }
    done
}

/// Hostile frames: each must get a protocol error and a closed connection.
const MALFORMED: &[&[u8]] = &[
    b"*abc\r\n",
    b"*2\r\n$3\r\nGET\r\n:12\r\n",
    b"*1\r\n$-7\r\n",
    b"*2\r\n$3\r\nSET\r\n$999999999999\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n",
    b"*99999999999\r\n",
    b"*-5\r\n*1\r\n$4\r\nPING\r\n*1\r\nPING\r\n",
    b"SET \"unbalanced\r\n",
];

async fn hostile(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let frame = MALFORMED[i % MALFORMED.len()];
        i += 1;
        let mut c = Client::connect(addr).await.expect("connect");
        c.w.write_all(frame).await.expect("send");
        // A PING pipelined after a malformed frame must not be answered: the connection
        // is closed after the error (a frame may hold valid requests before the bad one).
        let _ = c.w.write_all(b"*1\r\n$4\r\nPING\r\n").await;
        let mut replies = Vec::new();
        while let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), c.read()).await {
            replies.push(r);
        }
        let frame_text = String::from_utf8_lossy(frame);
        let last = replies.last();
        assert!(
            matches!(last, Some(Reply::Error(e)) if e.contains("Protocol error")),
            "{frame_text:?}: replies {replies:?}"
        );
        let first_error = replies.iter().position(|r| matches!(r, Reply::Error(_)));
        assert_eq!(
            first_error,
            Some(replies.len() - 1),
            "{frame_text:?}: served after a protocol error: {replies:?}"
        );
        count.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A slow client: a valid SET dripped one byte every 20 ms, then a GET of it.
async fn slow(addr: std::net::SocketAddr, id: usize) {
    let mut c = Client::connect(addr).await.expect("connect");
    let key = format!("slow:{id}");
    let frame = server_common::resp(&[b"SET", key.as_bytes(), b"dripped"]);
    for b in frame {
        c.w.write_all(&[b]).await.expect("drip");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.read().await.unwrap(), Reply::Simple("OK".into()));
    let r = c.call(&[b"GET", key.as_bytes()]).await.unwrap();
    assert_eq!(r, Reply::Bulk(Some(b"dripped".to_vec())));
}

#[test]
fn thousand_connections_with_hostile_clients() {
    let secs: u64 = std::env::var("CASK_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rss_limit_mb: u64 = std::env::var("CASK_LOAD_RSS_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--sync",
            "interval",
            "--maxclients",
            "2000",
            "--proto-max-bulk-len",
            "1048576",
            "--client-query-buffer-limit",
            "4194304",
        ],
    );
    let pid = server.child.id();
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_count = Arc::new(AtomicU64::new(0));
    let max_rss = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let dones: Vec<Done> = rt.block_on(async {
        let sampler = {
            let (stop, max_rss) = (stop.clone(), max_rss.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    max_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut clients = Vec::new();
        for id in 0..CONNECTIONS {
            clients.push(tokio::spawn(well_formed(addr, id, stop.clone())));
        }
        let mut others = Vec::new();
        for _ in 0..4 {
            others.push(tokio::spawn(hostile(
                addr,
                stop.clone(),
                hostile_count.clone(),
            )));
        }
        for id in 0..8 {
            others.push(tokio::spawn(slow(addr, id)));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut dones = Vec::new();
        for c in clients {
            dones.push(c.await.expect("a well-formed client failed"));
        }
        for o in others {
            o.await.expect("a hostile or slow client's check failed");
        }
        sampler.await.unwrap();
        dones
    });
    let elapsed = started.elapsed();
    let total: u64 = dones.iter().map(|d| d.ops).sum();
    let min = dones.iter().map(|d| d.ops).min().unwrap();
    let rss_mb = max_rss.load(Ordering::Relaxed) / 1024;
    eprintln!(
        "load: {CONNECTIONS} connections, {total} requests in {:.1} s ({:.0}/s), fewest per \
         connection {min}, {} hostile frames refused, peak RSS {rss_mb} MiB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        hostile_count.load(Ordering::Relaxed),
    );
    assert!(min >= 3, "a connection was starved");
    assert!(hostile_count.load(Ordering::Relaxed) >= 8);
    assert!(rss_mb > 0, "could not read the server's VmRSS");
    assert!(
        rss_mb <= rss_limit_mb,
        "peak RSS {rss_mb} MiB over {rss_limit_mb} MiB"
    );
    // The data verifies afterwards, through a fresh connection.
    rt.block_on(async {
        let mut c = Client::connect(addr).await.unwrap();
        for d in &dones {
            let r = c
                .call(&[b"GET", format!("load:{}:k", d.id).as_bytes()])
                .await
                .unwrap();
            assert_eq!(r, Reply::Bulk(d.last_value.clone()), "conn {}", d.id);
            let r = c
                .call(&[b"GET", format!("load:{}:n", d.id).as_bytes()])
                .await
                .unwrap();
            let want = (d.incrs > 0).then(|| d.incrs.to_string().into_bytes());
            assert_eq!(r, Reply::Bulk(want), "conn {}", d.id);
        }
        assert_eq!(
            c.call(&[b"PING"]).await.unwrap(),
            Reply::Simple("PONG".into())
        );
    });
    drop(server);
}
