//! Raw RESP bytes over a real socket against a real `cask serve` process.

mod server_common;

use std::time::Duration;

use server_common::{Server, resp};

fn start(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), args);
    (dir, server)
}

#[test]
fn requests_split_at_every_byte_are_reassembled() {
    let (_d, s) = start(&[]);
    let mut c = s.connect();
    let mut req = resp(&[b"SET", b"k\0\r\nbin", b"v\r\n\0"]);
    req.extend(resp(&[b"GET", b"k\0\r\nbin"]));
    req.extend_from_slice(b"PING\r\n");
    for b in &req {
        c.send(&[*b]);
    }
    c.expect(b"+OK\r\n$4\r\nv\r\n\0\r\n+PONG\r\n");
}

#[test]
fn pipelined_requests_get_replies_in_order() {
    let (_d, s) = start(&[]);
    let mut c = s.connect();
    let mut req = Vec::new();
    let mut expected = Vec::new();
    for i in 1..=500 {
        req.extend(resp(&[b"INCR", b"counter"]));
        expected.extend(format!(":{i}\r\n").into_bytes());
    }
    req.extend(resp(&[b"GET", b"counter"]));
    expected.extend(b"$3\r\n500\r\n");
    c.send(&req);
    c.expect(&expected);
}

#[test]
fn inline_commands_work() {
    let (_d, s) = start(&[]);
    let mut c = s.connect();
    c.send(b"PING\r\nset k \"a b\\x21\"\r\nget k\n\r\n   \r\nECHO 'it''\r\n");
    c.expect(b"+PONG\r\n+OK\r\n$4\r\na b!\r\n");
    // The unbalanced quote closes the connection after the error.
    c.expect(b"-ERR Protocol error: unbalanced quotes in request\r\n");
    assert!(c.is_closed());
}

#[test]
fn malformed_requests_get_protocol_errors_and_close() {
    let (_d, s) = start(&[]);
    let cases: &[(&[u8], &str)] = &[
        (b"*3000000000\r\n", "invalid multibulk length"),
        (b"*abc\r\n", "invalid multibulk length"),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
            "expected '$', got 'f'",
        ),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n",
            "invalid bulk length",
        ),
        (b"*1\r\n$2000000000\r\n", "invalid bulk length"),
        (b"*1\r\n$blabla\r\n", "invalid bulk length"),
        (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
        (
            b"set \"\"\"test-key\"\"\" v\r\n",
            "unbalanced quotes in request",
        ),
    ];
    for (input, msg) in cases {
        let mut c = s.connect();
        c.send(input);
        c.expect(format!("-ERR Protocol error: {msg}\r\n").as_bytes());
        assert!(c.is_closed(), "connection stays open after {msg}");
    }
    // Lines that never end are cut off at 64 KiB.
    for (prefix, msg) in [
        (&b""[..], "too big inline request"),
        (b"*", "too big mbulk count string"),
        (b"*1\r\n$", "too big bulk count string"),
    ] {
        let mut c = s.connect();
        let mut input = prefix.to_vec();
        input.extend(std::iter::repeat_n(b'1', 70 * 1024));
        c.send(&input);
        c.expect(format!("-ERR Protocol error: {msg}\r\n").as_bytes());
        assert!(c.is_closed());
    }
    // Everyone else is still served.
    let mut c = s.connect();
    c.send(&resp(&[b"PING"]));
    c.expect(b"+PONG\r\n");
}

