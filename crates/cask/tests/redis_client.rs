//! End-to-end tests with a real client library (the `redis` crate).

mod server_common;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use redis::{Commands, RedisResult, Value};
use server_common::Server;

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

#[test]
fn string_commands() {
    let (_d, s) = start(&[]);
    let mut c = conn(&s);
    let _: () = c.set("k", "hello").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "hello");
    assert_eq!(c.append::<_, _, i64>("k", " world").unwrap(), 11);
    assert_eq!(c.strlen::<_, i64>("k").unwrap(), 11);
    assert_eq!(c.getrange::<_, String>("k", 0, 4).unwrap(), "hello");
    assert_eq!(c.getrange::<_, String>("k", -5, -1).unwrap(), "world");
    assert_eq!(c.setrange::<_, _, i64>("k", 6, "WORLD").unwrap(), 11);
    assert_eq!(c.get::<_, String>("k").unwrap(), "hello WORLD");
    assert_eq!(c.setrange::<_, _, i64>("pad", 3, "x").unwrap(), 4);
    assert_eq!(c.get::<_, Vec<u8>>("pad").unwrap(), b"\0\0\0x");
    assert_eq!(c.incr::<_, _, i64>("n", 5).unwrap(), 5);
    assert_eq!(c.decr::<_, _, i64>("n", 7).unwrap(), -2);
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("10.5")
        .query(&mut c)
        .unwrap();
    assert_eq!(f, "10.5");
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("0.1")
        .query(&mut c)
        .unwrap();
    assert_eq!(f, "10.6");
    let _: () = c.set("max", i64::MAX).unwrap();
    let err: RedisResult<i64> = c.incr("max", 1);
    assert!(err.unwrap_err().to_string().contains("would overflow"));
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).unwrap();
    let got: Vec<Option<String>> = c.mget(&["a", "b", "nope"]).unwrap();
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None]);
    assert!(!c.mset_nx::<_, _, bool>(&[("a", "x"), ("c", "3")]).unwrap());
    assert!(!c.exists::<_, bool>("c").unwrap());
    assert_eq!(c.getset::<_, _, String>("a", "9").unwrap(), "1");
    assert_eq!(c.get_del::<_, String>("a").unwrap(), "9");
    assert!(!c.exists::<_, bool>("a").unwrap());
    let old: Option<String> = redis::cmd("SET")
        .arg("b")
        .arg("3")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(old.as_deref(), Some("2"));
    let nx: Option<String> = redis::cmd("SET")
        .arg("b")
        .arg("4")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(nx, None);
    assert!(c.set_nx::<_, _, bool>("fresh", "1").unwrap());
    assert_eq!(c.del::<_, i64>(&["b", "fresh", "nope"]).unwrap(), 2);
    // Bits, most significant first.
    assert!(!c.setbit::<_, bool>("bits", 7, true).unwrap());
    assert!(c.getbit::<_, bool>("bits", 7).unwrap());
    assert!(!c.getbit::<_, bool>("bits", 100).unwrap());
    assert_eq!(c.get::<_, Vec<u8>>("bits").unwrap(), [1u8]);
    let err: RedisResult<i64> = redis::cmd("SETBIT")
        .arg("bits")
        .arg(-1)
        .arg(1)
        .query(&mut c);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("bit offset is not an integer")
    );
    // LCS, as in Redis's documentation.
    let _: () = c
        .mset(&[("key1", "ohmytext"), ("key2", "mynewtext")])
        .unwrap();
    let l: String = redis::cmd("LCS")
        .arg("key1")
        .arg("key2")
        .query(&mut c)
        .unwrap();
    assert_eq!(l, "mytext");
    let n: i64 = redis::cmd("LCS")
        .arg("key1")
        .arg("key2")
        .arg("LEN")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 6);
    // Binary keys and values.
    let key = [0u8, 255, b'\r', b'\n'];
    let _: () = c.set(&key[..], &key[..]).unwrap();
    assert_eq!(c.get::<_, Vec<u8>>(&key[..]).unwrap(), key);
}

