//! Keyspace notifications (`notify-keyspace-events`) through the `redis` crate against a
//! real `cask serve`: the events Redis 7 publishes for each command, masks, `new`,
//! `expired`, the configuration, and that they are off by default.

mod server_common;

use std::time::Duration;

use redis::Value;
use server_common::{Server, conn, wait_blocked};

fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Subscribes `sub` to `pattern`, with a 5 s read timeout.
fn listen<'a>(sub: &'a mut redis::Connection, pattern: &str) -> redis::PubSub<'a> {
    let mut ps = sub.as_pubsub();
    ps.psubscribe(pattern).unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ps
}

/// Runs `commands` on one connection while another listens with PSUBSCRIBE `*`, and
/// returns the (channel, message) pairs it received, in order, until `marker` (a PUBLISH
/// sent last) arrives.
fn events(server: &Server, flags: &str, commands: &[&[&str]]) -> Vec<(String, String)> {
    let mut c = conn(server);
    let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", flags]);
    let mut sub = conn(server);
    let mut ps = listen(&mut sub, "*");
    for cmd in commands {
        let _: Value = q(&mut c, cmd);
    }
    let _: i64 = q(&mut c, &["PUBLISH", "marker", "end"]);
    let mut got = Vec::new();
    loop {
        let m = ps.get_message().expect("an event before the marker");
        let channel = m.get_channel_name().to_string();
        let payload: String = m.get_payload().unwrap();
        if channel == "marker" {
            return got;
        }
        got.push((channel, payload));
    }
}

fn both(db: u8, key: &str, event: &str) -> [(String, String); 2] {
    [
        (format!("__keyspace@{db}__:{key}"), event.to_string()),
        (format!("__keyevent@{db}__:{event}"), key.to_string()),
    ]
}

#[test]
fn write_commands_publish_redis_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let got = events(
        &server,
        "KEA",
        &[
            &["SET", "s", "v", "EX", "100"],
            &["INCR", "n"],
            &["RPUSH", "l", "a", "b"],
            &["LMOVE", "l", "l2", "LEFT", "RIGHT"],
            &["RPOP", "l"],
            &["SADD", "set", "a"],
            &["SADD", "set", "a"], // nothing added: no event
            &["ZADD", "z", "INCR", "1", "m"],
            &["HSET", "h", "f", "1"],
            &["HDEL", "h", "f"],
            &["RENAME", "s", "s2"],
            &["DEL", "s2", "missing", "l2"],
            &["EXPIRE", "n", "0"],
        ],
    );
    let mut want = Vec::new();
    for (key, event) in [
        ("s", "set"),
        ("s", "expire"),
        ("n", "incrby"),
        ("l", "rpush"),
        ("l2", "rpush"),
        ("l", "lpop"),
        ("l", "rpop"),
        ("l", "del"),
        ("set", "sadd"),
        ("z", "zincr"),
        ("h", "hset"),
        ("h", "hdel"),
        ("h", "del"),
        ("s", "rename_from"),
        ("s2", "rename_to"),
        ("s2", "del"),
        ("l2", "del"),
        ("n", "del"),
    ] {
        want.extend(both(0, key, event));
    }
    assert_eq!(got, want);
}

/// Keys named like options (`left`, `min`, `db`, a value `EX`) do not change the events.
#[test]
fn keys_named_like_options_do_not_confuse_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let got = events(
        &server,
        "KA",
        &[
            &["SET", "k", "EX"],
            &["RPUSH", "left", "a", "b"],
            &["LMPOP", "1", "left", "RIGHT"],
            &["ZADD", "min", "1", "a", "2", "b"],
            &["ZMPOP", "1", "min", "MAX"],
            &["SET", "db", "1"],
            &["COPY", "db", "x", "DB", "2"],
        ],
    );
    let ks =
        |db: u8, key: &str, event: &str| (format!("__keyspace@{db}__:{key}"), event.to_string());
    assert_eq!(
        got,
        vec![
            ks(0, "k", "set"),
            ks(0, "left", "rpush"),
            ks(0, "left", "rpop"),
            ks(0, "min", "zadd"),
            ks(0, "min", "zpopmax"),
            ks(0, "db", "set"),
            ks(2, "x", "copy_to"),
        ]
    );
}

#[test]
fn masks_and_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Only list events, only on keyspace channels.
    let got = events(
        &server,
        "Kl",
        &[&["SET", "foo", "bar"], &["LPUSH", "mylist", "a"]],
    );
    assert_eq!(
        got,
        vec![("__keyspace@0__:mylist".to_string(), "lpush".to_string())]
    );
    // `new` only for keys that did not exist, in the database they live in.
    let got = events(
        &server,
        "En",
        &[
            &["SET", "foo", "baz"],
            &["SET", "bar", "1"],
            &["SELECT", "3"],
            &["SET", "bar", "1"],
        ],
    );
    assert_eq!(
        got,
        vec![
            ("__keyevent@0__:new".to_string(), "bar".to_string()),
            ("__keyevent@3__:new".to_string(), "bar".to_string()),
        ]
    );
}

