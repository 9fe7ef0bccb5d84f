//! SORT / SORT_RO, COMMAND GETKEYS, INFO commandstats, the dirty counter and MEMORY USAGE,
//! through the `redis` crate against a real `cask serve`.

mod server_common;

use redis::Value;
use server_common::{Server, conn, wait_blocked};

fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<Value>(con) {
        Ok(v) => panic!("{args:?}: expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn sort_orders_lists_sets_and_sorted_sets_as_redis_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let _: i64 = q(&mut c, &["RPUSH", "l", "3", "1", "2", "10"]);
    let v: Vec<String> = q(&mut c, &["SORT", "l"]);
    assert_eq!(v, strs(&["1", "2", "3", "10"]));
    let v: Vec<String> = q(&mut c, &["SORT", "l", "DESC", "LIMIT", "1", "2"]);
    assert_eq!(v, strs(&["3", "2"]));
    let v: Vec<String> = q(&mut c, &["SORT", "l", "ALPHA"]);
    assert_eq!(v, strs(&["1", "10", "2", "3"]));
    // LIMIT is clamped: a huge count, a negative offset, an offset past the end.
    let v: Vec<String> = q(&mut c, &["SORT", "l", "LIMIT", "-5", "9223372036854775807"]);
    assert_eq!(v, strs(&["1", "2", "3", "10"]));
    let v: Vec<String> = q(&mut c, &["SORT", "l", "LIMIT", "9", "2"]);
    assert!(v.is_empty());

    // BY a string key and a hash field; GET # and GET of missing keys.
    let _: () = q(
        &mut c,
        &["MSET", "w_1", "30", "w_2", "20", "w_3", "10", "w_10", "5"],
    );
    for n in ["1", "2", "3", "10"] {
        let _: i64 = q(
            &mut c,
            &["HSET", &format!("o_{n}"), "weight", &format!("-{n}")],
        );
    }
    let v: Vec<String> = q(&mut c, &["SORT", "l", "BY", "w_*"]);
    assert_eq!(v, strs(&["10", "3", "2", "1"]));
    let v: Vec<String> = q(&mut c, &["SORT", "l", "BY", "o_*->weight"]);
    assert_eq!(v, strs(&["10", "3", "2", "1"]));
    let v: Vec<Option<String>> = q(
        &mut c,
        &["SORT", "l", "GET", "#", "GET", "w_*", "GET", "nope_*"],
    );
    let want = ["1", "30", "2", "20", "3", "10", "10", "5"];
    for (i, chunk) in v.chunks(3).enumerate() {
        assert_eq!(chunk[0].as_deref(), Some(want[2 * i]));
        assert_eq!(chunk[1].as_deref(), Some(want[2 * i + 1]));
        assert_eq!(chunk[2], None);
    }
    let v: Vec<Option<String>> = q(&mut c, &["SORT", "l", "GET", "o_*->weight"]);
    assert_eq!(v[0].as_deref(), Some("-1"));
    // A constant BY does not sort: lists keep their order, reversed by DESC.
    let v: Vec<String> = q(
        &mut c,
        &["SORT", "l", "BY", "nosort", "DESC", "LIMIT", "0", "3"],
    );
    assert_eq!(v, strs(&["10", "2", "1"]));

    // Sorted sets: by element, or in score order with BY nosort.
    let _: i64 = q(&mut c, &["ZADD", "z", "3", "5", "1", "7", "2", "6"]);
    let v: Vec<String> = q(&mut c, &["SORT", "z"]);
    assert_eq!(v, strs(&["5", "6", "7"]));
    let v: Vec<String> = q(&mut c, &["SORT", "z", "BY", "nosort"]);
    assert_eq!(v, strs(&["7", "6", "5"]));
    // A set stored without sorting is sorted ALPHA, for a deterministic result.
    let _: i64 = q(&mut c, &["SADD", "s", "b", "c", "a"]);
    let n: i64 = q(&mut c, &["SORT", "s", "BY", "nosort", "STORE", "dst"]);
    assert_eq!(n, 3);
    let v: Vec<String> = q(&mut c, &["LRANGE", "dst", "0", "-1"]);
    assert_eq!(v, strs(&["a", "b", "c"]));

    // Errors: bad doubles, wrong types, STORE in SORT_RO, junk options.
    let e = err(&mut c, &["SORT", "s"]);
    assert!(
        e.contains("One or more scores can't be converted into double"),
        "{e}"
    );
    let _: () = q(&mut c, &["SET", "str", "x"]);
    assert!(err(&mut c, &["SORT", "str"]).contains("WRONGTYPE"));
    assert!(err(&mut c, &["SORT", "o_1"]).contains("WRONGTYPE"));
    assert!(err(&mut c, &["SORT_RO", "l", "STORE", "x"]).contains("syntax error"));
    assert!(err(&mut c, &["SORT", "l", "LIMIT", "1"]).contains("syntax error"));
    assert!(err(&mut c, &["SORT", "l", "LIMIT", "a", "1"]).contains("not an integer"));
    let v: Vec<String> = q(&mut c, &["SORT_RO", "l", "LIMIT", "0", "1"]);
    assert_eq!(v, strs(&["1"]));

    // STORE replaces any type with a list, and an empty result deletes the destination.
    let n: i64 = q(&mut c, &["SORT", "l", "STORE", "str"]);
    assert_eq!(n, 4);
    let t: String = q(&mut c, &["TYPE", "str"]);
    assert_eq!(t, "list");
    let n: i64 = q(&mut c, &["SORT", "missing", "STORE", "str"]);
    assert_eq!(n, 0);
    let e: i64 = q(&mut c, &["EXISTS", "str"]);
    assert_eq!(e, 0);
    // Missing GET values are stored as empty strings.
    let _: i64 = q(
        &mut c,
        &[
            "SORT", "l", "GET", "nope_*", "LIMIT", "0", "1", "STORE", "dst",
        ],
    );
    let v: Vec<String> = q(&mut c, &["LRANGE", "dst", "0", "-1"]);
    assert_eq!(v, strs(&[""]));

    // The stored list is an ordinary list: it survives a restart.
    let _: i64 = q(&mut c, &["SORT", "l", "DESC", "STORE", "kept"]);
    drop(c);
    drop(server);
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let v: Vec<String> = q(&mut c, &["LRANGE", "kept", "0", "-1"]);
    assert_eq!(v, strs(&["10", "3", "2", "1"]));
}

#[test]
fn sort_store_wakes_a_client_blocked_on_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let mut blocked = conn(&server);
    let _: i64 = q(&mut c, &["RPUSH", "src", "b", "a"]);
    let waiter = std::thread::spawn(move || {
        let v: Option<(String, String)> = q(&mut blocked, &["BLPOP", "dst", "10"]);
        v
    });
    wait_blocked(&mut c, 1);
    let n: i64 = q(&mut c, &["SORT", "src", "ALPHA", "STORE", "dst"]);
    assert_eq!(n, 2);
    let got = waiter.join().unwrap();
    assert_eq!(got, Some(("dst".to_string(), "a".to_string())));
    let v: Vec<String> = q(&mut c, &["LRANGE", "dst", "0", "-1"]);
    assert_eq!(v, strs(&["b"]));
}

