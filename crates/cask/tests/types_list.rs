//! List commands through real clients: error texts and null replies (RESP2 and RESP3),
//! blocking pops across connections (wake-up, timeouts, FIFO order, BLMOVE, hang-ups) and
//! 16 clients racing on one list.

mod server_common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::{Commands, RedisResult, Value};
use server_common::{Raw, Server, conn, wait_blocked};

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    (dir, server)
}

fn err_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn q(c: &mut redis::Connection, args: &[&str]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// Waits until INFO reports `n` blocked clients.

#[test]
fn list_commands_and_error_texts() {
    let (_d, s) = start();
    let mut c = conn(&s);
    assert_eq!(c.rpush::<_, _, i64>("l", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(c.lpush::<_, _, i64>("l", &["z", "y"]).unwrap(), 5);
    let all: Vec<String> = c.lrange("l", 0, -1).unwrap();
    assert_eq!(all, ["y", "z", "a", "b", "c"]);
    assert_eq!(
        c.lrange::<_, Vec<String>>("l", -2, 100).unwrap(),
        ["b", "c"]
    );
    assert_eq!(c.lindex::<_, String>("l", -1).unwrap(), "c");
    assert_eq!(c.lindex::<_, Option<String>>("l", 5).unwrap(), None);
    assert_eq!(c.lpush_exists::<_, _, i64>("nope", "x").unwrap(), 0);
    assert!(!c.exists::<_, bool>("nope").unwrap());
    // LSET.
    let _: () = c.lset("l", 1, "Z").unwrap();
    assert!(err_text(c.lset::<_, _, ()>("l", 5, "x")).contains("index out of range"));
    assert!(err_text(c.lset::<_, _, ()>("missing", 0, "x")).contains("no such key"));
    // LINSERT.
    assert_eq!(
        q(&mut c, &["LINSERT", "l", "BEFORE", "a", "n"]).unwrap(),
        Value::Int(6)
    );
    assert_eq!(
        q(&mut c, &["LINSERT", "l", "AFTER", "c", "m"]).unwrap(),
        Value::Int(7)
    );
    assert_eq!(
        q(&mut c, &["LINSERT", "l", "AFTER", "?", "m"]).unwrap(),
        Value::Int(-1)
    );
    assert_eq!(
        q(&mut c, &["LINSERT", "x", "AFTER", "?", "m"]).unwrap(),
        Value::Int(0)
    );
    assert!(err_text(q(&mut c, &["LINSERT", "l", "ASIDE", "a", "m"])).contains("syntax error"));
    let all: Vec<String> = c.lrange("l", 0, -1).unwrap();
    assert_eq!(all, ["y", "Z", "n", "a", "b", "c", "m"]);
    // LPOS.
    let _: i64 = c.rpush("p", &["a", "b", "a", "c", "a"]).unwrap();
    assert_eq!(
        q(&mut c, &["LPOS", "p", "a", "RANK", "-1"]).unwrap(),
        Value::Int(4)
    );
    assert_eq!(
        q(&mut c, &["LPOS", "p", "a", "COUNT", "0", "RANK", "2"]).unwrap(),
        Value::Array(vec![Value::Int(2), Value::Int(4)])
    );
    assert_eq!(
        q(&mut c, &["LPOS", "p", "a", "MAXLEN", "1", "RANK", "2"]).unwrap(),
        Value::Nil
    );
    assert!(err_text(q(&mut c, &["LPOS", "p", "a", "RANK", "0"])).contains("RANK can't be zero"));
    assert!(
        err_text(q(&mut c, &["LPOS", "p", "a", "COUNT", "-1"])).contains("COUNT can't be negative")
    );
    assert!(
        err_text(q(&mut c, &["LPOS", "p", "a", "MAXLEN", "-1"]))
            .contains("MAXLEN can't be negative")
    );
    assert!(
        err_text(q(
            &mut c,
            &["LPOS", "p", "a", "RANK", "-9223372036854775808"]
        ))
        .contains("value is out of range")
    );
    assert!(err_text(q(&mut c, &["LPOS", "p", "a", "COUNT"])).contains("syntax error"));
    // LREM, LTRIM.
    assert_eq!(q(&mut c, &["LREM", "p", "-2", "a"]).unwrap(), Value::Int(2));
    assert_eq!(
        c.lrange::<_, Vec<String>>("p", 0, -1).unwrap(),
        ["a", "b", "c"]
    );
    let _: () = c.ltrim("p", 1, -1).unwrap();
    assert_eq!(c.lrange::<_, Vec<String>>("p", 0, -1).unwrap(), ["b", "c"]);
    let _: () = c.ltrim("p", 5, 10).unwrap();
    assert!(!c.exists::<_, bool>("p").unwrap());
    // LPOP / RPOP with a count.
    assert_eq!(
        q(&mut c, &["LPOP", "l", "0"]).unwrap(),
        Value::Array(vec![])
    );
    assert!(
        err_text(q(&mut c, &["LPOP", "l", "-1"]))
            .contains("value is out of range, must be positive")
    );
    assert_eq!(q(&mut c, &["LPOP", "missing", "2"]).unwrap(), Value::Nil);
    assert_eq!(
        c.rpop::<_, Vec<String>>("l", std::num::NonZeroUsize::new(2))
            .unwrap(),
        ["m", "c"]
    );
    assert!(
        err_text(q(&mut c, &["LPOP", "l", "1", "2"]))
            .contains("wrong number of arguments for 'lpop'")
    );
    // LMOVE / RPOPLPUSH.
    assert_eq!(
        q(&mut c, &["LMOVE", "l", "d", "LEFT", "RIGHT"]).unwrap(),
        Value::BulkString(b"y".to_vec())
    );
    assert_eq!(
        q(&mut c, &["RPOPLPUSH", "l", "d"]).unwrap(),
        Value::BulkString(b"b".to_vec())
    );
    assert_eq!(c.lrange::<_, Vec<String>>("d", 0, -1).unwrap(), ["b", "y"]);
    assert_eq!(
        q(&mut c, &["LMOVE", "missing", "d", "LEFT", "RIGHT"]).unwrap(),
        Value::Nil
    );
    assert!(err_text(q(&mut c, &["LMOVE", "l", "d", "UP", "RIGHT"])).contains("syntax error"));
    let _: () = c.set("s", "str").unwrap();
    assert!(err_text(q(&mut c, &["LMOVE", "l", "s", "LEFT", "RIGHT"])).contains("WRONGTYPE"));
    assert!(err_text(q(&mut c, &["LPUSH", "s", "x"])).contains("WRONGTYPE"));
    assert!(err_text(q(&mut c, &["LRANGE", "s", "0", "-1"])).contains("WRONGTYPE"));
    // A rotation on one key.
    let _: i64 = c.rpush("r", &["1", "2", "3"]).unwrap();
    assert_eq!(
        q(&mut c, &["LMOVE", "r", "r", "LEFT", "RIGHT"]).unwrap(),
        Value::BulkString(b"1".to_vec())
    );
    assert_eq!(
        c.lrange::<_, Vec<String>>("r", 0, -1).unwrap(),
        ["2", "3", "1"]
    );
    // LMPOP.
    assert_eq!(
        q(
            &mut c,
            &["LMPOP", "2", "missing", "r", "RIGHT", "COUNT", "5"]
        )
        .unwrap(),
        Value::Array(vec![
            Value::BulkString(b"r".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"3".to_vec()),
                Value::BulkString(b"2".to_vec()),
            ]),
        ])
    );
    assert_eq!(
        q(&mut c, &["LMPOP", "1", "missing", "LEFT"]).unwrap(),
        Value::Nil
    );
    for (args, want) in [
        (
            &["LMPOP", "0", "a", "LEFT"][..],
            "numkeys should be greater than 0",
        ),
        (
            &["LMPOP", "x", "a", "LEFT"][..],
            "numkeys should be greater than 0",
        ),
        (&["LMPOP", "2", "a", "LEFT"][..], "syntax error"),
        (&["LMPOP", "1", "a", "UP"][..], "syntax error"),
        (
            &["LMPOP", "1", "a", "LEFT", "COUNT", "0"][..],
            "count should be greater than 0",
        ),
        (
            &["LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "2"][..],
            "syntax error",
        ),
        (
            &["BLMPOP", "0", "0", "a", "LEFT"][..],
            "numkeys should be greater than 0",
        ),
        (&["BLPOP", "a", "-1"][..], "timeout is negative"),
        (
            &["BLPOP", "a", "x"][..],
            "timeout is not a float or out of range",
        ),
        (
            &["BLPOP", "a", "0x7FFFFFFFFFFFFF"][..],
            "timeout is out of range",
        ),
    ] {
        assert!(err_text(q(&mut c, args)).contains(want), "{args:?}");
    }
    assert!(err_text(q(&mut c, &["LINDEX", "d", "x"])).contains("value is not an integer"));
}

#[test]
fn null_replies_follow_the_protocol() {
    let (_d, s) = start();
    let mut r = s.connect();
    r.cmd(&[b"LPOP", b"none"]);
    r.expect(b"$-1\r\n");
    r.cmd(&[b"LPOP", b"none", b"2"]);
    r.expect(b"*-1\r\n");
    r.cmd(&[b"LMPOP", b"1", b"none", b"LEFT"]);
    r.expect(b"*-1\r\n");
    r.cmd(&[b"BLPOP", b"none", b"0.01"]);
    r.expect(b"*-1\r\n");
    r.cmd(&[b"HELLO", b"3"]);
    r.cmd(&[b"PING"]);
    while r.line() != "+PONG\r\n" {}
    r.cmd(&[b"LPOP", b"none"]);
    r.expect(b"_\r\n");
    r.cmd(&[b"LPOP", b"none", b"2"]);
    r.expect(b"_\r\n");
    r.cmd(&[b"LINDEX", b"none", b"0"]);
    r.expect(b"_\r\n");
    r.cmd(&[b"BRPOPLPUSH", b"none", b"x", b"0.01"]);
    r.expect(b"_\r\n");
}

#[test]
fn blpop_is_woken_by_a_push_from_another_client() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let url = s.url();
    let waiter = std::thread::spawn(move || {
        let mut b = redis::Client::open(url).unwrap().get_connection().unwrap();
        let t = Instant::now();
        let got: (String, String) = redis::cmd("BLPOP")
            .arg("a")
            .arg("q")
            .arg(0)
            .query(&mut b)
            .unwrap();
        (got, t.elapsed())
    });
    wait_blocked(&mut c, 1);
    std::thread::sleep(Duration::from_millis(100));
    let _: i64 = c.rpush("q", "job").unwrap();
    let (got, waited) = waiter.join().unwrap();
    assert_eq!(got, ("q".to_string(), "job".to_string()));
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(!c.exists::<_, bool>("q").unwrap(), "the element was popped");
    wait_blocked(&mut c, 0);
}

#[test]
fn blocking_timeouts() {
    let (_d, s) = start();
    let mut c = conn(&s);
    for args in [
        &["BLPOP", "x", "y", "0.3"][..],
        &["BRPOP", "x", "0.3"][..],
        &["BLMOVE", "x", "y", "LEFT", "RIGHT", "0.3"][..],
        &["BRPOPLPUSH", "x", "y", "0.3"][..],
        &["BLMPOP", "0.3", "2", "x", "y", "LEFT"][..],
    ] {
        let t = Instant::now();
        assert_eq!(q(&mut c, args).unwrap(), Value::Nil, "{args:?}");
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(300), "{args:?}: {waited:?}");
        assert!(waited < Duration::from_secs(5), "{args:?}: {waited:?}");
    }
    // Non-empty: no wait at all, and the reply shapes.
    let _: i64 = c.rpush("x", &["1", "2", "3"]).unwrap();
    assert_eq!(
        q(&mut c, &["BRPOP", "none", "x", "0"]).unwrap(),
        Value::Array(vec![
            Value::BulkString(b"x".to_vec()),
            Value::BulkString(b"3".to_vec())
        ])
    );
    assert_eq!(
        q(&mut c, &["BLMPOP", "0", "1", "x", "LEFT", "COUNT", "9"]).unwrap(),
        Value::Array(vec![
            Value::BulkString(b"x".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"2".to_vec())
            ]),
        ])
    );
    wait_blocked(&mut c, 0);
}

