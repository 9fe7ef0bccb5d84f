//! Sorted sets through real clients: blocking pops woken from other connections, per-key
//! serialization under concurrent ZINCRBY, reply shapes in RESP2 and RESP3, and the error
//! texts Redis users (and Redis's own test suite) rely on.

mod server_common;

use std::time::{Duration, Instant};

use redis::Value;
use server_common::{Server, conn};

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    (dir, server)
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let r: redis::RedisResult<Value> = cmd.query(c);
    match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
    }
}

#[test]
fn bzpopmin_is_woken_by_another_connection() {
    let (_d, s) = start();
    let url = s.url();
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let t = Instant::now();
        let v: Vec<String> = redis::cmd("BZPOPMIN")
            .arg("nothing")
            .arg("q")
            .arg(10)
            .query(&mut c)
            .unwrap();
        (v, t.elapsed())
    });
    let mut c = conn(&s);
    // Wait until the client is blocked, then feed it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
        if info.contains("blocked_clients:1") {
            break;
        }
        assert!(Instant::now() < deadline, "client never blocked: {info}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _: i64 = redis::cmd("ZADD")
        .arg("q")
        .arg(2)
        .arg("b")
        .arg(1)
        .arg("a")
        .query(&mut c)
        .unwrap();
    let (v, waited) = waiter.join().unwrap();
    assert_eq!(v, vec!["q", "a", "1"]);
    assert!(waited < Duration::from_secs(5), "woken late: {waited:?}");
    // The lowest was taken, the other stays.
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(left, vec!["b"]);
    // BZPOPMAX and BZMPOP serve at once when there is something, time out otherwise.
    let v: Vec<String> = redis::cmd("BZPOPMAX")
        .arg("q")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec!["q", "b", "2"]);
    let t = Instant::now();
    let v: Value = redis::cmd("BZMPOP")
        .arg(0.1)
        .arg(1)
        .arg("q")
        .arg("MIN")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Nil);
    assert!(t.elapsed() >= Duration::from_millis(90));
}

