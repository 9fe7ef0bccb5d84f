//! Starting a real `cask serve` process on port 0 for the server tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Server {
    /// Starts `cask serve` on a free port with `--sync never` unless `args` says otherwise.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cask"));
        cmd.arg("--dir")
            .arg(dir)
            .arg("serve")
            .arg("--port")
            .arg("0");
        if !args.contains(&"--sync") {
            cmd.args(["--sync", "never"]);
        }
        // Tests run in parallel: no HTTP listener on the fixed default port unless asked.
        if !args.contains(&"--http-port") {
            cmd.args(["--http-port", "0"]);
        }
        cmd.args(args)
            .env_remove("CASK_REQUIREPASS")
            .env("CASK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cask");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("cask: listening on ") {
                    let _ = tx.send(Ok(addr.trim().to_string()));
                } else {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(addr)) => {
                    return Server {
                        child,
                        addr: addr.parse().expect("address"),
                        dir: dir.to_path_buf(),
                    };
                }
                Ok(Err(line)) => eprintln!("server: {line}"),
                Err(_) => {
                    let _ = child.kill();
                    panic!("cask serve did not report its address");
                }
            }
        }
    }

    /// A raw connection.
    pub fn connect(&self) -> Raw {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw(s)
    }

    /// A `redis` crate URL.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Waits for the process to exit (after SHUTDOWN or a signal).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw socket speaking bytes.
pub struct Raw(pub TcpStream);

impl Raw {
    pub fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("write");
    }

    /// Reads exactly `n` bytes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.0.read_exact(&mut buf).expect("read");
        buf
    }

    /// Reads until `expected.len()` bytes arrived and checks them.
    pub fn expect(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// Sends a command as a multibulk and returns nothing.
    pub fn cmd(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.send(&out);
    }

    /// Reads one line including CRLF.
    pub fn line(&mut self) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            self.0.read_exact(&mut b).expect("read line");
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Whether the server closed the connection (EOF) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read(&mut b), Ok(0) | Err(_))
    }
}

/// Encodes a command as RESP.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A `redis` crate connection to `s`.
pub fn conn(s: &Server) -> redis::Connection {
    redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Waits (up to 10 s) until INFO reports `n` blocked clients.
pub fn wait_blocked(c: &mut redis::Connection, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO").arg("clients").query(c).unwrap();
        let got = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .expect("blocked_clients in INFO");
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "blocked_clients stayed {got}, want {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The seed of a randomized test: `CASK_SEED`, or the clock.
pub fn seed() -> u64 {
    std::env::var("CASK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Runs a randomized test with [`seed`], naming the seed to rerun it with if it fails.
pub fn run_seeded(name: &str, run: fn(u64)) {
    let seed = seed();
    if let Err(e) = std::panic::catch_unwind(|| run(seed)) {
        eprintln!("{name} failed with CASK_SEED={seed}");
        std::panic::resume_unwind(e);
    }
}

/// Restarts `server` (`--sync never`, same directory) the hard way (SIGKILL) when `kill`,
/// else with SHUTDOWN, and reconnects `c`.
pub fn restart(server: &mut Server, c: &mut redis::Connection, kill: bool) {
    if kill {
        server.signal("KILL");
    } else {
        let _: redis::RedisResult<redis::Value> = redis::cmd("SHUTDOWN").query(c);
    }
    server.wait(Duration::from_secs(20));
    let dir = server.dir.clone();
    *server = Server::start(&dir, &["--sync", "never"]);
    *c = conn(server);
}