/// Starts a raw client blocked with `args`, and waits until the server counts it.
fn block_raw(s: &Server, c: &mut redis::Connection, args: &[&[u8]], blocked: usize) -> Raw {
    let mut r = s.connect();
    r.cmd(args);
    wait_blocked(c, blocked);
    r
}

#[test]
fn blocked_clients_are_served_in_arrival_order() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let mut clients: Vec<Raw> = (1..=3)
        .map(|n| block_raw(&s, &mut c, &[b"BLPOP", b"fifo", b"0"], n))
        .collect();
    // One push of three elements, then three separate pushes: first come, first served.
    let _: i64 = c.rpush("fifo", &["a", "b", "c"]).unwrap();
    for (r, want) in clients.iter_mut().zip(["a", "b", "c"]) {
        r.expect(format!("*2\r\n$4\r\nfifo\r\n$1\r\n{want}\r\n").as_bytes());
    }
    wait_blocked(&mut c, 0);
    for (n, r) in clients.iter_mut().enumerate() {
        r.cmd(&[b"BRPOP", b"fifo", b"0"]);
        wait_blocked(&mut c, n + 1);
    }
    for v in ["d", "e", "f"] {
        let _: i64 = c.lpush("fifo", v).unwrap();
    }
    for (r, want) in clients.iter_mut().zip(["d", "e", "f"]) {
        r.expect(format!("*2\r\n$4\r\nfifo\r\n$1\r\n{want}\r\n").as_bytes());
    }
    assert!(!c.exists::<_, bool>("fifo").unwrap());
}

