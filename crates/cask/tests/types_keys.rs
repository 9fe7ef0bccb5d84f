//! The keyspace commands (TYPE, OBJECT ENCODING, DEL, EXISTS, EXPIRE*, RENAME, COPY, MOVE,
//! SCAN TYPE, KEYS, DBSIZE) on every type, through the `redis` crate.

mod server_common;

use std::collections::BTreeSet;
use std::time::Duration;

use redis::Value;
use server_common::{Server, conn};

fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Creates one key of each type, named after it, with three elements.
fn populate(con: &mut redis::Connection, suffix: &str) {
    let _: () = q(con, &["SET", &format!("string{suffix}"), "v"]);
    let _: i64 = q(
        con,
        &[
            "HSET",
            &format!("hash{suffix}"),
            "a",
            "1",
            "b",
            "2",
            "c",
            "3",
        ],
    );
    let _: i64 = q(con, &["RPUSH", &format!("list{suffix}"), "a", "b", "c"]);
    let _: i64 = q(con, &["SADD", &format!("set{suffix}"), "a", "b", "c"]);
    let _: i64 = q(
        con,
        &[
            "ZADD",
            &format!("zset{suffix}"),
            "1",
            "a",
            "2",
            "b",
            "3",
            "c",
        ],
    );
}

/// The contents of a key of any type, as a sorted list of strings.
fn contents(con: &mut redis::Connection, key: &str) -> Vec<String> {
    let t: String = q(con, &["TYPE", key]);
    let mut v: Vec<String> = match t.as_str() {
        "none" => vec![],
        "string" => vec![q(con, &["GET", key])],
        "hash" => q(con, &["HGETALL", key]),
        "list" => q(con, &["LRANGE", key, "0", "-1"]),
        "set" => q(con, &["SMEMBERS", key]),
        "zset" => q(con, &["ZRANGE", key, "0", "-1", "WITHSCORES"]),
        other => panic!("unknown type {other}"),
    };
    if t != "list" && t != "zset" {
        v.sort();
    }
    v
}

const TYPES: [&str; 5] = ["string", "hash", "list", "set", "zset"];

#[test]
fn keyspace_commands_cover_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let mut con = conn(&s);
    populate(&mut con, "");
    for t in TYPES {
        assert_eq!(q::<String>(&mut con, &["TYPE", t]), t);
        assert_eq!(q::<i64>(&mut con, &["EXISTS", t]), 1);
        let enc: String = q(&mut con, &["OBJECT", "ENCODING", t]);
        assert!(!enc.is_empty());
    }
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 5);
    let mut keys: Vec<String> = q(&mut con, &["KEYS", "*"]);
    keys.sort();
    assert_eq!(keys, vec!["hash", "list", "set", "string", "zset"]);
    for t in TYPES {
        let Value::Array(reply) = q::<Value>(&mut con, &["SCAN", "0", "COUNT", "100", "TYPE", t])
        else {
            panic!("SCAN reply")
        };
        let found: Vec<String> = redis::from_redis_value(reply[1].clone()).unwrap();
        assert_eq!(found, vec![t.to_string()], "SCAN TYPE {t}");
    }
    // Wrong types are refused with WRONGTYPE and change nothing.
    let err = redis::cmd("HSET")
        .arg("list")
        .arg("f")
        .arg("v")
        .query::<i64>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let err = redis::cmd("GET")
        .arg("set")
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");

    // EXPIRE / TTL / PERSIST keep the contents.
    for t in TYPES {
        let before = contents(&mut con, t);
        assert_eq!(q::<i64>(&mut con, &["EXPIRE", t, "100"]), 1);
        let ttl: i64 = q(&mut con, &["TTL", t]);
        assert!((99..=100).contains(&ttl), "{t}: ttl {ttl}");
        assert_eq!(q::<i64>(&mut con, &["PERSIST", t]), 1);
        assert_eq!(q::<i64>(&mut con, &["TTL", t]), -1);
        assert_eq!(contents(&mut con, t), before, "{t} after EXPIRE/PERSIST");
    }

    // COPY, RENAME and MOVE carry every element (and the TTL).
    for t in TYPES {
        let before = contents(&mut con, t);
        let _: i64 = q(&mut con, &["PEXPIRE", t, "100000"]);
        assert_eq!(q::<i64>(&mut con, &["COPY", t, &format!("{t}-copy")]), 1);
        let _: () = q(&mut con, &["RENAME", t, &format!("{t}-renamed")]);
        assert_eq!(q::<i64>(&mut con, &["EXISTS", t]), 0);
        assert_eq!(
            contents(&mut con, &format!("{t}-renamed")),
            before,
            "{t} renamed"
        );
        assert_eq!(
            contents(&mut con, &format!("{t}-copy")),
            before,
            "{t} copied"
        );
        assert!(q::<i64>(&mut con, &["PTTL", &format!("{t}-renamed")]) > 0);
        assert_eq!(q::<i64>(&mut con, &["MOVE", &format!("{t}-copy"), "1"]), 1);
        let _: () = q(&mut con, &["SELECT", "1"]);
        assert_eq!(
            contents(&mut con, &format!("{t}-copy")),
            before,
            "{t} moved"
        );
        let _: () = q(&mut con, &["SELECT", "0"]);
        // Changing the copy leaves the original alone.
        let _: i64 = q(&mut con, &["DEL", &format!("{t}-renamed")]);
        let _: () = q(&mut con, &["SELECT", "1"]);
        assert_eq!(
            contents(&mut con, &format!("{t}-copy")),
            before,
            "{t} copy alone"
        );
        let _: () = q(&mut con, &["SELECT", "0"]);
    }
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
}