#[test]
fn blocked_pops_publish_the_pop_of_the_key_they_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "Kl"]);
    let mut sub = conn(&server);
    let mut ps = listen(&mut sub, "__keyspace@0__:*");
    let mut blocked = conn(&server);
    let waiter = std::thread::spawn(move || {
        let v: Option<(String, String)> = q(&mut blocked, &["BRPOP", "a", "b", "10"]);
        v
    });
    wait_blocked(&mut c, 1);
    let _: i64 = q(&mut c, &["LPUSH", "b", "x"]);
    assert_eq!(waiter.join().unwrap(), Some(("b".into(), "x".into())));
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = ps.get_message().unwrap();
        got.push(m.get_payload::<String>().unwrap());
    }
    assert_eq!(got, ["lpush", "rpop"]);
}

#[test]
fn expired_keys_are_published_without_being_touched() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "Ex"]);
    let mut sub = conn(&server);
    let mut ps = listen(&mut sub, "*");
    let _: () = q(&mut c, &["PSETEX", "foo", "100", "1"]);
    let _: i64 = q(&mut c, &["RPUSH", "list", "a"]);
    let _: i64 = q(&mut c, &["PEXPIRE", "list", "150"]);
    // A key deleted before its time does not "expire", nor one flushed with its database.
    let _: () = q(&mut c, &["PSETEX", "gone", "100", "1"]);
    let _: i64 = q(&mut c, &["DEL", "gone"]);
    let _: () = q(&mut c, &["SELECT", "5"]);
    let _: () = q(&mut c, &["PSETEX", "flushed", "100", "1"]);
    let _: () = q(&mut c, &["FLUSHDB"]);
    let _: () = q(&mut c, &["SELECT", "0"]);
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = ps.get_message().expect("an expired event");
        got.push((
            m.get_channel_name().to_string(),
            m.get_payload::<String>().unwrap(),
        ));
    }
    assert_eq!(
        got,
        [
            ("__keyevent@0__:expired".to_string(), "foo".to_string()),
            ("__keyevent@0__:expired".to_string(), "list".to_string()),
        ]
    );
    ps.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    assert!(ps.get_message().is_err(), "no event for the deleted key");
}

#[test]
fn configuration_and_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let get = |c: &mut redis::Connection| -> String {
        let v: Vec<String> = q(c, &["CONFIG", "GET", "notify-keyspace-events"]);
        v[1].clone()
    };
    // Off by default: nothing is published.
    assert_eq!(get(&mut c), "");
    assert!(events(&server, "", &[&["SET", "k", "v"], &["DEL", "k"]]).is_empty());
    for (set, shown) in [
        ("gKE", "gKE"),
        ("$lshzxeKE", "$lshzxeKE"),
        ("KA", "AK"),
        ("EA", "AE"),
    ] {
        let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", set]);
        assert_eq!(get(&mut c), shown);
    }
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KEQ")
        .query::<()>(&mut c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Invalid event class character"), "{e}");
    assert_eq!(get(&mut c), "AE");
}

/// Regression: CLIENT REPLY OFF silenced the (P)SUBSCRIBE confirmations, which Redis sends
/// as pushes regardless, so a client subscribing after REPLY OFF waited forever.
#[test]
fn reply_off_does_not_silence_subscribe_confirmations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut raw = server.connect();
    raw.cmd(&[b"CLIENT", b"REPLY", b"OFF"]);
    raw.cmd(&[b"PSUBSCRIBE", b"*"]);
    raw.expect(b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n");
}

/// `m`: a lookup for reading that finds nothing publishes `keymiss`. The commands and
/// which of their keys publish were taken from redis-server 7.0.15 with the same
/// commands: reads (EXISTS and TYPE too), the sources of the *STORE commands, GETSET,
/// SET ... GET and COPY; not writes, OBJECT or MEMORY.
#[test]
fn key_misses_are_published_for_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let got = events(
        &server,
        "KEm",
        &[
            &["SET", "present", "v"],
            &["GET", "r1"],
            &["GET", "present"],
            &["MGET", "r2", "present", "r3"],
            &["EXISTS", "r4"],
            &["TYPE", "r5"],
            &["HGET", "r6", "f"],
            &["SINTER", "r7", "r8"],
            &["OBJECT", "ENCODING", "no1"],
            &["MEMORY", "USAGE", "no2"],
            &["SORT", "r9"],
            &["LPUSH", "no3", "a"],
            &["ZUNIONSTORE", "no4", "2", "r10", "r11"],
            &["SINTERSTORE", "no5", "r12"],
            &["GETSET", "r13", "v"],
            &["SET", "r14", "v", "GET"],
            &["COPY", "r15", "no6"],
            &["SMOVE", "no7", "no8", "m"],
            &["INCR", "no9"],
            &["DEL", "no10"],
            &["LLEN", "r16"],
        ],
    );
    let expected: Vec<(String, String)> = (1..=16)
        .flat_map(|i| both(0, &format!("r{i}"), "keymiss"))
        .collect();
    let misses: Vec<(String, String)> = got
        .iter()
        .filter(|(c, m)| c.ends_with(":keymiss") || m == "keymiss")
        .cloned()
        .collect();
    assert_eq!(misses, expected, "all events: {got:?}");

    // `A` (all classes) does not include `m`, as in Redis.
    let got = events(&server, "KEA", &[&["GET", "missing"], &["SET", "k", "v"]]);
    assert_eq!(got, both(0, "k", "set").to_vec());
}