#[test]
fn blmove_is_woken_and_moves_the_element() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let mut r = block_raw(
        &s,
        &mut c,
        &[b"BLMOVE", b"src", b"dst", b"RIGHT", b"LEFT", b"0"],
        1,
    );
    let _: i64 = c.rpush("dst", "old").unwrap();
    let _: i64 = c.rpush("src", &["x", "y"]).unwrap();
    r.expect(b"$1\r\ny\r\n");
    assert_eq!(c.lrange::<_, Vec<String>>("src", 0, -1).unwrap(), ["x"]);
    assert_eq!(
        c.lrange::<_, Vec<String>>("dst", 0, -1).unwrap(),
        ["y", "old"]
    );
    // BRPOPLPUSH onto itself from a second client.
    let mut r2 = block_raw(&s, &mut c, &[b"BRPOPLPUSH", b"e", b"e", b"0"], 1);
    let _: i64 = c.rpush("e", &["1", "2"]).unwrap();
    r2.expect(b"$1\r\n2\r\n");
    assert_eq!(c.lrange::<_, Vec<String>>("e", 0, -1).unwrap(), ["2", "1"]);
}

#[test]
fn a_blocked_client_that_hangs_up_takes_nothing() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let gone = block_raw(&s, &mut c, &[b"BLPOP", b"k", b"0"], 1);
    let mut next = block_raw(&s, &mut c, &[b"BLPOP", b"k", b"0"], 2);
    drop(gone);
    wait_blocked(&mut c, 1);
    let _: i64 = c.rpush("k", &["one", "two"]).unwrap();
    next.expect(b"*2\r\n$1\r\nk\r\n$3\r\none\r\n");
    assert_eq!(c.lrange::<_, Vec<String>>("k", 0, -1).unwrap(), ["two"]);
    // Alone: the element stays.
    let _: i64 = c.del("k").unwrap();
    let gone = block_raw(&s, &mut c, &[b"BLPOP", b"k", b"0"], 1);
    drop(gone);
    wait_blocked(&mut c, 0);
    let _: i64 = c.rpush("k", "kept").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c.lrange::<_, Vec<String>>("k", 0, -1).unwrap(), ["kept"]);
}