#[test]
fn expiry_commands() {
    let (_d, s) = start(&[]);
    let mut c = conn(&s);
    let _: () = c.set_ex("e", "v", 100).unwrap();
    let ttl: i64 = c.ttl("e").unwrap();
    assert!((99..=100).contains(&ttl));
    assert_eq!(c.ttl::<_, i64>("nope").unwrap(), -2);
    let _: () = c.set("p", "v").unwrap();
    assert_eq!(c.ttl::<_, i64>("p").unwrap(), -1);
    // Options.
    let gt: i64 = redis::cmd("EXPIRE")
        .arg("p")
        .arg(50)
        .arg("GT")
        .query(&mut c)
        .unwrap();
    assert_eq!(gt, 0, "GT never applies to a key without TTL");
    let nx: i64 = redis::cmd("EXPIRE")
        .arg("p")
        .arg(50)
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(nx, 1);
    let lt: i64 = redis::cmd("EXPIRE")
        .arg("p")
        .arg(80)
        .arg("LT")
        .query(&mut c)
        .unwrap();
    assert_eq!(lt, 0);
    let err: RedisResult<i64> = redis::cmd("EXPIRE")
        .arg("p")
        .arg(1)
        .arg("NX")
        .arg("XX")
        .query(&mut c);
    assert!(err.unwrap_err().to_string().contains("not compatible"));
    // Value-changing commands keep the TTL, SET clears it.
    let _: i64 = c.append("p", "w").unwrap();
    assert!(c.ttl::<_, i64>("p").unwrap() > 0);
    assert!(c.persist::<_, bool>("p").unwrap());
    assert_eq!(c.ttl::<_, i64>("p").unwrap(), -1);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("PX")
        .arg(150)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .arg("KEEPTTL")
        .query(&mut c)
        .unwrap();
    assert!(c.pttl::<_, i64>("k").unwrap() > 0);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(c.get::<_, Option<String>>("k").unwrap(), None);
    assert!(!c.exists::<_, bool>("k").unwrap());
    // Past times delete.
    let _: () = c.set("gone", "v").unwrap();
    assert!(c.expire_at::<_, bool>("gone", 1).unwrap());
    assert!(!c.exists::<_, bool>("gone").unwrap());
    let at: i64 = redis::cmd("EXPIRETIME").arg("e").query(&mut c).unwrap();
    assert!(at > 1_700_000_000);
    let v: Option<String> = redis::cmd("GETEX")
        .arg("e")
        .arg("PERSIST")
        .query(&mut c)
        .unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    assert_eq!(c.ttl::<_, i64>("e").unwrap(), -1);
}

#[test]
fn keys_scan_rename_copy_move() {
    let (_d, s) = start(&[]);
    let mut c = conn(&s);
    for i in 0..250 {
        let _: () = c.set(format!("user:{i}"), i).unwrap();
    }
    for i in 0..20 {
        let _: () = c.set(format!("other:{i}"), i).unwrap();
    }
    let all: HashSet<String> = c.scan::<String>().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 270);
    let users: HashSet<String> = c
        .scan_match::<_, String>("user:1*")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(users.len(), 1 + 10 + 100);
    let (cursor, typed): (String, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("other:*")
        .arg("TYPE")
        .arg("string")
        .arg("COUNT")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert_eq!((cursor.as_str(), typed.len()), ("0", 20));
    let (_, none): (String, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("hash")
        .arg("COUNT")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert!(none.is_empty());
    let err: RedisResult<Value> = redis::cmd("SCAN").arg("x").query(&mut c);
    assert!(err.unwrap_err().to_string().contains("invalid cursor"));
    let mut keys: Vec<String> = c.keys("other:1?").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 10);
    assert_eq!(keys[0], "other:10");
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 270);
    let _: () = c.rename("user:0", "renamed").unwrap();
    assert_eq!(c.get::<_, i64>("renamed").unwrap(), 0);
    let err: RedisResult<()> = c.rename("user:0", "x");
    assert!(err.unwrap_err().to_string().contains("no such key"));
    assert!(!c.rename_nx::<_, _, bool>("renamed", "user:1").unwrap());
    let copied: i64 = redis::cmd("COPY")
        .arg("renamed")
        .arg("copy")
        .query(&mut c)
        .unwrap();
    assert_eq!(copied, 1);
    let moved: i64 = redis::cmd("MOVE").arg("copy").arg(3).query(&mut c).unwrap();
    assert_eq!(moved, 1);
    assert!(!c.exists::<_, bool>("copy").unwrap());
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    assert_eq!(c.get::<_, i64>("copy").unwrap(), 0);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 1);
    let t: String = redis::cmd("TYPE").arg("copy").query(&mut c).unwrap();
    assert_eq!(t, "string");
    let k: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert_eq!(k, "copy");
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
}

