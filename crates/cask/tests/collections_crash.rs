//! Collections survive kill -9 whole: every acknowledged multi-element write is there after a
//! restart, every write is all-or-nothing (one engine batch), and each collection's stored
//! count equals its elements.

mod server_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server_common::Server;

const GROUP: usize = 10;

fn conn(s: &Server) -> redis::Connection {
    redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// One write of GROUP elements, numbered `g`, by client `c`, to each type.
fn write_group(con: &mut redis::Connection, c: usize, g: usize) -> redis::RedisResult<()> {
    let items: Vec<String> = (0..GROUP).map(|i| format!("g{g:07}-{i}")).collect();
    let mut hset = redis::cmd("HSET");
    hset.arg(format!("h{c}"));
    for it in &items {
        hset.arg(it).arg("v");
    }
    hset.query::<i64>(con)?;
    redis::cmd("SADD")
        .arg(format!("s{c}"))
        .arg(&items)
        .query::<i64>(con)?;
    redis::cmd("RPUSH")
        .arg(format!("l{c}"))
        .arg(&items)
        .query::<i64>(con)?;
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(format!("z{c}"));
    for (i, it) in items.iter().enumerate() {
        zadd.arg((g * GROUP + i) as f64).arg(it);
    }
    zadd.query::<i64>(con)?;
    Ok(())
}

/// Groups present in a list of items, checking that each is complete.
fn groups(items: &[String], what: &str) -> std::collections::BTreeSet<usize> {
    let mut count = std::collections::BTreeMap::<usize, usize>::new();
    for it in items {
        // "g<number>-<i>": the number may be wider than its 5-digit padding.
        let g: usize = it[1..it.find('-').unwrap()].parse().unwrap();
        *count.entry(g).or_default() += 1;
    }
    for (g, n) in &count {
        assert_eq!(*n, GROUP, "{what}: group {g} is partial ({n} of {GROUP})");
    }
    count.into_keys().collect()
}

#[test]
fn acknowledged_collection_writes_survive_kill_9_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clients = 4;
    // Groups acknowledged per client, over every cycle.
    let acked: Arc<Vec<Mutex<Vec<usize>>>> =
        Arc::new((0..clients).map(|_| Mutex::new(Vec::new())).collect());
    for cycle in 0..3 {
        let mut server = Server::start(dir.path(), &["--sync", "always"]);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for c in 0..clients {
            let mut con = conn(&server);
            let (acked, stop) = (acked.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut g = cycle * 100_000;
                while !stop.load(Ordering::Relaxed) {
                    if write_group(&mut con, c, g).is_err() {
                        return;
                    }
                    acked[c].lock().unwrap().push(g);
                    g += 1;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(700 + 300 * cycle as u64));
        server.signal("KILL");
        server.wait(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }

        let server = Server::start(dir.path(), &["--sync", "always"]);
        let mut con = conn(&server);
        for c in 0..clients {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(format!("h{c}"))
                .query(&mut con)
                .unwrap();
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(format!("s{c}"))
                .query(&mut con)
                .unwrap();
            let list: Vec<String> = redis::cmd("LRANGE")
                .arg(format!("l{c}"))
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .unwrap();
            let zset: Vec<String> = redis::cmd("ZRANGE")
                .arg(format!("z{c}"))
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .unwrap();
            // Stored counts equal the elements.
            let counts: Vec<usize> = ["HLEN", "SCARD", "LLEN", "ZCARD"]
                .iter()
                .zip([
                    format!("h{c}"),
                    format!("s{c}"),
                    format!("l{c}"),
                    format!("z{c}"),
                ])
                .map(|(cmd, key)| redis::cmd(cmd).arg(key).query(&mut con).unwrap())
                .collect();
            assert_eq!(
                counts,
                vec![fields.len(), members.len(), list.len(), zset.len()],
                "cycle {cycle} client {c}: counts disagree with elements"
            );
            let (gh, gs) = (groups(&fields, "hash"), groups(&members, "set"));
            let (gl, gz) = (groups(&list, "list"), groups(&zset, "zset"));
            // The zset is ordered by score = write order, the list by push order.
            assert!(list.windows(2).all(|w| w[0] < w[1]), "list out of order");
            assert!(zset.windows(2).all(|w| w[0] < w[1]), "zset out of order");
            for g in acked[c].lock().unwrap().iter() {
                for (present, what) in [(&gh, "hash"), (&gs, "set"), (&gl, "list"), (&gz, "zset")] {
                    assert!(
                        present.contains(g),
                        "cycle {cycle} client {c}: acknowledged group {g} missing from the {what}"
                    );
                }
            }
        }
        drop(con);
        drop(server);
    }
}