#[test]
fn sixteen_clients_racing_push_and_pop_lose_nothing() {
    let (_d, s) = start();
    let per = 300;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let url = s.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut popped = Vec::new();
                for i in 0..per {
                    let _: i64 = c.lpush("race", format!("{t}-{i}")).unwrap();
                    if i % 2 == 1
                        && let Some(v) = c.rpop::<_, Option<String>>("race", None).unwrap()
                    {
                        popped.push(v);
                    }
                }
                popped
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in threads {
        for v in t.join().unwrap() {
            assert!(seen.insert(v.clone()), "{v} popped twice");
        }
    }
    let mut c = conn(&s);
    let rest: Vec<String> = c.lrange("race", 0, -1).unwrap();
    assert_eq!(c.llen::<_, usize>("race").unwrap(), rest.len());
    for v in rest {
        assert!(seen.insert(v.clone()), "{v} both popped and left");
    }
    assert_eq!(seen.len(), 16 * per);
}

#[test]
fn config_set_of_a_fixed_parameter_to_its_value_is_a_no_op() {
    // Redis's test suite starts every server with CONFIG SET save "".
    let (_d, s) = start();
    let mut c = conn(&s);
    assert_eq!(
        q(&mut c, &["CONFIG", "SET", "save", ""]).unwrap(),
        Value::Okay
    );
    assert!(err_text(q(&mut c, &["CONFIG", "SET", "save", "900 1"])).contains("immutable config"));
    assert!(err_text(q(&mut c, &["CONFIG", "SET", "databases", "3"])).contains("immutable config"));
}