#[test]
fn concurrent_incr_never_loses_an_update() {
    let (_d, s) = start(&["--sync", "always"]);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let url = s.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..200 {
                    let _: i64 = c.incr("counter", 1).unwrap();
                    let _: i64 = c.append("log", "x").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = conn(&s);
    assert_eq!(c.get::<_, i64>("counter").unwrap(), 16 * 200);
    assert_eq!(c.strlen::<_, i64>("log").unwrap(), 16 * 200);
}

/// Pipelines of writes to one key hold the key between their commands (the connection's
/// gate); other connections' pipelines, multi-key commands, transactions and a blocked
/// popper on the same keys must still all be served, and no write lost.
#[test]
fn pipelines_on_one_key_interleave_with_every_other_writer() {
    let (_d, s) = start(&[]);
    let (threads, rounds, per) = (6, 20, 25);
    let popper = {
        let url = s.url();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut popped = 0;
            while popped < threads * rounds {
                let got: Option<(String, String)> =
                    redis::cmd("BLPOP").arg("q").arg(10).query(&mut c).unwrap();
                assert!(got.is_some(), "BLPOP timed out after {popped} pops");
                popped += 1;
            }
            popped
        })
    };
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let url = s.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for r in 0..rounds {
                    let mut p = redis::pipe();
                    for i in 0..per {
                        p.cmd("LPUSH").arg("l").arg(i).ignore();
                        p.cmd("HINCRBY").arg("h").arg("f").arg(1).ignore();
                        p.cmd("INCR").arg("n").ignore();
                    }
                    // A command on another key, a command on no key, a two-key move and a
                    // transaction, in the middle of the run.
                    p.cmd("SADD").arg("s").arg(format!("{t}-{r}")).ignore();
                    p.cmd("PING").ignore();
                    p.cmd("LMOVE")
                        .arg("l")
                        .arg("l2")
                        .arg("LEFT")
                        .arg("RIGHT")
                        .ignore();
                    p.cmd("MULTI").ignore();
                    p.cmd("INCR").arg("n").ignore();
                    p.cmd("LPUSH").arg("l").arg("tx").ignore();
                    p.cmd("EXEC").ignore();
                    p.cmd("RPUSH").arg("q").arg(format!("{t}-{r}")).ignore();
                    for _ in 0..per {
                        p.cmd("ZINCRBY").arg("z").arg(1).arg("m").ignore();
                    }
                    let () = p.query(&mut c).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(popper.join().unwrap(), threads * rounds);
    let mut c = conn(&s);
    let runs = (threads * rounds) as i64;
    let per = per as i64;
    let len: i64 = c.llen("l").unwrap();
    let moved: i64 = c.llen("l2").unwrap();
    assert_eq!((len + moved, moved), (runs * (per + 1), runs));
    assert_eq!(c.hget::<_, _, i64>("h", "f").unwrap(), runs * per);
    assert_eq!(c.get::<_, i64>("n").unwrap(), runs * (per + 1));
    assert_eq!(c.scard::<_, i64>("s").unwrap(), runs);
    assert_eq!(
        c.zscore::<_, _, f64>("z", "m").unwrap(),
        (runs * per) as f64
    );
    assert_eq!(c.llen::<_, i64>("q").unwrap(), 0);
}

