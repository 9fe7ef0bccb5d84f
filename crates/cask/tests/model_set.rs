//! Differential test of sets: random commands against a real server and an in-memory model
//! (SPOP's random choices are checked against the model and applied to it), with SIGKILL
//! and graceful restarts on the same directory in between; after each restart the whole
//! keyspace must equal the model. Big sets are deleted, expired, overwritten and replaced by
//! *STORE now and then: their old members must never come back.
//!
//! `CASK_SEED=n` replays one run (SPOP's picks are the server's own; the model follows
//! them); the seed is printed on failure.

mod server_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::Value;
use server_common::{Server, conn, restart, run_seeded};

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
    Set(BTreeSet<String>),
}

type Model = BTreeMap<String, V>;

fn is_wrongtype(r: redis::RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.to_string().contains("WRONGTYPE"))
}

/// The set at `key`: `Some(empty)` when missing, `None` when it is a string.
fn set_of(m: &Model, key: &str) -> Option<BTreeSet<String>> {
    match m.get(key) {
        Some(V::Set(s)) => Some(s.clone()),
        None => Some(BTreeSet::new()),
        Some(V::Str(_)) => None,
    }
}

fn put(m: &mut Model, key: &str, s: BTreeSet<String>) {
    if s.is_empty() {
        m.remove(key);
    } else {
        m.insert(key.to_string(), V::Set(s));
    }
}