#[test]
fn blocked_clients_are_served_in_order_across_keys() {
    let (_d, s) = start();
    let mut handles = Vec::new();
    let mut c = conn(&s);
    for i in 0..3 {
        let url = s.url();
        handles.push(std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let v: Value = redis::cmd("BZMPOP")
                .arg(10)
                .arg(2)
                .arg("k1")
                .arg("k2")
                .arg("MAX")
                .arg("COUNT")
                .arg(2)
                .query(&mut c)
                .unwrap();
            (i, v)
        }));
        // Let each one block before the next, so the order is known.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
            if info.contains(&format!("blocked_clients:{}", i + 1)) {
                break;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Six members on k2: each client takes the two highest left.
    let _: i64 = redis::cmd("ZADD")
        .arg("k2")
        .arg(&[1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6].map(|x| x.to_string()))
        .query(&mut c)
        .unwrap();
    let mut got: Vec<(i32, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort_by_key(|g| g.0);
    let pair = |m: &str| {
        Value::Array(vec![
            Value::BulkString(m.as_bytes().to_vec()),
            Value::BulkString(m.as_bytes().to_vec()),
        ])
    };
    let want = |a: &str, b: &str| {
        Value::Array(vec![
            Value::BulkString(b"k2".to_vec()),
            Value::Array(vec![pair(a), pair(b)]),
        ])
    };
    assert_eq!(got[0].1, want("6", "5"));
    assert_eq!(got[1].1, want("4", "3"));
    assert_eq!(got[2].1, want("2", "1"));
    let n: i64 = redis::cmd("EXISTS").arg("k2").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn concurrent_zincrby_loses_nothing() {
    let (_d, s) = start();
    let clients = 16;
    let per = 200;
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let url = s.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for j in 0..per {
                    // Everyone hits "hot"; each also has a member of its own, and ZADD/ZREM
                    // churn on the same key moves the index under the increments.
                    let _: String = redis::cmd("ZINCRBY")
                        .arg("z")
                        .arg(1)
                        .arg("hot")
                        .query(&mut c)
                        .unwrap();
                    let _: String = redis::cmd("ZINCRBY")
                        .arg("z")
                        .arg(0.5)
                        .arg(format!("c{i}"))
                        .query(&mut c)
                        .unwrap();
                    let _: i64 = redis::cmd("ZADD")
                        .arg("z")
                        .arg(j)
                        .arg(format!("tmp{i}"))
                        .query(&mut c)
                        .unwrap();
                    let _: i64 = redis::cmd("ZREM")
                        .arg("z")
                        .arg(format!("tmp{i}"))
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut c = conn(&s);
    let hot: f64 = redis::cmd("ZSCORE")
        .arg("z")
        .arg("hot")
        .query(&mut c)
        .unwrap();
    assert_eq!(hot, f64::from(clients * per));
    for i in 0..clients {
        let v: f64 = redis::cmd("ZSCORE")
            .arg("z")
            .arg(format!("c{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, f64::from(per) * 0.5, "c{i}");
    }
    // Count and index agree: exactly hot + one member per client.
    let n: i64 = redis::cmd("ZCARD").arg("z").query(&mut c).unwrap();
    assert_eq!(n, i64::from(clients) + 1);
    let all: Vec<String> = redis::cmd("ZRANGE")
        .arg("z")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(all.len() as i64, n);
    assert_eq!(all.last().map(String::as_str), Some("hot"));
}

#[test]
fn scores_and_reply_shapes_follow_redis() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let _: i64 = redis::cmd("ZADD")
        .arg("z")
        .arg(&["1.5", "a", "3", "b", "1e20", "c", "-inf", "d", "0.1", "e"])
        .query(&mut c)
        .unwrap();
    let v: Vec<String> = redis::cmd("ZRANGE")
        .arg("z")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        v,
        ["d", "-inf", "e", "0.1", "a", "1.5", "b", "3", "c", "1e+20"].map(String::from)
    );
    let inc: String = redis::cmd("ZINCRBY")
        .arg("z")
        .arg("2.5")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(inc, "4");
    // RESP3: doubles, and pairs for WITHSCORES.
    let mut raw = s.connect();
    raw.send(b"HELLO 3\r\nECHO end-of-hello\r\n");
    while raw.line() != "end-of-hello\r\n" {}
    raw.send(b"ZSCORE z e\r\n");
    raw.expect(b",0.1\r\n");
    raw.send(b"ZRANGE z 0 1 WITHSCORES\r\n");
    raw.expect(b"*2\r\n*2\r\n$1\r\nd\r\n,-inf\r\n*2\r\n$1\r\ne\r\n,0.1\r\n");
    raw.send(b"ZPOPMIN z\r\n");
    raw.expect(b"*2\r\n$1\r\nd\r\n,-inf\r\n");
    raw.send(b"ZPOPMIN z 1\r\n");
    raw.expect(b"*1\r\n*2\r\n$1\r\ne\r\n,0.1\r\n");
    raw.send(b"ZRANK z nope WITHSCORE\r\n");
    raw.expect(b"_\r\n");
    // RESP2: ZRANK WITHSCORE, ZMSCORE with a missing member.
    let v: Value = redis::cmd("ZREVRANK")
        .arg("z")
        .arg("c")
        .arg("WITHSCORE")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        v,
        Value::Array(vec![Value::Int(0), Value::BulkString(b"1e+20".to_vec())])
    );
    let v: Vec<Option<String>> = redis::cmd("ZMSCORE")
        .arg("z")
        .arg("b")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec![Some("3".to_string()), None]);
}

#[test]
fn errors_use_redis_texts() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let _: i64 = redis::cmd("ZADD")
        .arg("z")
        .arg(1)
        .arg("a")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET").arg("str").arg("x").query(&mut c).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["ZADD", "z", "XX", "NX", "1", "a"],
            "XX and NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "GT", "LT", "1", "a"],
            "GT, LT, and/or NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "NX", "GT", "1", "a"],
            "GT, LT, and/or NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "INCR", "1", "a", "2", "b"],
            "INCR option supports a single increment-element pair",
        ),
        (&["ZADD", "z", "1", "a", "2"], "syntax error"),
        (&["ZADD", "z", "nan", "a"], "not a valid float"),
        (&["ZADD", "str", "1", "a"], "WRONGTYPE"),
        (
            &["ZRANGEBYSCORE", "z", "x", "1"],
            "min or max is not a float",
        ),
        (
            &["ZRANGEBYLEX", "z", "a", "+"],
            "min or max not valid string range item",
        ),
        (
            &["ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"],
            "LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ),
        (
            &["ZRANGE", "z", "-", "+", "BYLEX", "WITHSCORES"],
            "WITHSCORES not supported in combination with BYLEX",
        ),
        (
            &["ZRANGESTORE", "d", "z", "0", "-1", "WITHSCORES"],
            "syntax error",
        ),
        (&["ZREVRANGE", "z", "0", "-1", "BYSCORE"], "syntax error"),
        (
            &["ZUNIONSTORE", "d", "0", "z"],
            "at least 1 input key is needed for 'zunionstore' command",
        ),
        (
            &["ZINTERCARD", "1", "z", "LIMIT", "-1"],
            "LIMIT can't be negative",
        ),
        (
            &["ZUNION", "2", "z", "z", "WEIGHTS", "1", "x"],
            "weight value is not a float",
        ),
        (&["ZUNION", "1", "z", "AGGREGATE", "avg"], "syntax error"),
        (&["ZDIFF", "1", "z", "WEIGHTS", "1"], "syntax error"),
        (
            &["ZMPOP", "0", "z", "MIN"],
            "numkeys should be greater than 0",
        ),
        (
            &["ZMPOP", "1", "z", "MIN", "COUNT", "0"],
            "count should be greater than 0",
        ),
        (
            &["ZPOPMIN", "z", "-1"],
            "value is out of range, must be positive",
        ),
        (&["BZPOPMIN", "z", "-1"], "timeout is negative"),
        (
            &["ZRANDMEMBER", "z", "-9223372036854775808"],
            "value is out of range",
        ),
        (
            &["ZRANDMEMBER", "z", "-9223372036854770000", "WITHSCORES"],
            "value is out of range",
        ),
        (&["ZSCAN", "z", "abc"], "invalid cursor"),
    ];
    for (args, want) in cases {
        let e = err(&mut c, args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // inf + -inf is NaN: refused, nothing changed.
    let _: String = redis::cmd("ZINCRBY")
        .arg("z")
        .arg("inf")
        .arg("a")
        .query(&mut c)
        .unwrap();
    let e = err(&mut c, &["ZINCRBY", "z", "-inf", "a"]);
    assert!(e.contains("resulting score is not a number (NaN)"), "{e}");
    let v: String = redis::cmd("ZSCORE")
        .arg("z")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "inf");
}

