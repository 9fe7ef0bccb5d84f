//! Differential test of sorted sets: random commands against a real server and an in-memory
//! model (`BTreeMap` member -> score, ordered by (score, member) for ranges), with SIGKILL
//! and graceful restarts on the same directory in between; after each restart the whole
//! keyspace must equal the model. Big sorted sets are deleted, expired, overwritten and
//! replaced by *STORE now and then: their old members must never come back.
//!
//! `CASK_SEED=n` replays one run; the seed is printed on failure.

mod server_common;

use std::collections::BTreeMap;
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
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

type Z = BTreeMap<String, f64>;

#[derive(Debug, Clone, PartialEq)]
enum V {
    Str(String),
    Zset(Z),
}

type Model = BTreeMap<String, V>;

fn is_wrongtype(r: &redis::RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.to_string().contains("WRONGTYPE"))
}

/// The zset at `key`: `Some(empty)` when missing, `None` when it is a string.
fn zset_of(m: &Model, key: &str) -> Option<Z> {
    match m.get(key) {
        Some(V::Zset(z)) => Some(z.clone()),
        None => Some(Z::new()),
        Some(V::Str(_)) => None,
    }
}

fn put(m: &mut Model, key: &str, z: Z) {
    if z.is_empty() {
        m.remove(key);
    } else {
        m.insert(key.to_string(), V::Zset(z));
    }
}

/// Members in Redis order: by score, then member bytes.
fn sorted(z: &Z) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = z.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
    v
}

fn fmt(s: f64) -> String {
    if s == f64::INFINITY {
        "inf".into()
    } else if s == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{s}")
    }
}

/// A flat WITHSCORES reply as pairs.
fn pairs(v: Value) -> Vec<(String, f64)> {
    let flat: Vec<String> = redis::from_redis_value(v).unwrap();
    flat.chunks(2)
        .map(|p| (p[0].clone(), p[1].parse::<f64>().unwrap()))
        .collect()
}

fn random_score(rng: &mut Rng) -> f64 {
    match rng.below(20) {
        0 => f64::INFINITY,
        1 => f64::NEG_INFINITY,
        _ => (rng.below(13) as f64 - 6.0) / 2.0,
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
            Some(V::Zset(z)) => {
                let got = pairs(
                    redis::cmd("ZRANGE")
                        .arg(k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(c)
                        .unwrap(),
                );
                assert_eq!(got, sorted(z), "ZRANGE {k}");
                let n: usize = redis::cmd("ZCARD").arg(k).query(c).unwrap();
                assert_eq!(n, z.len(), "ZCARD {k}");
                let t: String = redis::cmd("TYPE").arg(k).query(c).unwrap();
                assert_eq!(t, "zset");
            }
        }
    }
    let n: usize = redis::cmd("DBSIZE").query(c).unwrap();
    assert_eq!(n, model.len(), "DBSIZE");
}