/// A client blocked behind the writes of its own pipeline does not keep their key from
/// other clients while it waits.
#[test]
fn a_blocked_pipeline_does_not_hold_the_key_it_wrote() {
    let (_d, s) = start(&[]);
    let blocked = {
        let url = s.url();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut p = redis::pipe();
            p.cmd("SET").arg("k").arg("a").ignore();
            p.cmd("BLPOP").arg("b").arg(20);
            let (got,): (Option<(String, String)>,) = p.query(&mut c).unwrap();
            got
        })
    };
    let mut c = conn(&s);
    let start = std::time::Instant::now();
    while c.get::<_, Option<String>>("k").unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the pipeline never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = std::time::Instant::now();
    let () = c.set("k", "b").unwrap();
    let took = before.elapsed();
    let _: i64 = c.rpush("b", "x").unwrap();
    assert_eq!(blocked.join().unwrap(), Some(("b".into(), "x".into())));
    assert!(
        took < Duration::from_secs(5),
        "SET waited {took:?} for a blocked client"
    );
    assert_eq!(c.get::<_, String>("k").unwrap(), "b");
}

/// A client that stops reading its replies does not keep the key its pipeline wrote while
/// the server waits to send them.
#[test]
fn a_client_not_reading_its_replies_does_not_hold_the_key_it_wrote() {
    let (_d, s) = start(&[]);
    let big = vec![b'x'; 256 << 10];
    let mut cmd = Vec::new();
    cmd.extend_from_slice(format!("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", big.len()).as_bytes());
    cmd.extend_from_slice(&big);
    cmd.extend_from_slice(b"\r\n$3\r\nGET\r\n");
    // 200 x SET k <256 KiB> GET: 50 MiB of replies (the old values) nobody reads.
    let pipeline = cmd.repeat(200);
    let mut slow = s.connect();
    let writer = std::thread::spawn(move || {
        let _ = slow.0.write_all(&pipeline);
        slow
    });
    std::thread::sleep(Duration::from_millis(1000));
    let mut other = s.connect();
    other
        .0
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
    other.expect(b"+OK\r\n");
    drop(other);
    drop(s);
    drop(writer.join());
}

#[test]
fn requirepass_with_client_auth() {
    let (_d, s) = start(&["--requirepass", "pw"]);
    let mut bad = conn(&s);
    let err: RedisResult<Option<String>> = bad.get("k");
    assert!(err.unwrap_err().to_string().contains("NOAUTH"));
    let url = format!("redis://:pw@{}/", s.addr);
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    let wrong = format!("redis://:nope@{}/", s.addr);
    assert!(
        redis::Client::open(wrong)
            .unwrap()
            .get_connection()
            .is_err()
    );
}

#[test]
fn resp3_client() {
    let (_d, s) = start(&[]);
    let url = format!("redis://{}/?protocol=resp3", s.addr);
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    let v: Value = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let v: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut c)
        .unwrap();
    assert!(matches!(v, Value::Map(_)), "{v:?}");
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
    assert!(info.contains("db0:keys=1"), "{info}");
}

#[test]
fn info_config_and_client_commands() {
    let (_d, s) = start(&[]);
    let mut c = conn(&s);
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Keyspace",
        "# Cask",
    ] {
        assert!(info.contains(section), "missing {section}");
    }
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut c)
        .unwrap();
    assert_eq!(cfg, vec!["appendonly", "no"]);
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "tester");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(list.contains("name=tester"));
    let n: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(n > 50);
    let saved: String = redis::cmd("SAVE").query(&mut c).unwrap();
    assert_eq!(saved, "OK");
    let mut other = conn(&s);
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut other).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut c)
        .unwrap();
    assert_eq!(killed, 1);
    assert!(redis::cmd("PING").query::<String>(&mut other).is_err());
}