#[test]
fn command_getkeys_finds_fixed_and_movable_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let cases: &[(&[&str], &[&str])] = &[
        (&["GET", "a"], &["a"]),
        (&["MSET", "a", "1", "b", "2"], &["a", "b"]),
        (&["BLPOP", "a", "b", "0"], &["a", "b"]),
        (
            &["SORT", "abc", "STORE", "x", "STORE", "def"],
            &["abc", "def"],
        ),
        (
            &["SORT", "abc", "GET", "store", "LIMIT", "0", "1"],
            &["abc"],
        ),
        (&["SORT_RO", "abc"], &["abc"]),
        (
            &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
            &["d", "a", "b"],
        ),
        (&["LMPOP", "2", "a", "b", "LEFT"], &["a", "b"]),
        (&["BZMPOP", "0", "1", "z", "MIN"], &["z"]),
    ];
    for (args, want) in cases {
        let mut full = vec!["COMMAND", "GETKEYS"];
        full.extend_from_slice(args);
        let got: Vec<String> = q(&mut c, &full);
        assert_eq!(got, strs(want), "{args:?}");
    }
    assert!(err(&mut c, &["COMMAND", "GETKEYS", "PING"]).contains("no key arguments"));
    assert!(err(&mut c, &["COMMAND", "GETKEYS", "NOPE", "a"]).contains("Invalid command"));
    assert!(err(&mut c, &["COMMAND", "GETKEYS", "GET"]).contains("Invalid number of arguments"));
    assert!(
        err(&mut c, &["COMMAND", "GETKEYS", "LMPOP", "5", "a", "LEFT"])
            .contains("Invalid arguments")
    );
}

