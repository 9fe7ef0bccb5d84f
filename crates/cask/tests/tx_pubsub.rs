//! Transactions (MULTI/EXEC/WATCH) and pub/sub across real connections.

mod server_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{Commands, RedisResult, Value};
use server_common::{Server, resp};

fn start(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), args);
    (dir, server)
}

fn conn(s: &Server) -> redis::Connection {
    redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn exec(c: &mut redis::Connection) -> RedisResult<Value> {
    redis::cmd("EXEC").query(c)
}

fn ok(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap()
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let r: RedisResult<Value> = cmd.query(c);
    let e = r.expect_err("expected an error");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

/// Two clients race WATCH/GET/MULTI/SET/EXEC on one key: exactly one commits.
#[test]
fn watch_race_one_client_aborts() {
    let (_d, s) = start(&[]);
    let mut a = conn(&s);
    let mut b = conn(&s);
    let _: () = a.set("k", 10).unwrap();
    ok(&mut a, &["WATCH", "k"]);
    ok(&mut b, &["WATCH", "k"]);
    let va: i64 = a.get("k").unwrap();
    let vb: i64 = b.get("k").unwrap();
    ok(&mut a, &["MULTI"]);
    ok(&mut b, &["MULTI"]);
    assert_eq!(
        ok(&mut a, &["SET", "k", &(va + 1).to_string()]),
        Value::SimpleString("QUEUED".into())
    );
    ok(&mut b, &["SET", "k", &(vb + 100).to_string()]);
    assert_eq!(exec(&mut a).unwrap(), Value::Array(vec![Value::Okay]));
    assert_eq!(exec(&mut b).unwrap(), Value::Nil, "b's watched key changed");
    assert_eq!(a.get::<_, i64>("k").unwrap(), 11);
}

/// Optimistic increments from several threads: every committed transaction counts once.
#[test]
fn watch_optimistic_counter_loses_nothing() {
    let (_d, s) = start(&[]);
    let url = s.url();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut aborted = 0;
                for _ in 0..50 {
                    loop {
                        ok(&mut c, &["WATCH", "ctr"]);
                        let v: Option<i64> = c.get("ctr").unwrap();
                        ok(&mut c, &["MULTI"]);
                        ok(&mut c, &["SET", "ctr", &(v.unwrap_or(0) + 1).to_string()]);
                        if exec(&mut c).unwrap() != Value::Nil {
                            break;
                        }
                        aborted += 1;
                    }
                }
                aborted
            })
        })
        .collect();
    let aborted: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut c = conn(&s);
    assert_eq!(c.get::<_, i64>("ctr").unwrap(), 200);
    eprintln!("aborted transactions: {aborted}");
}

