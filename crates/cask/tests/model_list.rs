//! Differential test of the list commands against an in-memory model (`VecDeque`s), with
//! crash (SIGKILL) and graceful (SHUTDOWN) restarts of the server on the same directory.
//! After every restart the whole keyspace must equal the model. `CASK_SEED=n` replays a run.

mod server_common;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use redis::Value;
use server_common::Server;

/// splitmix64: a tiny seeded generator, enough to drive the operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index in roughly `-(len + 2)..len + 2`, to exercise out-of-range indexes too.
    fn index(&mut self, len: usize) -> i64 {
        let span = len as i64 + 2;
        self.below(2 * span as u64) as i64 - span
    }
}

/// What the model holds under a key.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    List(VecDeque<String>),
    Str(String),
}

type Model = BTreeMap<String, Entry>;

const KEYS: [&str; 4] = ["l0", "l1", "l2", "{x}big"];

fn conn(s: &Server) -> redis::Connection {
    redis::Client::open(s.url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

fn value(rng: &mut Rng) -> String {
    // A small alphabet so that LREM, LPOS and LINSERT find their pivots often.
    format!("v{}", rng.below(6))
}

fn norm(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let l = len as i64;
    let mut s = if start < 0 { start + l } else { start };
    let mut e = if end < 0 { end + l } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= l {
        return None;
    }
    if e >= l {
        e = l - 1;
    }
    Some((s as usize, e as usize))
}

fn list_of<'m>(m: &'m mut Model, k: &str) -> Result<Option<&'m mut VecDeque<String>>, ()> {
    match m.get_mut(k) {
        None => Ok(None),
        Some(Entry::List(l)) => Ok(Some(l)),
        Some(Entry::Str(_)) => Err(()),
    }
}

fn is_wrongtype(r: &redis::RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.to_string().contains("WRONGTYPE"))
}

fn bulk(v: &str) -> Value {
    Value::BulkString(v.as_bytes().to_vec())
}

fn bulks<'a>(vs: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Array(vs.into_iter().map(|v| bulk(v)).collect())
}

fn cleanup(m: &mut Model, k: &str) {
    if matches!(m.get(k), Some(Entry::List(l)) if l.is_empty()) {
        m.remove(k);
    }
}