fn stat_line(con: &mut redis::Connection, cmd: &str) -> Option<String> {
    let info: String = q(con, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{cmd}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

fn field(line: &str, name: &str) -> u64 {
    line.split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .parse::<f64>()
        .unwrap() as u64
}

fn dirty(con: &mut redis::Connection) -> u64 {
    let info: String = q(con, &["INFO", "persistence"]);
    info.lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .expect("rdb_changes_since_last_save")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn commandstats_and_the_dirty_counter_count_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let _: () = q(&mut c, &["CONFIG", "RESETSTAT"]);
    let _: () = q(&mut c, &["SET", "k", "v"]);
    let _: () = q(&mut c, &["SET", "k", "w"]);
    assert!(err(&mut c, &["SET", "k"]).contains("wrong number of arguments"));
    assert!(err(&mut c, &["LPUSH", "k", "x"]).contains("WRONGTYPE"));
    let set = stat_line(&mut c, "set").expect("cmdstat_set");
    assert_eq!(
        (
            field(&set, "calls"),
            field(&set, "rejected_calls"),
            field(&set, "failed_calls")
        ),
        (2, 1, 0)
    );
    let lpush = stat_line(&mut c, "lpush").expect("cmdstat_lpush");
    assert_eq!(
        (field(&lpush, "calls"), field(&lpush, "failed_calls")),
        (1, 1)
    );
    // The default INFO leaves commandstats out, as Redis does.
    let all: String = q(&mut c, &["INFO"]);
    assert!(!all.contains("cmdstat_"), "{all}");
    let everything: String = q(&mut c, &["INFO", "everything"]);
    assert!(everything.contains("cmdstat_set:"));

    // Commands queued by MULTI count when EXEC runs them.
    let _: () = q(&mut c, &["MULTI"]);
    let _: Value = q(&mut c, &["INCR", "n"]);
    let _: Value = q(&mut c, &["INCR", "n"]);
    let _: Value = q(&mut c, &["EXEC"]);
    assert_eq!(field(&stat_line(&mut c, "incr").unwrap(), "calls"), 2);

    // A blocked command counts once, when it is served; a push and the pop it serves
    // are two changes.
    let before = dirty(&mut c);
    let mut blocked = conn(&server);
    let waiter = std::thread::spawn(move || {
        let v: Option<(String, String)> = q(&mut blocked, &["BLPOP", "list", "10"]);
        v
    });
    wait_blocked(&mut c, 1);
    let _: i64 = q(&mut c, &["LPUSH", "list", "a"]);
    assert!(waiter.join().unwrap().is_some());
    assert_eq!(dirty(&mut c), before + 2);
    assert_eq!(field(&stat_line(&mut c, "blpop").unwrap(), "calls"), 1);
    // Reads change nothing; SAVE brings the counter back to zero.
    let _: Option<String> = q(&mut c, &["GET", "k"]);
    assert_eq!(dirty(&mut c), before + 2);
    let _: () = q(&mut c, &["SAVE"]);
    assert_eq!(dirty(&mut c), 0);

    // A blocking command that times out counts once too, and changes nothing.
    let _: () = q(&mut c, &["CONFIG", "RESETSTAT"]);
    let before = dirty(&mut c);
    let v: Option<(String, String)> = q(&mut c, &["BLPOP", "empty", "0.1"]);
    assert_eq!(v, None);
    assert_eq!(field(&stat_line(&mut c, "blpop").unwrap(), "calls"), 1);
    assert_eq!(dirty(&mut c), before);

    let _: () = q(&mut c, &["CONFIG", "RESETSTAT"]);
    assert_eq!(stat_line(&mut c, "set"), None);
}

#[test]
fn bgsave_resets_the_dirty_counter_once_it_has_saved() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let _: () = q(&mut c, &["SET", "a", "1"]);
    let _: i64 = q(&mut c, &["RPUSH", "l", "x", "y"]);
    assert_eq!(dirty(&mut c), 2);
    let reply: String = q(&mut c, &["BGSAVE"]);
    assert_eq!(reply, "Background saving started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while dirty(&mut c) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "BGSAVE never reset the counter"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let info: String = q(&mut c, &["INFO", "persistence"]);
    assert!(info.contains("rdb_bgsave_in_progress:0"), "{info}");
    let _: () = q(&mut c, &["SET", "b", "2"]);
    assert_eq!(dirty(&mut c), 1);
}

#[test]
fn refusals_before_auth_count_as_rejected_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--requirepass", "pw"]);
    let mut c = conn(&server);
    let e = err(&mut c, &["SET", "k", "v"]);
    assert!(e.contains("NOAUTH"), "{e}");
    let e = err(&mut c, &["SET", "k", "v"]);
    assert!(e.contains("NOAUTH"), "{e}");
    let _: () = q(&mut c, &["AUTH", "pw"]);
    let _: () = q(&mut c, &["SET", "k", "v"]);
    let set = stat_line(&mut c, "set").expect("cmdstat_set");
    assert_eq!(
        (field(&set, "calls"), field(&set, "rejected_calls")),
        (1, 2),
        "{set}"
    );
}

#[test]
fn memory_usage_estimates_the_index_share_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = conn(&server);
    let _: () = q(&mut c, &["SET", "s", "v"]);
    let small: i64 = q(&mut c, &["MEMORY", "USAGE", "s"]);
    assert!(small > 0);
    let members: Vec<String> = (0..1000).map(|i| format!("member-{i}")).collect();
    let mut sadd = vec!["SADD", "big"];
    sadd.extend(members.iter().map(String::as_str));
    let _: i64 = q(&mut c, &sadd);
    let big: i64 = q(&mut c, &["MEMORY", "USAGE", "big", "SAMPLES", "0"]);
    assert!(big > 1000 * 10, "{big}");
    let sampled: i64 = q(&mut c, &["MEMORY", "USAGE", "big"]);
    assert!(sampled > 1000 * 10, "{sampled}");
    let missing: Option<i64> = q(&mut c, &["MEMORY", "USAGE", "nope"]);
    assert_eq!(missing, None);
    assert!(err(&mut c, &["MEMORY", "USAGE", "s", "SAMPLES"]).contains("syntax error"));
    assert!(err(&mut c, &["MEMORY", "NOPE"]).contains("unknown subcommand"));
}