#[test]
fn a_blocked_client_is_not_served_by_a_key_of_another_type() {
    // As in Redis: a wake-up by a key that now holds a string leaves the client blocked
    // (a blocked client is only served from a list), it does not get WRONGTYPE.
    let (_d, s) = start();
    let mut c = conn(&s);
    let mut r = block_raw(&s, &mut c, &[b"BLPOP", b"k", b"0"], 1);
    let mut m = block_raw(
        &s,
        &mut c,
        &[b"BLMOVE", b"k", b"dst", b"LEFT", b"LEFT", b"0"],
        2,
    );
    let _: () = c.set("tmp", "str").unwrap();
    let _: () = c.rename("tmp", "k").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    wait_blocked(&mut c, 2);
    let _: i64 = c.del("k").unwrap();
    let _: i64 = c.rpush("k", &["b", "c"]).unwrap();
    r.expect(b"*2\r\n$1\r\nk\r\n$1\r\nb\r\n");
    m.expect(b"$1\r\nc\r\n");
    // The first attempt still refuses a key of the wrong type at once.
    let _: () = c.set("str", "x").unwrap();
    assert!(err_text(q(&mut c, &["BLPOP", "str", "0"])).contains("WRONGTYPE"));
    assert!(
        err_text(q(&mut c, &["BLMOVE", "str", "d", "LEFT", "LEFT", "0"])).contains("WRONGTYPE")
    );
}

#[test]
fn fairness_is_kept_against_a_pipelined_push_and_blocking_pop() {
    // Redis's "Unblock fairness is kept while pipelining": the client that blocked first
    // gets the element even though the pusher's own BLPOP runs right after its push.
    let (_d, s) = start();
    let mut c = conn(&s);
    let mut first = block_raw(&s, &mut c, &[b"BLPOP", b"mylist", b"0"], 1);
    let mut pusher = s.connect();
    let mut both = server_common::resp(&[b"LPUSH", b"mylist", b"1"]);
    both.extend(server_common::resp(&[b"BLPOP", b"mylist", b"0"]));
    pusher.send(&both);
    first.expect(b"*2\r\n$6\r\nmylist\r\n$1\r\n1\r\n");
    pusher.expect(b":1\r\n");
    wait_blocked(&mut c, 1);
    let _: i64 = c.lpush("mylist", "2").unwrap();
    pusher.expect(b"*2\r\n$6\r\nmylist\r\n$1\r\n2\r\n");
    wait_blocked(&mut c, 0);
}

/// CLIENT UNBLOCK (Redis suite: "client unblock tests", which failed with an unknown
/// subcommand): ends a blocked command as a timeout or with `-UNBLOCKED`, answers 0 for a
/// client that is not blocked, and leaves the client usable.
#[test]
fn client_unblock_ends_a_blocking_command() {
    let (_d, s) = start();
    let mut c = conn(&s);
    let mut r = s.connect();
    r.cmd(&[b"CLIENT", b"ID"]);
    let id = r.line().trim_start_matches(':').trim_end().to_string();
    for (how, reply) in [
        (None, &b"*-1\r\n"[..]),
        (Some("TIMEOUT"), b"*-1\r\n"),
        (
            Some("ERROR"),
            b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        r.cmd(&[b"BLPOP", b"l", b"0"]);
        wait_blocked(&mut c, 1);
        let mut args = vec!["CLIENT", "UNBLOCK", id.as_str()];
        args.extend(how);
        assert_eq!(q(&mut c, &args).unwrap(), Value::Int(1), "{how:?}");
        r.expect(reply);
        wait_blocked(&mut c, 0);
    }
    // Not blocked: 0, and nothing is left armed for the next blocking command.
    assert_eq!(
        q(&mut c, &["CLIENT", "UNBLOCK", &id]).unwrap(),
        Value::Int(0)
    );
    assert!(err_text(q(&mut c, &["CLIENT", "UNBLOCK", "asd"])).contains("not an integer"));
    assert!(err_text(q(&mut c, &["CLIENT", "UNBLOCK", &id, "LATER"])).contains("TIMEOUT or ERROR"));
    r.cmd(&[b"BLPOP", b"l", b"0"]);
    wait_blocked(&mut c, 1);
    let _: i64 = c.lpush("l", "foo").unwrap();
    r.expect(b"*2\r\n$1\r\nl\r\n$3\r\nfoo\r\n");
}
