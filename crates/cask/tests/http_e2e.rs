//! End to end: a real HTTP client (ureq) and a Redis client against `cask serve`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Served {
    child: Child,
    resp: SocketAddr,
    http: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cask serve` with the HTTP API on a free port.
fn start(dir: &std::path::Path, extra: &[&str]) -> Served {
    let port = free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir)
        .args([
            "serve",
            "--port",
            "0",
            "--http-port",
            &port,
            "--sync",
            "always",
        ])
        .args(extra)
        .env_remove("CASK_REQUIREPASS")
        .env("CASK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cask");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut http = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cask serve did not start");
        };
        if let Some(a) = line.strip_prefix("cask: http listening on ") {
            http = Some(a.trim().parse().unwrap());
        } else if let Some(a) = line.strip_prefix("cask: listening on ") {
            return Served {
                child,
                resp: a.trim().parse().unwrap(),
                http: http.expect("the HTTP line comes first"),
            };
        } else {
            eprintln!("server: {line}");
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The HTTP base URL, an HTTP agent and a Redis client for `server`.
fn clients(server: &Served) -> (String, ureq::Agent, redis::Client) {
    let redis = redis::Client::open(format!("redis://{}/", server.resp)).unwrap();
    (format!("http://{}", server.http), agent(), redis)
}

#[test]
fn http_and_resp_share_one_database_and_stop_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let (base, http, redis) = clients(&server);
    let mut con = redis.get_connection().unwrap();

    // HTTP write, Redis read.
    let mut r = http
        .put(format!("{base}/v1/kv/greeting"))
        .send("hello")
        .unwrap();
    assert_eq!(r.status(), 201);
    let etag = r
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(format!("\"{}\"", body["version"]), etag);
    let got: Option<String> = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(got.as_deref(), Some("hello"));

    // Redis write, HTTP read; the ETag changes with the version.
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hi there")
        .query(&mut con)
        .unwrap();
    let mut r = http.get(format!("{base}/v1/kv/greeting")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers().get("etag").unwrap().to_str().unwrap(), etag);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "hi there");

    // A stale If-Match loses.
    let r = http
        .put(format!("{base}/v1/kv/greeting"))
        .header("If-Match", &etag)
        .send("stale")
        .unwrap();
    assert_eq!(r.status(), 412);

    // A Redis hash is WRONGTYPE over HTTP, and listed with its type.
    let hset: redis::RedisResult<i64> = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut con);
    if hset.is_ok() {
        let r = http.get(format!("{base}/v1/kv/h")).call().unwrap();
        assert_eq!(r.status(), 409);
    }

    // TTL through HTTP is seen by Redis.
    let r = http
        .put(format!("{base}/v1/kv/session?ttl=100s"))
        .send("x")
        .unwrap();
    assert_eq!(r.status(), 201);
    let ttl: i64 = redis::cmd("TTL").arg("session").query(&mut con).unwrap();
    assert!((90..=100).contains(&ttl), "ttl {ttl}");

    // Listing, batch, metrics with the RESP client counted.
    let mut r = http.get(format!("{base}/v1/kv?prefix=gre")).call().unwrap();
    let page: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(page["items"][0]["value"], "hi there");
    let r = http
        .post(format!("{base}/v1/batch"))
        .content_type("application/json")
        .send(r#"{"ops":[{"op":"put","key":"a","value":"1"},{"op":"delete","key":"greeting"}]}"#)
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Option<String> = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(got, None);
    let mut r = http.get(format!("{base}/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert!(
        text.contains("cask_connected_clients{server=\"resp\"} 1"),
        "{text}"
    );
    assert!(text.contains("cask_commands_total{server=\"resp\",command=\"set\",result=\"ok\"} 1"));
    assert!(text.contains("cask_fsync_duration_seconds_count"));

    // Graceful shutdown of both servers on SIGTERM; the data survives a restart.
    drop(con);
    let ok = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        http.get(format!("{base}/health")).call().is_err(),
        "HTTP is down too"
    );
    drop(server);
    let server = start(dir.path(), &[]);
    let mut r = agent()
        .get(format!("http://{}/v1/kv/a", server.http))
        .call()
        .unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "1");
}

#[test]
fn requirepass_protects_http_and_http_port_0_disables_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--requirepass", "pw"]);
    let base = format!("http://{}", server.http);
    let http = agent();
    assert_eq!(
        http.get(format!("{base}/v1/kv/x")).call().unwrap().status(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/health")).call().unwrap().status(),
        200
    );
    let r = http
        .put(format!("{base}/v1/kv/x"))
        .header("Authorization", "Bearer pw")
        .send("1")
        .unwrap();
    assert_eq!(r.status(), 201);
    drop(server);

    // --http-port 0: no HTTP line, RESP still serves.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir.path())
        .args(["serve", "--port", "0", "--http-port", "0"])
        .env("CASK_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("cask: listening on "), "{first}");
}

#[test]
fn a_busy_http_port_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir.path())
        .args(["serve", "--port", "0", "--http-port", &port])
        .env("CASK_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP API"), "{err}");
}

/// Keyspace notifications see HTTP writes as they see SET and DEL: `new`, `set`, `expire`
/// for a PUT with a TTL, `del` for a DELETE, the same for a batch (a delete of a missing
/// key publishes nothing), and `expired` when a TTL given over HTTP runs out.
#[test]
fn http_writes_publish_keyspace_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let (base, http, redis) = clients(&server);
    let mut con = redis.get_connection().unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Ensgx$")
        .query(&mut con)
        .unwrap();
    let mut sub = redis.get_connection().unwrap();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyevent@0__:*").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let status = |r: Result<ureq::http::Response<ureq::Body>, ureq::Error>| r.unwrap().status();
    assert_eq!(status(http.put(format!("{base}/v1/kv/a")).send("1")), 201);
    assert_eq!(status(http.put(format!("{base}/v1/kv/a")).send("2")), 200);
    assert_eq!(
        status(http.put(format!("{base}/v1/kv/t?ttl=1")).send("x")),
        201
    );
    assert_eq!(status(http.delete(format!("{base}/v1/kv/a")).call()), 204);
    assert_eq!(status(http.delete(format!("{base}/v1/kv/a")).call()), 404);
    let batch = r#"{"ops": [{"op": "put", "key": "b", "value": "1"},
                            {"op": "delete", "key": "missing"},
                            {"op": "delete", "key": "t"}]}"#;
    assert_eq!(
        status(
            http.post(format!("{base}/v1/batch"))
                .header("content-type", "application/json")
                .send(batch)
        ),
        200
    );
    assert_eq!(
        status(http.put(format!("{base}/v1/kv/gone?ttl=1")).send("x")),
        201
    );
    let mut got = Vec::new();
    // `expired` for `gone` comes about a second later, on its own.
    while got.last().map(|(e, _): &(String, String)| e.as_str()) != Some("expired") {
        let m = ps.get_message().expect("events, then `expired`");
        let event = m.get_channel_name().trim_start_matches("__keyevent@0__:");
        got.push((event.to_string(), m.get_payload::<String>().unwrap()));
    }
    let want: Vec<(String, String)> = [
        ("new", "a"),
        ("set", "a"),
        ("set", "a"),
        ("new", "t"),
        ("set", "t"),
        ("expire", "t"),
        ("del", "a"),
        ("new", "b"),
        ("set", "b"),
        ("del", "t"),
        ("new", "gone"),
        ("set", "gone"),
        ("expire", "gone"),
        ("expired", "gone"),
    ]
    .iter()
    .map(|(e, k)| (e.to_string(), k.to_string()))
    .collect();
    assert_eq!(got, want);
}

/// A key written over HTTP fails the EXEC of a client that WATCHes it, as a RESP write
/// would; an untouched key does not.
#[test]
fn http_writes_fail_a_watching_exec() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let (base, http, redis) = clients(&server);
    let mut con = redis.get_connection().unwrap();
    let exec_after = |con: &mut redis::Connection, write: &dyn Fn()| -> Option<Vec<String>> {
        let _: () = redis::cmd("WATCH").arg("w").query(con).unwrap();
        write();
        let _: () = redis::cmd("MULTI").query(con).unwrap();
        let _: String = redis::cmd("SET").arg("w").arg("resp").query(con).unwrap();
        redis::cmd("EXEC").query(con).unwrap()
    };
    let put = || {
        let r = http.put(format!("{base}/v1/kv/w")).send("http").unwrap();
        assert!(r.status().is_success());
    };
    let delete = || {
        let r = http.delete(format!("{base}/v1/kv/w")).call().unwrap();
        assert_eq!(r.status(), 204);
    };
    assert_eq!(exec_after(&mut con, &put), None);
    assert_eq!(exec_after(&mut con, &delete), None);
    assert_eq!(exec_after(&mut con, &|| ()), Some(vec!["OK".to_string()]));
}