/// Runs one random operation on the server and the model; panics on a difference.
fn step(c: &mut redis::Connection, m: &mut Model, rng: &mut Rng, log: &mut Vec<String>) {
    let k = KEYS[rng.below(3) as usize].to_string();
    let op = rng.below(100);
    let mut cmd;
    // The expected reply; `None` = WRONGTYPE.
    let expect: Option<Value>;
    match op {
        0..=19 => {
            let left = rng.below(2) == 0;
            let n = 1 + rng.below(3) as usize;
            let vals: Vec<String> = (0..n).map(|_| value(rng)).collect();
            cmd = redis::cmd(if left { "LPUSH" } else { "RPUSH" });
            cmd.arg(&k).arg(&vals);
            expect = match m
                .entry(k.clone())
                .or_insert_with(|| Entry::List(VecDeque::new()))
            {
                Entry::List(l) => {
                    for v in vals {
                        if left {
                            l.push_front(v);
                        } else {
                            l.push_back(v);
                        }
                    }
                    Some(Value::Int(l.len() as i64))
                }
                Entry::Str(_) => None,
            };
        }
        20..=31 => {
            let left = rng.below(2) == 0;
            let count = (rng.below(3) == 0).then(|| rng.below(4) as usize);
            cmd = redis::cmd(if left { "LPOP" } else { "RPOP" });
            cmd.arg(&k);
            if let Some(n) = count {
                cmd.arg(n);
            }
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(Value::Nil),
                Ok(Some(_)) if count == Some(0) => Some(Value::Array(vec![])),
                Ok(Some(l)) => {
                    let mut out = Vec::new();
                    for _ in 0..count.unwrap_or(1) {
                        let v = if left { l.pop_front() } else { l.pop_back() };
                        match v {
                            Some(v) => out.push(bulk(&v)),
                            None => break,
                        }
                    }
                    Some(match count {
                        None => out.pop().unwrap(),
                        Some(_) => Value::Array(out),
                    })
                }
            };
        }
        32..=39 => {
            let len = match m.get(&k) {
                Some(Entry::List(l)) => l.len(),
                _ => 3,
            };
            let (s, e) = (rng.index(len), rng.index(len));
            cmd = redis::cmd("LRANGE");
            cmd.arg(&k).arg(s).arg(e);
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(Value::Array(vec![])),
                Ok(Some(l)) => Some(match range(l.len(), s, e) {
                    None => Value::Array(vec![]),
                    Some((s, e)) => bulks(l.range(s..=e)),
                }),
            };
        }
        40..=45 => {
            let len = match m.get(&k) {
                Some(Entry::List(l)) => l.len(),
                _ => 3,
            };
            let i = rng.index(len);
            let v = value(rng);
            cmd = redis::cmd("LSET");
            cmd.arg(&k).arg(i).arg(&v);
            // Ok(()) = OK, Err(text) = an error containing text.
            let want: Result<(), &str> = match list_of(m, &k) {
                Err(()) => Err("WRONGTYPE"),
                Ok(None) => Err("ERR no such key"),
                Ok(Some(l)) => match norm(l.len(), i) {
                    Some(i) => {
                        l[i] = v;
                        Ok(())
                    }
                    None => Err("ERR index out of range"),
                },
            };
            log.push(format!("{cmd:?}"));
            let got: redis::RedisResult<Value> = cmd.query(c);
            match (want, &got) {
                (Ok(()), Ok(v)) => assert_eq!(v, &Value::Okay),
                (Err(text), Err(e)) => {
                    let e = e.to_string();
                    let want = text.trim_start_matches("ERR ");
                    assert!(e.contains(want), "LSET {k} {i}: {e}");
                }
                (w, g) => panic!("LSET {k} {i}: expected {w:?}, got {g:?}"),
            }
            return;
        }
        46..=51 => {
            let len = match m.get(&k) {
                Some(Entry::List(l)) => l.len(),
                _ => 3,
            };
            let i = rng.index(len);
            cmd = redis::cmd("LINDEX");
            cmd.arg(&k).arg(i);
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(Value::Nil),
                Ok(Some(l)) => Some(norm(l.len(), i).map_or(Value::Nil, |i| bulk(&l[i]))),
            };
        }
        52..=59 => {
            let after = rng.below(2) == 0;
            let pivot = value(rng);
            let v = format!("i{}", rng.below(3));
            cmd = redis::cmd("LINSERT");
            cmd.arg(&k)
                .arg(if after { "AFTER" } else { "BEFORE" })
                .arg(&pivot)
                .arg(&v);
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(Value::Int(0)),
                Ok(Some(l)) => Some(match l.iter().position(|x| *x == pivot) {
                    None => Value::Int(-1),
                    Some(p) => {
                        l.insert(if after { p + 1 } else { p }, v);
                        Value::Int(l.len() as i64)
                    }
                }),
            };
        }
        60..=67 => {
            let count = rng.below(7) as i64 - 3;
            let v = value(rng);
            cmd = redis::cmd("LREM");
            cmd.arg(&k).arg(count).arg(&v);
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(Value::Int(0)),
                Ok(Some(l)) => {
                    let limit = count.unsigned_abs() as usize;
                    let mut idx: Vec<usize> = (0..l.len()).filter(|&i| l[i] == v).collect();
                    if count < 0 {
                        idx.reverse();
                    }
                    if limit != 0 {
                        idx.truncate(limit);
                    }
                    idx.sort_unstable();
                    for &i in idx.iter().rev() {
                        l.remove(i);
                    }
                    Some(Value::Int(idx.len() as i64))
                }
            };
        }
        68..=72 => {
            let len = match m.get(&k) {
                Some(Entry::List(l)) => l.len(),
                _ => 3,
            };
            let (s, e) = (rng.index(len), rng.index(len));
            cmd = redis::cmd("LTRIM");
            cmd.arg(&k).arg(s).arg(e);
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(Value::Okay),
                Ok(Some(l)) => {
                    match range(l.len(), s, e) {
                        None => l.clear(),
                        Some((s, e)) => {
                            l.truncate(e + 1);
                            l.drain(..s);
                        }
                    }
                    Some(Value::Okay)
                }
            };
        }
        73..=78 => {
            let v = value(rng);
            let rank = [1i64, 2, -1, -2][rng.below(4) as usize];
            let count = [None, Some(0u64), Some(1), Some(2)][rng.below(4) as usize];
            let maxlen = [0u64, 2, 5][rng.below(3) as usize];
            cmd = redis::cmd("LPOS");
            cmd.arg(&k)
                .arg(&v)
                .arg("RANK")
                .arg(rank)
                .arg("MAXLEN")
                .arg(maxlen);
            if let Some(n) = count {
                cmd.arg("COUNT").arg(n);
            }
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(None) => Some(count.map_or(Value::Nil, |_| Value::Array(vec![]))),
                Ok(Some(l)) => {
                    let n = l.len();
                    let order: Vec<usize> = if rank > 0 {
                        (0..n).collect()
                    } else {
                        (0..n).rev().collect()
                    };
                    let scanned = if maxlen == 0 {
                        n
                    } else {
                        n.min(maxlen as usize)
                    };
                    let hits: Vec<usize> = order[..scanned]
                        .iter()
                        .copied()
                        .filter(|&i| l[i] == v)
                        .skip(rank.unsigned_abs() as usize - 1)
                        .collect();
                    Some(match count {
                        None => hits.first().map_or(Value::Nil, |&i| Value::Int(i as i64)),
                        Some(c) => {
                            let take = if c == 0 { hits.len() } else { c as usize };
                            Value::Array(
                                hits.iter()
                                    .take(take)
                                    .map(|&i| Value::Int(i as i64))
                                    .collect(),
                            )
                        }
                    })
                }
            };
        }
        79..=85 => {
            let dst = KEYS[rng.below(3) as usize].to_string();
            let from_left = rng.below(2) == 0;
            let to_left = rng.below(2) == 0;
            cmd = redis::cmd("LMOVE");
            cmd.arg(&k)
                .arg(&dst)
                .arg(if from_left { "LEFT" } else { "RIGHT" })
                .arg(if to_left { "LEFT" } else { "RIGHT" });
            let src_ok = list_of(m, &k);
            expect = match src_ok {
                Err(()) => None,
                Ok(None) => Some(Value::Nil),
                Ok(Some(_)) => {
                    if matches!(m.get(&dst), Some(Entry::Str(_))) {
                        None
                    } else {
                        let Some(Entry::List(l)) = m.get_mut(&k) else {
                            unreachable!()
                        };
                        let v = if from_left {
                            l.pop_front()
                        } else {
                            l.pop_back()
                        }
                        .unwrap();
                        cleanup(m, &k);
                        let Entry::List(d) = m
                            .entry(dst.clone())
                            .or_insert_with(|| Entry::List(VecDeque::new()))
                        else {
                            unreachable!()
                        };
                        if to_left {
                            d.push_front(v.clone());
                        } else {
                            d.push_back(v.clone());
                        }
                        Some(bulk(&v))
                    }
                }
            };
        }
        86..=88 => {
            let ks: Vec<String> = (0..2)
                .map(|_| KEYS[rng.below(3) as usize].to_string())
                .collect();
            let left = rng.below(2) == 0;
            let count = 1 + rng.below(3) as usize;
            cmd = redis::cmd("LMPOP");
            cmd.arg(2)
                .arg(&ks)
                .arg(if left { "LEFT" } else { "RIGHT" })
                .arg("COUNT")
                .arg(count);
            let mut found = None;
            let mut wrong = false;
            for key in &ks {
                match m.get(key) {
                    None => continue,
                    Some(Entry::Str(_)) => {
                        wrong = true;
                        break;
                    }
                    Some(Entry::List(_)) => {
                        found = Some(key.clone());
                        break;
                    }
                }
            }
            expect = if wrong {
                None
            } else if let Some(key) = found {
                let Some(Entry::List(l)) = m.get_mut(&key) else {
                    unreachable!()
                };
                let mut out = Vec::new();
                for _ in 0..count {
                    match if left { l.pop_front() } else { l.pop_back() } {
                        Some(v) => out.push(bulk(&v)),
                        None => break,
                    }
                }
                cleanup(m, &key);
                Some(Value::Array(vec![bulk(&key), Value::Array(out)]))
            } else {
                Some(Value::Nil)
            };
        }
        89..=91 => {
            cmd = redis::cmd("DEL");
            cmd.arg(&k);
            expect = Some(Value::Int(m.remove(&k).is_some() as i64));
        }
        92 => {
            let v = value(rng);
            cmd = redis::cmd("SET");
            cmd.arg(&k).arg(&v);
            m.insert(k.clone(), Entry::Str(v));
            expect = Some(Value::Okay);
        }
        93..=95 => {
            cmd = redis::cmd("LLEN");
            cmd.arg(&k);
            expect = match list_of(m, &k) {
                Err(()) => None,
                Ok(l) => Some(Value::Int(l.map_or(0, |l| l.len()) as i64)),
            };
        }
        _ => {
            // A big list, then DEL / expiry / overwrite: the old elements never reappear.
            let big = KEYS[3].to_string();
            let vals: Vec<String> = (0..1000).map(|i| format!("b{i}")).collect();
            let mut p = redis::pipe();
            p.cmd("DEL").arg(&big).ignore();
            p.cmd("RPUSH").arg(&big).arg(&vals).ignore();
            let how = rng.below(3);
            match how {
                0 => {
                    p.cmd("DEL").arg(&big).ignore();
                }
                1 => {
                    p.cmd("PEXPIRE").arg(&big).arg(1).ignore();
                }
                _ => {
                    p.cmd("SET").arg(&big).arg("s").ignore();
                }
            }
            let _: () = p.query(c).unwrap();
            log.push(format!("big cycle {how} on {big}"));
            std::thread::sleep(Duration::from_millis(3));
            if how == 2 {
                let s: String = redis::cmd("GET").arg(&big).query(c).unwrap();
                assert_eq!(s, "s");
                let _: () = redis::cmd("DEL").arg(&big).query(c).unwrap();
            }
            let n: i64 = redis::cmd("RPUSH").arg(&big).arg("fresh").query(c).unwrap();
            assert_eq!(n, 1, "a recreated list starts empty");
            let got: Vec<String> = redis::cmd("LRANGE")
                .arg(&big)
                .arg(0)
                .arg(-1)
                .query(c)
                .unwrap();
            assert_eq!(got, vec!["fresh".to_string()], "old elements reappeared");
            let _: () = redis::cmd("DEL").arg(&big).query(c).unwrap();
            return;
        }
    }
    log.push(format!("{cmd:?}"));
    if log.len() > 40 {
        log.remove(0);
    }
    let got: redis::RedisResult<Value> = cmd.query(c);
    match expect {
        None => assert!(is_wrongtype(&got), "expected WRONGTYPE, got {got:?}"),
        Some(e) => assert_eq!(got.as_ref().ok(), Some(&e), "got {got:?}"),
    }
    cleanup(m, &k);
}