#[test]
fn queueing_errors_abort_exec_and_runtime_errors_do_not() {
    let (_d, s) = start(&[]);
    let mut c = conn(&s);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["SET", "a", "1"]);
    assert!(err(&mut c, &["NOSUCHCMD", "x"]).contains("unknown command"));
    assert!(err(&mut c, &["GET"]).contains("wrong number of arguments"));
    assert_eq!(
        err(&mut c, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert!(!c.exists::<_, bool>("a").unwrap(), "nothing ran");
    // The MULTI state is gone after EXECABORT.
    assert_eq!(err(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
    assert_eq!(err(&mut c, &["DISCARD"]), "ERR DISCARD without MULTI");

    // Runtime errors are per command (raw socket: the client library turns an error
    // inside the array into an error of the whole reply).
    let mut raw = s.connect();
    raw.send(&resp(&[b"MULTI"]));
    raw.expect(b"+OK\r\n");
    raw.send(&resp(&[b"MULTI"]));
    raw.expect(b"-ERR MULTI calls can not be nested\r\n");
    raw.send(&resp(&[b"WATCH", b"x"]));
    raw.expect(b"-ERR WATCH inside MULTI is not allowed\r\n");
    for cmd in [
        &[&b"SET"[..], b"s", b"text"][..],
        &[b"INCR", b"s"],
        &[b"SET", b"t", b"1"],
        &[b"GET", b"t"],
    ] {
        raw.send(&resp(cmd));
        raw.expect(b"+QUEUED\r\n");
    }
    raw.send(&resp(&[b"EXEC"]));
    raw.expect(b"*4\r\n+OK\r\n-ERR value is not an integer or out of range\r\n+OK\r\n$1\r\n1\r\n");

    // DISCARD drops the queue and the watches.
    let _: () = c.set("w", 1).unwrap();
    ok(&mut c, &["WATCH", "w"]);
    let _: () = c.set("w", 2).unwrap();
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["INCR", "w"]);
    assert_eq!(ok(&mut c, &["DISCARD"]), Value::Okay);
    assert_eq!(c.get::<_, i64>("w").unwrap(), 2);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["INCR", "w"]);
    assert_eq!(exec(&mut c).unwrap(), Value::Array(vec![Value::Int(3)]));
    // SAVE and SHUTDOWN are refused inside MULTI (and flag the transaction).
    ok(&mut c, &["MULTI"]);
    assert!(err(&mut c, &["SHUTDOWN"]).contains("not allowed inside a transaction"));
    assert!(err(&mut c, &["EXEC"]).starts_with("EXECABORT"));
}

#[test]
fn watch_sees_expiry_flush_and_create_then_delete() {
    let (_d, s) = start(&[]);
    let mut a = conn(&s);
    let mut b = conn(&s);

    // A watched key that expires makes EXEC fail.
    ok(&mut a, &["SET", "e", "v", "PX", "100"]);
    ok(&mut a, &["WATCH", "e"]);
    std::thread::sleep(Duration::from_millis(250));
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_eq!(exec(&mut a).unwrap(), Value::Nil);

    // An already expired key stays absent: EXEC succeeds.
    ok(&mut a, &["SET", "stale", "v", "PX", "1"]);
    std::thread::sleep(Duration::from_millis(20));
    ok(&mut a, &["WATCH", "stale"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_ne!(exec(&mut a).unwrap(), Value::Nil);

    // FLUSHALL from another client touches an existing watched key...
    let _: () = a.set("f", 1).unwrap();
    ok(&mut a, &["WATCH", "f"]);
    ok(&mut b, &["FLUSHALL"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_eq!(exec(&mut a).unwrap(), Value::Nil);
    // ...but not a missing one.
    ok(&mut a, &["WATCH", "missing"]);
    ok(&mut b, &["FLUSHDB"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_ne!(exec(&mut a).unwrap(), Value::Nil);

    // A missing key created and deleted again meanwhile: EXEC fails, as in Redis.
    ok(&mut a, &["WATCH", "cd"]);
    ok(&mut b, &["SET", "cd", "1"]);
    ok(&mut b, &["DEL", "cd"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_eq!(exec(&mut a).unwrap(), Value::Nil);
    // A DEL of a missing watched key changes nothing: EXEC succeeds.
    ok(&mut a, &["WATCH", "cd"]);
    ok(&mut b, &["DEL", "cd"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_ne!(exec(&mut a).unwrap(), Value::Nil);

    // EXPIRE on a watched key touches it; UNWATCH forgets it.
    let _: () = a.set("x", 1).unwrap();
    ok(&mut a, &["WATCH", "x"]);
    ok(&mut b, &["EXPIRE", "x", "100"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_eq!(exec(&mut a).unwrap(), Value::Nil);
    ok(&mut a, &["WATCH", "x"]);
    ok(&mut b, &["SET", "x", "2"]);
    ok(&mut a, &["UNWATCH"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_ne!(exec(&mut a).unwrap(), Value::Nil);

    // WATCH remembers the database.
    ok(&mut a, &["SELECT", "3"]);
    let _: () = a.set("x", 1).unwrap();
    ok(&mut a, &["WATCH", "x"]);
    ok(&mut b, &["SET", "x", "changed in db 0"]);
    ok(&mut a, &["MULTI"]);
    ok(&mut a, &["PING"]);
    assert_ne!(exec(&mut a).unwrap(), Value::Nil);
}

/// Readers never see a transaction half applied.
#[test]
fn exec_is_atomic_for_other_clients() {
    let (_d, s) = start(&["--sync", "never"]);
    let mut w = conn(&s);
    let _: () = w.set("x", 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let total_reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let url = s.url();
            let stop = stop.clone();
            let total_reads = total_reads.clone();
            std::thread::spawn(move || {
                let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let v: i64 = r.get("x").unwrap();
                    assert_eq!(v % 100, 0, "saw a partial transaction: x = {v}");
                    total_reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Keep writing until the readers have read a lot while transactions were running.
    let mut txs = 0;
    let started = Instant::now();
    while txs < 100
        || (total_reads.load(Ordering::Relaxed) < 5_000
            && started.elapsed() < Duration::from_secs(10))
    {
        txs += 1;
        let mut p = redis::pipe();
        p.atomic();
        for _ in 0..100 {
            p.cmd("INCR").arg("x");
        }
        let out: Vec<i64> = p.query(&mut w).unwrap();
        assert_eq!(out.len(), 100);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(total_reads.load(Ordering::Relaxed) > 0);
    assert_eq!(w.get::<_, i64>("x").unwrap(), txs * 100);
}

#[test]
fn exec_writes_wait_for_durability_under_sync_always() {
    let (dir, mut s) = start(&["--sync", "always"]);
    let mut c = conn(&s);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["SET", "d", "1"]);
    ok(&mut c, &["INCR", "n"]);
    assert_eq!(
        exec(&mut c).unwrap(),
        Value::Array(vec![Value::Okay, Value::Int(1)])
    );
    // Acknowledged, so it survives SIGKILL.
    s.signal("KILL");
    s.wait(Duration::from_secs(10));
    let s2 = Server::start(dir.path(), &[]);
    let mut c = conn(&s2);
    assert_eq!(c.get::<_, i64>("d").unwrap(), 1);
    assert_eq!(c.get::<_, i64>("n").unwrap(), 1);
}

#[test]
fn pubsub_delivers_across_connections_with_patterns() {
    let (_d, s) = start(&[]);
    let mut sub = conn(&s);
    let mut publ = conn(&s);
    let mut ps = sub.as_pubsub();
    ps.subscribe("news.tech").unwrap();
    ps.psubscribe("news.*").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(publ.publish::<_, _, i64>("news.tech", "hello").unwrap(), 2);
    assert_eq!(publ.publish::<_, _, i64>("news.art", "pic").unwrap(), 1);
    assert_eq!(publ.publish::<_, _, i64>("other", "x").unwrap(), 0);
    let m = ps.get_message().unwrap();
    assert_eq!(m.get_channel_name(), "news.tech");
    assert!(!m.from_pattern());
    assert_eq!(m.get_payload::<String>().unwrap(), "hello");
    let m = ps.get_message().unwrap();
    assert!(m.from_pattern());
    assert_eq!(m.get_pattern::<String>().unwrap(), "news.*");
    assert_eq!(m.get_payload::<String>().unwrap(), "hello");
    let m = ps.get_message().unwrap();
    assert_eq!(m.get_channel_name(), "news.art");
    assert_eq!(m.get_payload::<String>().unwrap(), "pic");

    let chans: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut publ)
        .unwrap();
    assert_eq!(chans, vec!["news.tech".to_string()]);
    let numsub: Vec<Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("news.tech")
        .arg("none")
        .query(&mut publ)
        .unwrap();
    assert_eq!(
        numsub,
        vec![
            Value::BulkString(b"news.tech".to_vec()),
            Value::Int(1),
            Value::BulkString(b"none".to_vec()),
            Value::Int(0)
        ]
    );
    let numpat: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut publ).unwrap();
    assert_eq!(numpat, 1);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut publ).unwrap();
    assert!(list.contains("sub=1 psub=1"), "{list}");

    ps.unsubscribe("news.tech").unwrap();
    ps.punsubscribe("news.*").unwrap();
    drop(ps);
    // Unsubscribed (and the RESP2 client left subscribed mode): nobody receives.
    assert_eq!(publ.publish::<_, _, i64>("news.tech", "again").unwrap(), 0);
    assert_eq!(sub.get::<_, Option<String>>("nothing").unwrap(), None);
}

#[test]
fn resp2_subscribed_mode_and_resp3_push_frames() {
    let (_d, s) = start(&[]);
    let mut publ = conn(&s);

    // RESP2: only (P)(UN)SUBSCRIBE, PING, QUIT, RESET; PING replies [pong, arg].
    let mut r2 = s.connect();
    r2.send(&resp(&[b"SUBSCRIBE", b"c1", b"c2"]));
    r2.expect(
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n",
    );
    r2.send(&resp(&[b"GET", b"k"]));
    assert_eq!(
        r2.line(),
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context\r\n"
    );
    r2.send(&resp(&[b"PING"]));
    r2.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    r2.send(&resp(&[b"PING", b"hi"]));
    r2.expect(b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
    assert_eq!(publ.publish::<_, _, i64>("c2", "m").unwrap(), 1);
    r2.expect(b"*3\r\n$7\r\nmessage\r\n$2\r\nc2\r\n$1\r\nm\r\n");
    // RESET leaves subscribed mode.
    r2.send(&resp(&[b"RESET"]));
    r2.expect(b"+RESET\r\n");
    assert_eq!(publ.publish::<_, _, i64>("c2", "m").unwrap(), 0);
    r2.send(&resp(&[b"UNSUBSCRIBE"]));
    r2.expect(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");

    // RESP3: confirmations and messages are push frames; other commands keep working.
    let mut r3 = s.connect();
    r3.send(&resp(&[b"HELLO", b"3"]));
    let first = r3.line();
    assert!(first.starts_with('%'), "{first}");
    // Skip the HELLO map: 7 pairs, read until the "modules" empty array.
    while r3.line() != "*0\r\n" {}
    r3.send(&resp(&[b"PSUBSCRIBE", b"a*"]));
    r3.expect(b">3\r\n$10\r\npsubscribe\r\n$2\r\na*\r\n:1\r\n");
    r3.send(&resp(&[b"SET", b"k", b"v"]));
    r3.expect(b"+OK\r\n");
    r3.send(&resp(&[b"PING"]));
    r3.expect(b"+PONG\r\n");
    assert_eq!(publ.publish::<_, _, i64>("abc", "hello").unwrap(), 1);
    r3.expect(b">4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$3\r\nabc\r\n$5\r\nhello\r\n");
    // Publishing to ourselves inside MULTI: the message follows the EXEC reply.
    r3.send(&resp(&[b"MULTI"]));
    r3.expect(b"+OK\r\n");
    r3.send(&resp(&[b"PUBLISH", b"ab", b"self"]));
    r3.expect(b"+QUEUED\r\n");
    r3.send(&resp(&[b"EXEC"]));
    r3.expect(b"*1\r\n:1\r\n>4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$2\r\nab\r\n$4\r\nself\r\n");
}

/// A subscriber that stops reading is disconnected at the output limit; PUBLISH keeps
/// working meanwhile and memory does not grow without bound.
#[test]
fn slow_subscriber_is_disconnected_at_the_limit() {
    let (_d, s) = start(&["--client-output-buffer-limit-pubsub", "262144"]);
    let mut publ = conn(&s);
    let mut slow = s.connect();
    slow.send(&resp(&[b"SUBSCRIBE", b"flood"]));
    slow.expect(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nflood\r\n:1\r\n");
    let mut fast = s.connect();
    fast.send(&resp(&[b"SUBSCRIBE", b"other"]));
    fast.expect(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:1\r\n");
    let payload = "x".repeat(16 * 1024);
    let started = Instant::now();
    let mut published = 0;
    let gone = loop {
        let n: i64 = publ.publish("flood", &payload).unwrap();
        published += 1;
        if n == 0 {
            break true;
        }
        if published > 20_000 || started.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(
        gone,
        "the slow subscriber was never disconnected ({published} messages)"
    );
    // Eventually it leaves the registry, and its connection is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let numsub: Vec<Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("flood")
            .query(&mut publ)
            .unwrap();
        if numsub[1] == Value::Int(0) {
            break;
        }
        assert!(Instant::now() < deadline, "still subscribed: {numsub:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    slow.0
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut slow.0, &mut sink);
    assert!(
        (sink.len() as u64) < (published as u64) * 16 * 1024,
        "the slow subscriber got everything: it was not cut off"
    );
    // Other subscribers and PUBLISH are unaffected.
    assert_eq!(publ.publish::<_, _, i64>("other", "still").unwrap(), 1);
    fast.expect(b"*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$5\r\nstill\r\n");
}

#[test]
fn reset_and_close_clear_multi_watch_and_subscriptions() {
    let (_d, s) = start(&[]);
    let mut c = conn(&s);
    let mut other = conn(&s);
    let _: () = c.set("k", 1).unwrap();
    ok(&mut c, &["WATCH", "k"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["SET", "k", "queued"]);
    ok(&mut c, &["RESET"]);
    assert_eq!(err(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
    let _: () = other.set("k", 2).unwrap();
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["INCR", "k"]);
    assert_eq!(
        exec(&mut c).unwrap(),
        Value::Array(vec![Value::Int(3)]),
        "unwatched"
    );

    let mut sub = s.connect();
    sub.send(&resp(&[b"SUBSCRIBE", b"gone"]));
    sub.expect(b"*3\r\n$9\r\nsubscribe\r\n$4\r\ngone\r\n:1\r\n");
    assert_eq!(other.publish::<_, _, i64>("gone", "x").unwrap(), 1);
    drop(sub);
    let deadline = Instant::now() + Duration::from_secs(10);
    while other.publish::<_, _, i64>("gone", "x").unwrap() != 0 {
        assert!(
            Instant::now() < deadline,
            "closed subscriber still registered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_reply_off_skip_on_and_pushes_still_arrive() {
    let (_d, s) = start(&[]);
    let mut publ = conn(&s);
    // RESP2: OFF and SKIP drop replies; ON replies +OK.
    let mut r2 = s.connect();
    r2.send(&resp(&[b"CLIENT", b"REPLY", b"OFF"]));
    r2.send(&resp(&[b"SET", b"k", b"v"]));
    r2.send(&resp(&[b"CLIENT", b"REPLY", b"ON"]));
    r2.send(&resp(&[b"CLIENT", b"REPLY", b"SKIP"]));
    r2.send(&resp(&[b"GET", b"k"]));
    r2.send(&resp(&[b"GET", b"k"]));
    r2.expect(b"+OK\r\n$1\r\nv\r\n");
    r2.send(&resp(&[b"CLIENT", b"REPLY", b"MAYBE"]));
    r2.expect(b"-ERR syntax error\r\n");

    // RESP3: subscribe confirmations and messages are pushes: they still arrive.
    let mut r3 = s.connect();
    r3.send(&resp(&[b"HELLO", b"3"]));
    while r3.line() != "*0\r\n" {}
    r3.send(&resp(&[b"CLIENT", b"REPLY", b"OFF"]));
    r3.send(&resp(&[b"SUBSCRIBE", b"ch"]));
    r3.expect(b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    r3.send(&resp(&[b"PING"]));
    assert_eq!(publ.publish::<_, _, i64>("ch", "hi").unwrap(), 1);
    r3.expect(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    r3.send(&resp(&[b"RESET"]));
    r3.send(&resp(&[b"PING"]));
    r3.expect(b"+RESET\r\n+PONG\r\n");
}