#[test]
fn zrandmember_and_zscan_cover_big_sets() {
    let (_d, s) = start();
    let mut c = conn(&s);
    // Big enough to take the probing path of ZRANDMEMBER.
    let n = 6000;
    let mut cmd = redis::cmd("ZADD");
    cmd.arg("big");
    for i in 0..n {
        cmd.arg(i).arg(format!("member:{i:05}"));
    }
    let added: i64 = cmd.query(&mut c).unwrap();
    assert_eq!(added, n);
    let picks: Vec<String> = redis::cmd("ZRANDMEMBER")
        .arg("big")
        .arg(500)
        .query(&mut c)
        .unwrap();
    let distinct: std::collections::HashSet<&String> = picks.iter().collect();
    assert_eq!(
        distinct.len(),
        500,
        "ZRANDMEMBER positive count must be distinct"
    );
    assert!(picks.iter().all(|p| p.starts_with("member:")));
    let picks: Vec<String> = redis::cmd("ZRANDMEMBER")
        .arg("big")
        .arg(-2000)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(picks.len(), 4000);
    for p in picks.chunks(2) {
        let i: i64 = p[0]["member:".len()..].parse().unwrap();
        assert_eq!(p[1], i.to_string(), "score of {}", p[0]);
    }
    // Spread: 2000 uniform draws over 6000 members give ~1700 distinct ones (a probe that
    // ignored the digits' byte range once gave 46).
    let distinct: std::collections::HashSet<&[String]> = picks.chunks(2).collect();
    assert!(distinct.len() > 1300, "only {} distinct", distinct.len());
    // ZSCAN visits every member exactly once when nothing changes.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, items): (String, Vec<String>) = redis::cmd("ZSCAN")
            .arg("big")
            .arg(&cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut c)
            .unwrap();
        for p in items.chunks(2) {
            assert!(seen.insert(p[0].clone()), "{} twice", p[0]);
        }
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len() as i64, n);
    let (next, items): (String, Vec<String>) = redis::cmd("ZSCAN")
        .arg("big")
        .arg(0)
        .arg("MATCH")
        .arg("member:0001?")
        .arg("COUNT")
        .arg(100_000)
        .query(&mut c)
        .unwrap();
    assert_eq!(next, "0");
    assert_eq!(items.len(), 20);
    // Ranks from either end of a big set.
    let r: i64 = redis::cmd("ZRANK")
        .arg("big")
        .arg("member:05990")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, 5990);
    let r: i64 = redis::cmd("ZREVRANK")
        .arg("big")
        .arg("member:00010")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, n - 11);
    let v: Vec<String> = redis::cmd("ZRANGE")
        .arg("big")
        .arg(-2)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec!["member:05998", "member:05999"]);
}

/// Regression (Redis suite "BZPOPMIN, ZADD + DEL + SET should not awake blocked client"): a
/// blocked client woken by a key that ends up holding a string keeps waiting and times
/// out, instead of getting WRONGTYPE.
#[test]
fn blocked_pop_ignores_a_key_that_became_a_string() {
    let (_d, s) = start();
    let mut blocked = conn(&s);
    let mut other = conn(&s);
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let reply: redis::RedisResult<Value> =
            redis::cmd("BZPOPMIN").arg("z").arg(1.0).query(&mut blocked);
        (reply, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let reply: Value = redis::pipe()
        .atomic()
        .cmd("ZADD")
        .arg("z")
        .arg(1)
        .arg("a")
        .cmd("DEL")
        .arg("z")
        .cmd("SET")
        .arg("z")
        .arg("foo")
        .query(&mut other)
        .unwrap();
    assert!(matches!(reply, Value::Array(_)), "{reply:?}");
    let (reply, waited) = waiter.join().unwrap();
    assert_eq!(reply.unwrap(), Value::Nil, "timed out with a null reply");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}