/// ZADD with random flags, checked against Redis's rules.
fn zadd(c: &mut redis::Connection, rng: &mut Rng, model: &mut Model, key: &str) {
    let nx = rng.chance(15);
    let xx = !nx && rng.chance(15);
    let gt = !nx && rng.chance(15);
    let lt = !nx && !gt && rng.chance(15);
    let ch = rng.chance(30);
    let incr = rng.chance(15);
    let n = if incr { 1 } else { 1 + rng.below(3) };
    let pairs: Vec<(f64, String)> = (0..n)
        .map(|_| (random_score(rng), format!("m{}", rng.below(20))))
        .collect();
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(key);
    for (on, name) in [
        (nx, "NX"),
        (xx, "XX"),
        (gt, "GT"),
        (lt, "LT"),
        (ch, "CH"),
        (incr, "INCR"),
    ] {
        if on {
            cmd.arg(name);
        }
    }
    for (s, m) in &pairs {
        cmd.arg(fmt(*s)).arg(m);
    }
    let r: redis::RedisResult<Value> = cmd.query(c);
    let Some(mut z) = zset_of(model, key) else {
        assert!(is_wrongtype(&r), "{r:?}");
        return;
    };
    let (mut added, mut updated, mut processed) = (0, 0, 0);
    let mut last = 0.0;
    for (score, m) in &pairs {
        match z.get(m).copied() {
            Some(cur) => {
                if nx {
                    continue;
                }
                let new = if incr { cur + score } else { *score };
                if new.is_nan() {
                    let e = r.unwrap_err().to_string();
                    assert!(e.contains("resulting score is not a number (NaN)"), "{e}");
                    return;
                }
                if (lt && new >= cur) || (gt && new <= cur) {
                    continue;
                }
                processed += 1;
                last = new;
                if new != cur {
                    z.insert(m.clone(), new);
                    updated += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.insert(m.clone(), *score);
                added += 1;
                processed += 1;
                last = *score;
            }
        }
    }
    let r = r.unwrap();
    if incr {
        if processed > 0 {
            let got: String = redis::from_redis_value(r).unwrap();
            assert_eq!(got.parse::<f64>().unwrap(), last, "ZADD INCR");
        } else {
            assert_eq!(r, Value::Nil);
        }
    } else {
        let want = if ch { added + updated } else { added };
        assert_eq!(
            r,
            Value::Int(want),
            "ZADD {pairs:?} nx={nx} xx={xx} gt={gt} lt={lt}"
        );
    }
    put(model, key, z);
}

/// A random score bound: (text, value, exclusive).
fn bound(rng: &mut Rng) -> (String, f64, bool) {
    let v = match rng.below(10) {
        0 => f64::NEG_INFINITY,
        1 => f64::INFINITY,
        _ => (rng.below(13) as f64 - 6.0) / 2.0,
    };
    let ex = rng.chance(30);
    let text = if ex { format!("({}", fmt(v)) } else { fmt(v) };
    (text, v, ex)
}

fn in_range(s: f64, lo: (f64, bool), hi: (f64, bool)) -> bool {
    (if lo.1 { s > lo.0 } else { s >= lo.0 }) && (if hi.1 { s < hi.0 } else { s <= hi.0 })
}

/// A random lexicographic bound: (text, member or None for -/+, exclusive).
fn lex_bound(rng: &mut Rng, low: bool) -> (String, Option<String>, bool) {
    if rng.chance(15) {
        return (if low { "-" } else { "+" }.to_string(), None, true);
    }
    let m = format!("m{}", rng.below(20));
    if rng.chance(50) {
        (format!("({m}"), Some(m), true)
    } else {
        (format!("[{m}"), Some(m), false)
    }
}

fn lex_in(
    m: &str,
    lo: &(String, Option<String>, bool),
    hi: &(String, Option<String>, bool),
) -> bool {
    let above = match &lo.1 {
        None => lo.0 == "-",
        Some(b) => {
            if lo.2 {
                m > b.as_str()
            } else {
                m >= b.as_str()
            }
        }
    };
    let below = match &hi.1 {
        None => hi.0 == "+",
        Some(b) => {
            if hi.2 {
                m < b.as_str()
            } else {
                m <= b.as_str()
            }
        }
    };
    above && below
}

fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--sync", "never"]);
    let mut c = conn(&server);
    let mut rng = Rng(seed | 1);
    let mut model: Model = BTreeMap::new();
    let keys: Vec<String> = (0..5).map(|i| format!("z{i}")).collect();
    for step in 0..2500 {
        let pick = |rng: &mut Rng| keys[rng.below(keys.len() as u64) as usize].clone();
        let key = pick(&mut rng);
        let member = format!("m{}", rng.below(20));
        match rng.below(100) {
            0..=24 => zadd(&mut c, &mut rng, &mut model, &key),
            25..=29 => {
                let by = random_score(&mut rng);
                let r: redis::RedisResult<Value> = redis::cmd("ZINCRBY")
                    .arg(&key)
                    .arg(fmt(by))
                    .arg(&member)
                    .query(&mut c);
                let Some(mut z) = zset_of(&model, &key) else {
                    assert!(is_wrongtype(&r));
                    continue;
                };
                let new = z.get(&member).map_or(by, |cur| cur + by);
                if new.is_nan() {
                    assert!(r.unwrap_err().to_string().contains("NaN"));
                    continue;
                }
                let got: String = redis::from_redis_value(r.unwrap()).unwrap();
                assert_eq!(got.parse::<f64>().unwrap(), new, "ZINCRBY");
                z.insert(member.clone(), new);
                put(&mut model, &key, z);
            }
            30..=37 => {
                let other = format!("m{}", rng.below(20));
                let r: redis::RedisResult<Value> = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&member)
                    .arg(&other)
                    .query(&mut c);
                let Some(mut z) = zset_of(&model, &key) else {
                    assert!(is_wrongtype(&r));
                    continue;
                };
                let mut n = 0;
                for m in [&member, &other] {
                    n += i64::from(z.remove(m).is_some());
                }
                assert_eq!(r.unwrap(), Value::Int(n), "ZREM");
                put(&mut model, &key, z);
            }
            38..=43 => {
                let max = rng.chance(50);
                let count = rng.below(4);
                let r: redis::RedisResult<Value> =
                    redis::cmd(if max { "ZPOPMAX" } else { "ZPOPMIN" })
                        .arg(&key)
                        .arg(count)
                        .query(&mut c);
                let Some(mut z) = zset_of(&model, &key) else {
                    assert!(is_wrongtype(&r));
                    continue;
                };
                let mut order = sorted(&z);
                if max {
                    order.reverse();
                }
                order.truncate(count as usize);
                assert_eq!(pairs(r.unwrap()), order, "ZPOP max={max} {count}");
                for (m, _) in &order {
                    z.remove(m);
                }
                put(&mut model, &key, z);
            }
            44..=49 => {
                // Range reads: by score (maybe reversed, limited), rank, count, lex.
                let Some(z) = zset_of(&model, &key) else {
                    let r: redis::RedisResult<Value> = redis::cmd("ZCARD").arg(&key).query(&mut c);
                    assert!(is_wrongtype(&r));
                    continue;
                };
                let order = sorted(&z);
                let (lo_t, lo, lo_ex) = bound(&mut rng);
                let (hi_t, hi, hi_ex) = bound(&mut rng);
                let rev = rng.chance(50);
                let limit = rng
                    .chance(40)
                    .then(|| (rng.below(4) as i64, rng.below(5) as i64 - 1));
                let mut cmd = redis::cmd("ZRANGE");
                cmd.arg(&key);
                if rev {
                    cmd.arg(&hi_t).arg(&lo_t).arg("BYSCORE").arg("REV");
                } else {
                    cmd.arg(&lo_t).arg(&hi_t).arg("BYSCORE");
                }
                if let Some((o, n)) = limit {
                    cmd.arg("LIMIT").arg(o).arg(n);
                }
                cmd.arg("WITHSCORES");
                let mut want: Vec<(String, f64)> = order
                    .iter()
                    .filter(|(_, s)| in_range(*s, (lo, lo_ex), (hi, hi_ex)))
                    .cloned()
                    .collect();
                if rev {
                    want.reverse();
                }
                if let Some((o, n)) = limit {
                    want = want
                        .into_iter()
                        .skip(o as usize)
                        .take(if n < 0 { usize::MAX } else { n as usize })
                        .collect();
                }
                assert_eq!(pairs(cmd.query(&mut c).unwrap()), want, "{cmd:?}");
                let n: usize = redis::cmd("ZCOUNT")
                    .arg(&key)
                    .arg(&lo_t)
                    .arg(&hi_t)
                    .query(&mut c)
                    .unwrap();
                let want_n = order
                    .iter()
                    .filter(|(_, s)| in_range(*s, (lo, lo_ex), (hi, hi_ex)))
                    .count();
                assert_eq!(n, want_n, "ZCOUNT {lo_t} {hi_t}");
                // Ranks.
                let start = rng.below(8) as i64 - 4;
                let end = rng.below(8) as i64 - 4;
                let got: Vec<String> = redis::cmd(if rev { "ZREVRANGE" } else { "ZRANGE" })
                    .arg(&key)
                    .arg(start)
                    .arg(end)
                    .query(&mut c)
                    .unwrap();
                let len = order.len() as i64;
                let s = if start < 0 {
                    (len + start).max(0)
                } else {
                    start
                };
                let e = if end < 0 { len + end } else { end.min(len - 1) };
                let mut names: Vec<String> = order.iter().map(|p| p.0.clone()).collect();
                if rev {
                    names.reverse();
                }
                let want: Vec<String> = if s > e || s >= len {
                    Vec::new()
                } else {
                    names[s as usize..=e as usize].to_vec()
                };
                assert_eq!(got, want, "ZRANGE {start} {end} rev={rev}");
                let rank: Option<i64> = redis::cmd(if rev { "ZREVRANK" } else { "ZRANK" })
                    .arg(&key)
                    .arg(&member)
                    .query(&mut c)
                    .unwrap();
                assert_eq!(
                    rank,
                    names.iter().position(|m| *m == member).map(|p| p as i64)
                );
                // Lexicographic (member order).
                let lo = lex_bound(&mut rng, true);
                let hi = lex_bound(&mut rng, false);
                let got: Vec<String> = redis::cmd("ZRANGEBYLEX")
                    .arg(&key)
                    .arg(&lo.0)
                    .arg(&hi.0)
                    .query(&mut c)
                    .unwrap();
                let want: Vec<String> = z.keys().filter(|m| lex_in(m, &lo, &hi)).cloned().collect();
                assert_eq!(got, want, "ZRANGEBYLEX {} {}", lo.0, hi.0);
                let n: usize = redis::cmd("ZLEXCOUNT")
                    .arg(&key)
                    .arg(&lo.0)
                    .arg(&hi.0)
                    .query(&mut c)
                    .unwrap();
                assert_eq!(n, want.len());
                let score: Option<String> = redis::cmd("ZSCORE")
                    .arg(&key)
                    .arg(&member)
                    .query(&mut c)
                    .unwrap();
                assert_eq!(
                    score.map(|s| s.parse::<f64>().unwrap()),
                    z.get(&member).copied()
                );
            }
            50..=55 => {
                // ZREMRANGEBYSCORE / BYRANK / BYLEX.
                let kind = rng.below(3);
                let Some(mut z) = zset_of(&model, &key) else {
                    let r: redis::RedisResult<Value> = redis::cmd("ZREMRANGEBYRANK")
                        .arg(&key)
                        .arg(0)
                        .arg(1)
                        .query(&mut c);
                    assert!(is_wrongtype(&r));
                    continue;
                };
                let order = sorted(&z);
                let victims: Vec<String> = match kind {
                    0 => {
                        let (lo_t, lo, lo_ex) = bound(&mut rng);
                        let (hi_t, hi, hi_ex) = bound(&mut rng);
                        let n: i64 = redis::cmd("ZREMRANGEBYSCORE")
                            .arg(&key)
                            .arg(&lo_t)
                            .arg(&hi_t)
                            .query(&mut c)
                            .unwrap();
                        let v: Vec<String> = order
                            .iter()
                            .filter(|(_, s)| in_range(*s, (lo, lo_ex), (hi, hi_ex)))
                            .map(|p| p.0.clone())
                            .collect();
                        assert_eq!(n, v.len() as i64, "ZREMRANGEBYSCORE {lo_t} {hi_t}");
                        v
                    }
                    1 => {
                        let start = rng.below(6) as i64 - 3;
                        let end = rng.below(6) as i64 - 3;
                        let n: i64 = redis::cmd("ZREMRANGEBYRANK")
                            .arg(&key)
                            .arg(start)
                            .arg(end)
                            .query(&mut c)
                            .unwrap();
                        let len = order.len() as i64;
                        let s = if start < 0 {
                            (len + start).max(0)
                        } else {
                            start
                        };
                        let e = if end < 0 { len + end } else { end.min(len - 1) };
                        let v: Vec<String> = if s > e || s >= len {
                            Vec::new()
                        } else {
                            order[s as usize..=e as usize]
                                .iter()
                                .map(|p| p.0.clone())
                                .collect()
                        };
                        assert_eq!(n, v.len() as i64, "ZREMRANGEBYRANK {start} {end}");
                        v
                    }
                    _ => {
                        let lo = lex_bound(&mut rng, true);
                        let hi = lex_bound(&mut rng, false);
                        let n: i64 = redis::cmd("ZREMRANGEBYLEX")
                            .arg(&key)
                            .arg(&lo.0)
                            .arg(&hi.0)
                            .query(&mut c)
                            .unwrap();
                        let v: Vec<String> =
                            z.keys().filter(|m| lex_in(m, &lo, &hi)).cloned().collect();
                        assert_eq!(n, v.len() as i64, "ZREMRANGEBYLEX");
                        v
                    }
                };
                for m in victims {
                    z.remove(&m);
                }
                put(&mut model, &key, z);
            }
            56..=63 => {
                // ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE / ZRANGESTORE (and the plain forms).
                let (a, b) = (pick(&mut rng), pick(&mut rng));
                let dst = pick(&mut rng);
                let kind = rng.below(4);
                let store = rng.chance(60);
                let w = [(rng.below(3) + 1) as f64, (rng.below(3) + 1) as f64];
                let agg = ["SUM", "MIN", "MAX"][rng.below(3) as usize];
                // ZRANGESTORE reads only its source.
                let srcs = if kind == 3 { vec![&a] } else { vec![&a, &b] };
                let ins: Option<Vec<Z>> = srcs.iter().map(|k| zset_of(&model, k)).collect();
                let mut cmd;
                if kind == 3 {
                    cmd = redis::cmd("ZRANGESTORE");
                    cmd.arg(&dst).arg(&a).arg(0).arg(2);
                } else {
                    let name = ["ZUNION", "ZINTER", "ZDIFF"][kind as usize];
                    cmd = redis::cmd(&if store {
                        format!("{name}STORE")
                    } else {
                        name.to_string()
                    });
                    if store {
                        cmd.arg(&dst);
                    }
                    cmd.arg(2).arg(&a).arg(&b);
                    if kind < 2 {
                        cmd.arg("WEIGHTS")
                            .arg(w[0])
                            .arg(w[1])
                            .arg("AGGREGATE")
                            .arg(agg);
                    }
                    if !store {
                        cmd.arg("WITHSCORES");
                    }
                }
                let r: redis::RedisResult<Value> = cmd.query(&mut c);
                let Some(ins) = ins else {
                    assert!(is_wrongtype(&r), "{cmd:?}: {r:?}");
                    continue;
                };
                let combine = |x: f64, y: f64| match agg {
                    "SUM" => {
                        let s = x + y;
                        if s.is_nan() { 0.0 } else { s }
                    }
                    "MIN" => x.min(y),
                    _ => x.max(y),
                };
                let weigh = |s: f64, w: f64| {
                    let v = s * w;
                    if v.is_nan() { 0.0 } else { v }
                };
                let result: Z = match kind {
                    0 => {
                        let mut out = Z::new();
                        for (i, z) in ins.iter().enumerate() {
                            for (m, s) in z {
                                let v = weigh(*s, w[i]);
                                let e = out.get(m).map_or(v, |cur| combine(*cur, v));
                                out.insert(m.clone(), e);
                            }
                        }
                        out
                    }
                    1 => ins[0]
                        .iter()
                        .filter_map(|(m, s)| {
                            ins[1]
                                .get(m)
                                .map(|t| (m.clone(), combine(weigh(*s, w[0]), weigh(*t, w[1]))))
                        })
                        .collect(),
                    2 => ins[0]
                        .iter()
                        .filter(|(m, _)| !ins[1].contains_key(*m))
                        .map(|(m, s)| (m.clone(), *s))
                        .collect(),
                    _ => sorted(&ins[0]).into_iter().take(3).collect(),
                };
                if store || kind == 3 {
                    assert_eq!(r.unwrap(), Value::Int(result.len() as i64), "{cmd:?}");
                    model.remove(&dst);
                    put(&mut model, &dst, result);
                } else {
                    assert_eq!(pairs(r.unwrap()), sorted(&result), "{cmd:?}");
                }
            }
            64..=66 => {
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                model.remove(&key);
            }
            67..=68 => {
                let _: i64 = redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(1)
                    .query(&mut c)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(3));
                model.remove(&key);
            }
            69..=71 => {
                let v = format!("x{}", rng.below(100));
                let _: () = redis::cmd("SET").arg(&key).arg(&v).query(&mut c).unwrap();
                model.insert(key.clone(), V::Str(v));
            }
            72..=73 => {
                // A big zset, gone by DEL / expiry / overwrite / ZINTERSTORE of nothing, then
                // a small one under the same key: only its members may be seen.
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
                let mut cmd = redis::cmd("ZADD");
                cmd.arg(&key);
                for i in 0..1000 {
                    cmd.arg(i).arg(format!("big{i}"));
                }
                let n: i64 = cmd.query(&mut c).unwrap();
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
                        let n: i64 = redis::cmd("ZINTERSTORE")
                            .arg(&key)
                            .arg(2)
                            .arg(&key)
                            .arg("no-such-zset")
                            .query(&mut c)
                            .unwrap();
                        assert_eq!(n, 0);
                    }
                }
                let _: i64 = redis::cmd("ZADD")
                    .arg(&key)
                    .arg(7)
                    .arg("new")
                    .query(&mut c)
                    .unwrap();
                put(&mut model, &key, Z::from([("new".to_string(), 7.0)]));
            }
            74..=97 => check_all(&mut c, &model, &keys),
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
fn zsets_match_a_model_across_restarts() {
    run_seeded("model_zset", run);
}