fn check_all(c: &mut redis::Connection, model: &Model, keys: &[String]) {
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
            Some(V::Set(s)) => {
                let got: BTreeSet<String> = redis::cmd("SMEMBERS").arg(k).query(c).unwrap();
                assert_eq!(&got, s, "SMEMBERS {k}");
                let n: usize = redis::cmd("SCARD").arg(k).query(c).unwrap();
                assert_eq!(n, s.len(), "SCARD {k}");
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
    let mut model: Model = BTreeMap::new();
    let keys: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    for step in 0..2500 {
        let pick = |rng: &mut Rng| keys[rng.below(keys.len() as u64) as usize].clone();
        let key = pick(&mut rng);
        let member = format!("m{}", rng.below(30));
        let op = rng.below(100);
        match op {
            0..=29 => {
                let n = 1 + rng.below(3);
                let ms: Vec<String> = (0..n).map(|_| format!("m{}", rng.below(30))).collect();
                let r: redis::RedisResult<Value> =
                    redis::cmd("SADD").arg(&key).arg(&ms).query(&mut c);
                match set_of(&model, &key) {
                    None => assert!(is_wrongtype(r)),
                    Some(mut s) => {
                        let before = s.len();
                        s.extend(ms);
                        assert_eq!(r.unwrap(), Value::Int((s.len() - before) as i64));
                        put(&mut model, &key, s);
                    }
                }
            }
            30..=41 => {
                let r: redis::RedisResult<Value> =
                    redis::cmd("SREM").arg(&key).arg(&member).query(&mut c);
                match set_of(&model, &key) {
                    None => assert!(is_wrongtype(r)),
                    Some(mut s) => {
                        let removed = s.remove(&member);
                        assert_eq!(r.unwrap(), Value::Int(i64::from(removed)));
                        put(&mut model, &key, s);
                    }
                }
            }
            42..=49 => {
                // SPOP with or without a count: what comes out must have been in the set.
                let with_count = rng.below(2) == 0;
                let n = rng.below(4);
                let mut cmd = redis::cmd("SPOP");
                cmd.arg(&key);
                if with_count {
                    cmd.arg(n);
                }
                let r: redis::RedisResult<Value> = cmd.query(&mut c);
                let Some(mut s) = set_of(&model, &key) else {
                    assert!(is_wrongtype(r));
                    continue;
                };
                let popped: Vec<String> = match r.unwrap() {
                    Value::Nil => Vec::new(),
                    v if with_count => redis::from_redis_value(v).unwrap(),
                    v => vec![redis::from_redis_value(v).unwrap()],
                };
                let want = if with_count {
                    (n as usize).min(s.len())
                } else {
                    usize::from(!s.is_empty())
                };
                assert_eq!(popped.len(), want, "SPOP {key} from {s:?}");
                for p in &popped {
                    assert!(s.remove(p), "SPOP returned {p} not in {s:?}");
                }
                put(&mut model, &key, s);
            }
            50..=55 => {
                let dst = pick(&mut rng);
                let r: redis::RedisResult<Value> = redis::cmd("SMOVE")
                    .arg(&key)
                    .arg(&dst)
                    .arg(&member)
                    .query(&mut c);
                let src_set = match model.get(&key) {
                    None => {
                        assert_eq!(r.unwrap(), Value::Int(0));
                        continue;
                    }
                    Some(V::Str(_)) => {
                        assert!(is_wrongtype(r));
                        continue;
                    }
                    Some(V::Set(s)) => s.clone(),
                };
                let Some(mut dst_set) = set_of(&model, &dst) else {
                    assert!(is_wrongtype(r));
                    continue;
                };
                let mut src_set = src_set;
                let moved = src_set.contains(&member);
                assert_eq!(r.unwrap(), Value::Int(i64::from(moved)), "SMOVE");
                if moved && key != dst {
                    src_set.remove(&member);
                    dst_set.insert(member.clone());
                    put(&mut model, &key, src_set);
                    put(&mut model, &dst, dst_set);
                }
            }
            56..=63 => {
                // SINTER/SUNION/SDIFF and their STORE forms.
                let (a, b) = (pick(&mut rng), pick(&mut rng));
                let kind = rng.below(3);
                let name = ["SINTER", "SUNION", "SDIFF"][kind as usize];
                let store = rng.below(2) == 0;
                let dst = pick(&mut rng);
                let mut cmd = redis::cmd(&if store {
                    format!("{name}STORE")
                } else {
                    name.to_string()
                });
                if store {
                    cmd.arg(&dst);
                }
                cmd.arg(&key).arg(&a).arg(&b);
                let r: redis::RedisResult<Value> = cmd.query(&mut c);
                let ins: Option<Vec<BTreeSet<String>>> =
                    [&key, &a, &b].iter().map(|k| set_of(&model, k)).collect();
                let Some(ins) = ins else {
                    assert!(is_wrongtype(r));
                    continue;
                };
                let result: BTreeSet<String> = match kind {
                    0 => ins[0]
                        .iter()
                        .filter(|m| ins[1].contains(*m) && ins[2].contains(*m))
                        .cloned()
                        .collect(),
                    1 => ins.iter().flatten().cloned().collect(),
                    _ => ins[0]
                        .iter()
                        .filter(|m| !ins[1].contains(*m) && !ins[2].contains(*m))
                        .cloned()
                        .collect(),
                };
                if store {
                    assert_eq!(r.unwrap(), Value::Int(result.len() as i64));
                    model.remove(&dst);
                    put(&mut model, &dst, result);
                } else {
                    let got: BTreeSet<String> = redis::from_redis_value(r.unwrap()).unwrap();
                    assert_eq!(got, result, "{name}");
                }
            }
            64..=69 => {
                let r: redis::RedisResult<Value> =
                    redis::cmd("SISMEMBER").arg(&key).arg(&member).query(&mut c);
                match set_of(&model, &key) {
                    None => assert!(is_wrongtype(r)),
                    Some(s) => assert_eq!(r.unwrap(), Value::Int(i64::from(s.contains(&member)))),
                }
            }
            70..=73 => {
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                model.remove(&key);
            }
            74..=76 => {
                let _: i64 = redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(1)
                    .query(&mut c)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(3));
                model.remove(&key);
            }
            77..=79 => {
                let v = format!("x{}", rng.below(100));
                let _: () = redis::cmd("SET").arg(&key).arg(&v).query(&mut c).unwrap();
                model.insert(key.clone(), V::Str(v));
            }
            80..=81 => {
                // A big set, gone by DEL / expiry / overwrite / SINTERSTORE of nothing, then
                // a small one under the same key: only its members may be seen.
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                let big: Vec<String> = (0..1000).map(|i| format!("big{i}")).collect();
                let n: i64 = redis::cmd("SADD")
                    .arg(&key)
                    .arg(&big)
                    .query(&mut c)
                    .unwrap();
                assert_eq!(n, 1000);
                match rng.below(4) {
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
                    2 => {
                        let _: () = redis::cmd("SET").arg(&key).arg("x").query(&mut c).unwrap();
                        let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                    }
                    _ => {
                        let n: i64 = redis::cmd("SINTERSTORE")
                            .arg(&key)
                            .arg("no-such-set")
                            .query(&mut c)
                            .unwrap();
                        assert_eq!(n, 0);
                    }
                }
                let _: i64 = redis::cmd("SADD")
                    .arg(&key)
                    .arg("new")
                    .query(&mut c)
                    .unwrap();
                put(&mut model, &key, BTreeSet::from(["new".to_string()]));
            }
            82..=97 => check_all(&mut c, &model, &keys),
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
fn sets_match_a_model_across_restarts() {
    run_seeded("model_set", run);
}