/// The whole keyspace, as the server holds it.
fn check_all(c: &mut redis::Connection, m: &Model) {
    for k in KEYS {
        let t: String = redis::cmd("TYPE").arg(k).query(c).unwrap();
        match m.get(k) {
            None => assert_eq!(t, "none", "{k}"),
            Some(Entry::Str(s)) => {
                assert_eq!(t, "string", "{k}");
                let v: String = redis::cmd("GET").arg(k).query(c).unwrap();
                assert_eq!(&v, s);
            }
            Some(Entry::List(l)) => {
                assert_eq!(t, "list", "{k}");
                let v: Vec<String> = redis::cmd("LRANGE").arg(k).arg(0).arg(-1).query(c).unwrap();
                assert_eq!(v, l.iter().cloned().collect::<Vec<_>>(), "{k}");
                let n: usize = redis::cmd("LLEN").arg(k).query(c).unwrap();
                assert_eq!(n, l.len(), "{k}");
            }
        }
    }
}

#[test]
fn lists_match_the_model_across_restarts() {
    let seed = server_common::seed();
    eprintln!("model_list: CASK_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--sync", "never"]);
    let mut c = conn(&server);
    let mut model = Model::new();
    let mut log = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for round in 0..6 {
            for _ in 0..400 {
                step(&mut c, &mut model, &mut rng, &mut log);
            }
            check_all(&mut c, &model);
            if round % 2 == 0 {
                server.signal("KILL");
            } else {
                let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
            }
            server.wait(Duration::from_secs(20));
            server = Server::start(dir.path(), &["--sync", "never"]);
            c = conn(&server);
            check_all(&mut c, &model);
        }
    }));
    if let Err(e) = result {
        eprintln!("model_list failed with CASK_SEED={seed}; last commands:");
        for l in &log {
            eprintln!("  {l}");
        }
        std::panic::resume_unwind(e);
    }
}