#[test]
fn oversized_bulk_is_rejected_before_the_body_arrives() {
    let (_d, s) = start(&["--proto-max-bulk-len", "1000"]);
    let mut c = s.connect();
    // Only the header: the server must answer without waiting for 1001 bytes.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n");
    c.expect(b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(c.is_closed());
    // The default limit is 512 MiB.
    let (_d2, s2) = start(&[]);
    let mut c = s2.connect();
    c.send(b"*1\r\n$536870913\r\n");
    c.expect(b"-ERR Protocol error: invalid bulk length\r\n");
    let mut c = s.connect();
    c.send(&resp(&[b"SET", b"k", &[b'x'; 1000]]));
    c.expect(b"+OK\r\n");
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let (_d, s) = start(&["--client-query-buffer-limit", "4096"]);
    let mut c = s.connect();
    // A bulk that fits the bulk limit but not the query buffer.
    c.send(b"*2\r\n$4\r\nECHO\r\n$10000\r\n");
    c.send(&[b'x'; 5000]);
    assert!(c.is_closed());
    let mut c = s.connect();
    c.send(&resp(&[b"ECHO", &[b'y'; 3000]]));
    let mut expected = b"$3000\r\n".to_vec();
    expected.extend([b'y'; 3000]);
    expected.extend(b"\r\n");
    c.expect(&expected);
}

#[test]
fn unknown_commands_and_wrong_arity_get_redis_errors() {
    let (_d, s) = start(&[]);
    let mut c = s.connect();
    c.send(&resp(&[b"FOO", b"a", b"b"]));
    c.expect(b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
    c.send(&resp(&[b"GET"]));
    c.expect(b"-ERR wrong number of arguments for 'get' command\r\n");
    c.send(b"ping x y z\r\n");
    c.expect(b"-ERR wrong number of arguments for 'ping' command\r\n");
    c.send(&resp(&[b"SET", b"k", b"v", b"EX", b"0"]));
    c.expect(b"-ERR invalid expire time in 'set' command\r\n");
    c.send(&resp(&[b"SET", b"k", b"notanumber"]));
    c.expect(b"+OK\r\n");
    c.send(&resp(&[b"INCR", b"k"]));
    c.expect(b"-ERR value is not an integer or out of range\r\n");
    c.send(&resp(&[b"SELECT", b"16"]));
    c.expect(b"-ERR DB index is out of range\r\n");
    c.send(&resp(&[b"SET", b"k", b"v", b"NX", b"XX"]));
    c.expect(b"-ERR syntax error\r\n");
    // Engine refusals become error replies, never +OK.
    c.send(&resp(&[b"SET", &[b'k'; 70_000], b"v"]));
    let line = c.line();
    assert!(
        line.starts_with("-ERR key is 70002 bytes, over the limit"),
        "{line}"
    );
    c.send(&resp(&[b"EXISTS", &[b'k'; 70_000]]));
    c.expect(b":0\r\n");
    c.send(&resp(&[b"gEt", b"k"]));
    c.expect(b"$10\r\nnotanumber\r\n");
    // The connection survives all of that.
    c.send(&resp(&[b"PING"]));
    c.expect(b"+PONG\r\n");
}

#[test]
fn resp3_after_hello_3() {
    let (_d, s) = start(&[]);
    let mut c = s.connect();
    c.send(&resp(&[b"GET", b"missing"]));
    c.expect(b"$-1\r\n");
    c.send(&resp(&[b"HELLO", b"3"]));
    assert_eq!(c.line(), "%7\r\n");
    for _ in 0..14 {
        let l = c.line();
        if l.starts_with('$') || l.starts_with('*') && l != "*0\r\n" {
            continue;
        }
    }
    c.send(&resp(&[b"PING"]));
    // Drain whatever is left of HELLO's map until PONG.
    loop {
        if c.line() == "+PONG\r\n" {
            break;
        }
    }
    c.send(&resp(&[b"GET", b"missing"]));
    c.expect(b"_\r\n");
    c.send(&resp(&[b"CONFIG", b"GET", b"appendonly"]));
    c.expect(b"%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    c.send(&resp(&[b"HELLO", b"4"]));
    c.expect(b"-NOPROTO unsupported protocol version\r\n");
}

#[test]
fn requirepass_gates_every_command_but_auth() {
    let (_d, s) = start(&["--requirepass", "s3cret"]);
    let mut c = s.connect();
    c.send(&resp(&[b"GET", b"k"]));
    c.expect(b"-NOAUTH Authentication required.\r\n");
    c.send(&resp(&[b"AUTH", b"wrong"]));
    c.expect(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    c.send(&resp(&[b"AUTH", b"s3cret"]));
    c.expect(b"+OK\r\n");
    c.send(&resp(&[b"SET", b"k", b"v"]));
    c.expect(b"+OK\r\n");
    // HELLO can authenticate and switch protocol at once.
    let mut h = s.connect();
    h.send(&resp(&[b"HELLO", b"3"]));
    assert!(
        h.line()
            .starts_with("-NOAUTH HELLO must be called with the client already authenticated")
    );
    h.send(&resp(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"]));
    assert_eq!(h.line(), "%7\r\n");
    // Unauthenticated clients cannot make the server buffer large requests.
    let mut c = s.connect();
    c.send(b"*20\r\n");
    c.expect(b"-ERR Protocol error: unauthenticated multibulk length\r\n");
    assert!(c.is_closed());
}

#[test]
fn protected_mode_refuses_public_bind_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir.path())
        .args(["serve", "--port", "0", "--bind", "0.0.0.0"])
        .env_remove("CASK_REQUIREPASS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--protected-mode no"));
}

#[test]
fn maxclients_refuses_extra_connections() {
    let (_d, s) = start(&["--maxclients", "1"]);
    let mut first = s.connect();
    first.send(&resp(&[b"PING"]));
    first.expect(b"+PONG\r\n");
    let mut second = s.connect();
    second.expect(b"-ERR max number of clients reached\r\n");
    assert!(second.is_closed());
    first.send(&resp(&[b"PING"]));
    first.expect(b"+PONG\r\n");
}

#[test]
fn sigterm_and_shutdown_are_graceful_and_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &["--sync", "interval"]);
    let mut c = s.connect();
    c.send(&resp(&[b"SET", b"a", b"1"]));
    c.expect(b"+OK\r\n");
    c.send(&resp(&[b"SET", b"t", b"x", b"EX", b"1000"]));
    c.expect(b"+OK\r\n");
    // A second server cannot open the same directory.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cask"))
        .arg("--dir")
        .arg(dir.path())
        .args(["serve", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    s.signal("TERM");
    let status = s.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(c.is_closed());

    let mut s = Server::start(dir.path(), &[]);
    let mut c = s.connect();
    c.send(&resp(&[b"GET", b"a"]));
    c.expect(b"$1\r\n1\r\n");
    c.send(&resp(&[b"TTL", b"t"]));
    c.expect(b":1000\r\n");
    c.send(&resp(&[b"SET", b"b", b"2"]));
    c.expect(b"+OK\r\n");
    c.send(&resp(&[b"SHUTDOWN"]));
    assert!(c.is_closed());
    assert!(s.wait(Duration::from_secs(10)).success());

    let mut s = Server::start(dir.path(), &[]);
    let mut c = s.connect();
    c.send(&resp(&[b"MGET", b"a", b"b"]));
    c.expect(b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    s.signal("INT");
    let status = s.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn acknowledged_writes_survive_kill_9_with_sync_always() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &["--sync", "always"]);
    let mut c = s.connect();
    let mut req = Vec::new();
    for i in 0..200 {
        req.extend(resp(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
    }
    c.send(&req);
    c.expect(&b"+OK\r\n".repeat(200));
    c.send(&resp(&[b"INCRBY", b"n", b"41"]));
    c.expect(b":41\r\n");
    s.signal("KILL");
    s.wait(Duration::from_secs(10));

    let s = Server::start(dir.path(), &[]);
    let mut c = s.connect();
    c.send(&resp(&[b"DBSIZE"]));
    c.expect(b":201\r\n");
    c.send(&resp(&[b"INCR", b"n"]));
    c.expect(b":42\r\n");
}

#[test]
fn quit_replies_then_closes() {
    let (_d, s) = start(&[]);
    let mut c = s.connect();
    c.send(&resp(&[b"QUIT"]));
    c.expect(b"+OK\r\n");
    assert!(c.is_closed());
}

#[test]
fn environment_overrides_file_and_flag_overrides_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cask.toml");
    std::fs::write(&cfg, "proto_max_bulk_len = 10\nmaxclients = 5\n").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cask"));
    cmd.arg("--dir")
        .arg(dir.path().join("data"))
        .args([
            "serve",
            "--port",
            "0",
            "--sync",
            "never",
            "--maxclients",
            "7",
            "--http-port",
            "0",
        ])
        .arg("--config")
        .arg(&cfg)
        .env("CASK_PROTO_MAX_BULK_LEN", "20")
        .env("CASK_MAXCLIENTS", "6")
        .env("CASK_LOG", "warn")
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let addr = loop {
        let line = lines.next().expect("address line").unwrap();
        if let Some(a) = line.strip_prefix("cask: listening on ") {
            break a.to_string();
        }
    };
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = server_common::Raw(stream);
    c.send(&resp(&[b"CONFIG", b"GET", b"proto-max-bulk-len"]));
    c.expect(b"*2\r\n$18\r\nproto-max-bulk-len\r\n$2\r\n20\r\n");
    c.send(&resp(&[b"CONFIG", b"GET", b"maxclients"]));
    c.expect(b"*2\r\n$10\r\nmaxclients\r\n$1\r\n7\r\n");
    let _ = child.kill();
    let _ = child.wait();
}

/// `cask get/set/rm/scan` and the server's database 0 are one keyspace (regression: the
/// command line used to read and write raw engine keys the server never saw).
#[test]
fn command_line_and_server_share_database_0() {
    let dir = tempfile::tempdir().unwrap();
    let cask = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cask"))
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(cask(&["set", "from-cli", "hello"]).status.success());

    let mut s = Server::start(dir.path(), &[]);
    let mut c = s.connect();
    c.cmd(&[b"GET", b"from-cli"]);
    c.expect(b"$5\r\nhello\r\n");
    c.cmd(&[b"SET", b"from-server", b"v"]);
    c.expect(b"+OK\r\n");
    c.cmd(&[b"SELECT", b"1"]);
    c.expect(b"+OK\r\n");
    c.cmd(&[b"SET", b"other-db", b"x"]);
    c.expect(b"+OK\r\n");
    c.send(&resp(&[b"SHUTDOWN"]));
    assert!(s.wait(Duration::from_secs(10)).success());

    let o = cask(&["get", "from-server"]);
    assert_eq!(o.stdout, b"v");
    let o = cask(&["scan"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "from-cli\thello\nfrom-server\tv\n"
    );
    // dump covers every database; load restores them.
    let dump = cask(&["dump"]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains(r#"{"db":1,"key":"other-db","value":"x"}"#),
        "{text}"
    );
    assert!(cask(&["rm", "from-cli"]).status.success());
    assert_eq!(cask(&["get", "from-cli"]).stdout, b"Key not found\n");
}