#[test]
fn deleted_expired_or_overwritten_collections_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &["--sync", "always"]);
    let mut con = conn(&s);
    // Big enough that a leak would show, small enough to be quick.
    let n = 2_000;
    let mut fields = vec!["HSET".to_string(), "h".into()];
    let mut members = vec!["SADD".to_string(), "s".into()];
    for i in 0..n {
        fields.push(format!("old{i}"));
        fields.push("v".into());
        members.push(format!("old{i}"));
    }
    let args: Vec<&str> = fields.iter().map(String::as_str).collect();
    let _: i64 = q(&mut con, &args);
    let args: Vec<&str> = members.iter().map(String::as_str).collect();
    let _: i64 = q(&mut con, &args);
    let _: i64 = q(&mut con, &["RPUSH", "l", "old1", "old2"]);
    let _: i64 = q(&mut con, &["ZADD", "z", "1", "old1"]);

    let _: i64 = q(&mut con, &["DEL", "h"]);
    let _: () = q(&mut con, &["SET", "s", "now a string"]);
    let _: i64 = q(&mut con, &["PEXPIRE", "l", "1"]);
    let _: i64 = q(&mut con, &["EXPIRE", "z", "0"]);
    std::thread::sleep(Duration::from_millis(20));
    let _: i64 = q(&mut con, &["DEL", "s"]);
    for key in ["h", "s", "l", "z"] {
        assert_eq!(q::<String>(&mut con, &["TYPE", key]), "none", "{key}");
    }
    let _: i64 = q(&mut con, &["HSET", "h", "new", "v"]);
    let _: i64 = q(&mut con, &["SADD", "s", "new"]);
    let _: i64 = q(&mut con, &["RPUSH", "l", "new"]);
    let _: i64 = q(&mut con, &["ZADD", "z", "2", "new"]);
    let check = |con: &mut redis::Connection| {
        assert_eq!(contents(con, "h"), vec!["new", "v"]);
        assert_eq!(contents(con, "s"), vec!["new"]);
        assert_eq!(contents(con, "l"), vec!["new"]);
        assert_eq!(contents(con, "z"), vec!["new", "2"]);
        assert_eq!(q::<i64>(con, &["HLEN", "h"]), 1);
        assert_eq!(q::<i64>(con, &["SCARD", "s"]), 1);
    };
    check(&mut con);
    // And after a crash.
    s.signal("KILL");
    s.wait(Duration::from_secs(10));
    let s = Server::start(dir.path(), &[]);
    let mut con = conn(&s);
    check(&mut con);
    let all: BTreeSet<String> = q::<Vec<String>>(&mut con, &["KEYS", "*"])
        .into_iter()
        .collect();
    assert_eq!(all, ["h", "l", "s", "z"].map(String::from).into());
}
