//! Differential test of hashes: random commands against a real server and an in-memory
//! model, with SIGKILL and graceful restarts on the same directory in between; after each
//! restart the whole keyspace must equal the model. Big hashes are deleted, expired and
//! overwritten now and then: their old fields must never come back.
//!
//! `CASK_SEED=n` replays one run; the seed is printed on failure.

mod server_common;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;
use server_common::{Server, conn, restart, run_seeded};

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    Str(String),
    Hash(BTreeMap<String, String>),
}

fn err_text(r: redis::RedisResult<Value>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn check_all(c: &mut redis::Connection, model: &BTreeMap<String, V>, keys: &[String]) {
    for k in keys {
        match model.get(k) {
            None => {
                let n: i64 = redis::cmd("EXISTS").arg(k).query(c).unwrap();
                assert_eq!(n, 0, "{k} should not exist");
            }
            Some(V::Str(s)) => {
                let got: String = redis::cmd("GET").arg(k).query(c).unwrap();
                assert_eq!(&got, s, "{k}");
            }
            Some(V::Hash(h)) => {
                let got: BTreeMap<String, String> = redis::cmd("HGETALL").arg(k).query(c).unwrap();
                assert_eq!(&got, h, "HGETALL {k}");
                let n: usize = redis::cmd("HLEN").arg(k).query(c).unwrap();
                assert_eq!(n, h.len(), "HLEN {k}");
                let keys: Vec<String> = redis::cmd("HKEYS").arg(k).query(c).unwrap();
                assert_eq!(keys, h.keys().cloned().collect::<Vec<_>>(), "HKEYS {k}");
            }
        }
    }
    let n: usize = redis::cmd("DBSIZE").query(c).unwrap();
    assert_eq!(n, model.len(), "DBSIZE");
}

fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--sync", "never"]);
    let mut c = conn(&server);
    let mut rng = Rng(seed | 1);
    let mut model: BTreeMap<String, V> = BTreeMap::new();
    let keys: Vec<String> = (0..5).map(|i| format!("h{i}")).collect();
    let ops = 2500;
    for step in 0..ops {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        let field = format!("f{}", rng.below(20));
        let op = rng.below(100);
        let is_str = matches!(model.get(&key), Some(V::Str(_)));
        let hash = |m: &mut BTreeMap<String, V>| -> Option<BTreeMap<String, String>> {
            match m.get(&key) {
                Some(V::Hash(h)) => Some(h.clone()),
                None => Some(BTreeMap::new()),
                Some(V::Str(_)) => None,
            }
        };
        match op {
            0..=29 => {
                // HSET with 1-3 pairs (a field may repeat).
                let n = 1 + rng.below(3);
                let mut cmd = redis::cmd("HSET");
                cmd.arg(&key);
                let mut pairs = Vec::new();
                for _ in 0..n {
                    let f = format!("f{}", rng.below(20));
                    let v = if rng.below(2) == 0 {
                        rng.below(1000).to_string()
                    } else {
                        format!("v{}", rng.below(1_000_000))
                    };
                    cmd.arg(&f).arg(&v);
                    pairs.push((f, v));
                }
                let r: redis::RedisResult<Value> = cmd.query(&mut c);
                match hash(&mut model) {
                    None => assert!(err_text(r).contains("WRONGTYPE")),
                    Some(mut h) => {
                        let before = h.len();
                        for (f, v) in pairs {
                            h.insert(f, v);
                        }
                        assert_eq!(r.unwrap(), Value::Int((h.len() - before) as i64));
                        model.insert(key.clone(), V::Hash(h));
                    }
                }
            }
            30..=44 => {
                let r: redis::RedisResult<Value> = redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&field)
                    .arg("f99")
                    .query(&mut c);
                match hash(&mut model) {
                    None => assert!(err_text(r).contains("WRONGTYPE")),
                    Some(mut h) => {
                        let removed = h.remove(&field).is_some();
                        assert_eq!(r.unwrap(), Value::Int(i64::from(removed)));
                        if h.is_empty() {
                            model.remove(&key);
                        } else {
                            model.insert(key.clone(), V::Hash(h));
                        }
                    }
                }
            }
            45..=59 => {
                let by = rng.below(200) as i64 - 100;
                let r: redis::RedisResult<Value> = redis::cmd("HINCRBY")
                    .arg(&key)
                    .arg(&field)
                    .arg(by)
                    .query(&mut c);
                match hash(&mut model) {
                    None => assert!(err_text(r).contains("WRONGTYPE")),
                    Some(mut h) => {
                        let cur = h.get(&field).cloned().unwrap_or_else(|| "0".into());
                        match cur.parse::<i64>() {
                            Ok(n) => {
                                assert_eq!(r.unwrap(), Value::Int(n + by));
                                h.insert(field.clone(), (n + by).to_string());
                                model.insert(key.clone(), V::Hash(h));
                            }
                            Err(_) => assert!(
                                err_text(r).contains("hash value is not an integer"),
                                "HINCRBY on {cur:?}"
                            ),
                        }
                    }
                }
            }
            60..=66 => {
                let r: redis::RedisResult<Value> = redis::cmd("HSETNX")
                    .arg(&key)
                    .arg(&field)
                    .arg("nx")
                    .query(&mut c);
                match hash(&mut model) {
                    None => assert!(err_text(r).contains("WRONGTYPE")),
                    Some(mut h) => {
                        let new = !h.contains_key(&field);
                        assert_eq!(r.unwrap(), Value::Int(i64::from(new)));
                        h.entry(field.clone()).or_insert_with(|| "nx".into());
                        model.insert(key.clone(), V::Hash(h));
                    }
                }
            }
            67..=76 => {
                let got: Option<String> =
                    match redis::cmd("HGET").arg(&key).arg(&field).query(&mut c) {
                        Ok(v) => v,
                        Err(e) => {
                            assert!(is_str && e.to_string().contains("WRONGTYPE"));
                            continue;
                        }
                    };
                let want = hash(&mut model).and_then(|h| h.get(&field).cloned());
                assert_eq!(got, want, "HGET {key} {field}");
            }
            77..=80 => {
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                model.remove(&key);
            }
            81..=83 => {
                // Expire at once.
                let _: i64 = redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(1)
                    .query(&mut c)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(3));
                model.remove(&key);
            }
            84..=86 => {
                let v = format!("s{}", rng.below(100));
                let _: () = redis::cmd("SET").arg(&key).arg(&v).query(&mut c).unwrap();
                model.insert(key.clone(), V::Str(v));
            }
            87..=88 => {
                // A big hash, then it goes away in one of three ways, then a small one takes
                // its key: only the new fields may be seen.
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                let mut cmd = redis::cmd("HSET");
                cmd.arg(&key);
                for i in 0..1000 {
                    cmd.arg(format!("big{i}")).arg(i);
                }
                let n: i64 = cmd.query(&mut c).unwrap();
                assert_eq!(n, 1000);
                match rng.below(3) {
                    0 => {
                        let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                    }
                    1 => {
                        let _: i64 = redis::cmd("PEXPIRE")
                            .arg(&key)
                            .arg(1)
                            .query(&mut c)
                            .unwrap();
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    _ => {
                        let _: () = redis::cmd("SET").arg(&key).arg("x").query(&mut c).unwrap();
                        let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                    }
                }
                let _: i64 = redis::cmd("HSET")
                    .arg(&key)
                    .arg("new")
                    .arg("1")
                    .query(&mut c)
                    .unwrap();
                let mut h = BTreeMap::new();
                h.insert("new".to_string(), "1".to_string());
                model.insert(key.clone(), V::Hash(h));
            }
            89..=97 => check_all(&mut c, &model, &keys),
            _ => {
                // SIGKILL or SHUTDOWN, alternately.
                restart(&mut server, &mut c, step % 2 == 0);
                check_all(&mut c, &model, &keys);
            }
        }
    }
    check_all(&mut c, &model, &keys);
}

#[test]
fn hashes_match_a_model_across_restarts() {
    run_seeded("model_hash", run);
}
