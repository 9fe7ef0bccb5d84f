//! Keyspace notifications (Redis's `notify-keyspace-events`): write commands publish what
//! they did to `__keyspace@<db>__:<key>` (message: the event) and `__keyevent@<db>__:<event>`
//! (message: the key), for the classes the configuration selects.
//!
//! Off by default, as in Redis, and then free: nothing below runs. When on, each write
//! command looks up whether its keys exist before and after it runs (index only) and
//! publishes Redis's events for it ([`command_events`]: `set`, `lpush`, `del` when a pop
//! empties a list, `new` for a key that did not exist...), only if it wrote something.
//!
//! Expired events: the engine hides an expired key without a write, so the server keeps,
//! while the `x` class is on, a timetable of the keys written with an expiry; a task checks
//! it every 100 ms (Redis's active expiry runs 10 times a second) and publishes `expired`
//! for each key that is gone at its expiry time. Keys that got their expiry while the
//! class was off, or through the HTTP API, are not in it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::Shared;
use super::cmd::{Spec, is};
use super::frame::Frame;
use super::keyspace::Store;

/// `K`: `__keyspace@<db>__:<key>` channels.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: `__keyevent@<db>__:<event>` channels.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME...).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: expired keys.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: evicted keys (cask evicts nothing).
pub const EVICTED: u32 = 1 << 9;
/// `t`: streams (cask has none).
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses (accepted; cask publishes none).
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module events (cask has no modules).
pub const MODULE: u32 = 1 << 13;
/// `n`: new keys.
pub const NEW: u32 = 1 << 14;
/// `A`: every class but `m` and `n`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Parses a `notify-keyspace-events` value; `None` for a character that is no class.
pub fn parse_flags(s: &[u8]) -> Option<u32> {
    let mut flags = 0;
    for c in s {
        flags |= match c {
            b'A' => ALL,
            b'g' => GENERIC,
            b'$' => STRING,
            b'l' => LIST,
            b's' => SET,
            b'h' => HASH,
            b'z' => ZSET,
            b'x' => EXPIRED,
            b'e' => EVICTED,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b't' => STREAM,
            b'm' => KEY_MISS,
            b'd' => MODULE,
            b'n' => NEW,
            _ => return None,
        };
    }
    Some(flags)
}

/// Formats flags as Redis's CONFIG GET does (`A` for all classes, then `K`, `E`, `m`).
pub fn flags_to_string(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The notification settings and the expiry timetable.
#[derive(Debug, Default)]
pub struct Notifier {
    flags: AtomicU32,
    timetable: Mutex<Timetable>,
}

/// Keys written with an expiry, by expiry time.
#[derive(Debug, Default)]
struct Timetable {
    by_time: BTreeSet<(u64, u8, Bytes)>,
    by_key: HashMap<(u8, Bytes), u64>,
}

impl Timetable {
    fn forget(&mut self, db: u8, key: &Bytes) {
        if let Some(at) = self.by_key.remove(&(db, key.clone())) {
            self.by_time.remove(&(at, db, key.clone()));
        }
    }
}

impl Notifier {
    /// The configured classes.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Sets the classes (CONFIG SET notify-keyspace-events); turning `x` off empties the
    /// timetable.
    pub fn set_flags(&self, flags: u32) {
        self.flags.store(flags, Ordering::Relaxed);
        if flags & EXPIRED == 0 {
            *self.timetable.lock().unwrap_or_else(|e| e.into_inner()) = Timetable::default();
        }
    }

    /// Keeps the `expired` timetable up to date after a write of `key` (while class `x`
    /// is on): it leaves the table, and comes back with its new expiry if it has one.
    fn track(&self, db: u8, key: &Bytes, expire_at: Option<u64>) {
        if self.flags() & EXPIRED == 0 {
            return;
        }
        let mut t = self.timetable.lock().unwrap_or_else(|e| e.into_inner());
        t.forget(db, key);
        if let Some(at) = expire_at {
            t.by_time.insert((at, db, key.clone()));
            t.by_key.insert((db, key.clone()), at);
        }
    }

    /// Whether any event can be published at all: a channel kind and a class are on.
    pub fn active(&self) -> bool {
        let f = self.flags();
        f & (KEYSPACE | KEYEVENT) != 0 && f & !(KEYSPACE | KEYEVENT) != 0
    }

    /// Publishes event `event` of class `class` on `key` of database `db`, if that class
    /// is on.
    pub fn notify(&self, shared: &Shared, class: u32, event: &str, db: u8, key: &[u8]) {
        let flags = self.flags();
        if flags & class == 0 {
            return;
        }
        if flags & KEYSPACE != 0 {
            let mut chan = format!("__keyspace@{db}__:").into_bytes();
            chan.extend_from_slice(key);
            shared.pubsub.publish(
                &Bytes::from(chan),
                &Bytes::copy_from_slice(event.as_bytes()),
            );
        }
        if flags & KEYEVENT != 0 {
            let chan = format!("__keyevent@{db}__:{event}");
            shared
                .pubsub
                .publish(&Bytes::from(chan), &Bytes::copy_from_slice(key));
        }
    }
}

/// What a write command may touch, and whether each key existed before it ran; taken by
/// [`prepare`] only while notifications are on.
#[derive(Debug)]
pub struct Touched {
    db: u8,
    keys: Vec<(u8, Bytes)>,
    before: Vec<bool>,
}

fn exists(store: &Store, db: u8, key: &[u8]) -> bool {
    matches!(store.meta(db, key), Ok(Some(_)))
}

/// The keys a write command may change, with their databases (COPY ... DB and MOVE
/// write another database).
fn touched_keys(spec: &Spec, args: &[Bytes], db: u8) -> Vec<(u8, Bytes)> {
    let mut keys: Vec<(u8, Bytes)> = spec
        .key_positions(args)
        .unwrap_or_default()
        .into_iter()
        .map(|i| (db, args[i].clone()))
        .collect();
    let other_db = |b: &Bytes| {
        crate::server::parse::parse_i64(b)
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(db)
    };
    match spec.name {
        "move" if args.len() == 3 => keys.push((other_db(&args[2]), args[1].clone())),
        "copy" => {
            // Options follow `COPY src dst`.
            if let Some(i) = args.iter().skip(3).position(|a| is(a, "DB")).map(|i| i + 3)
                && let (Some(n), Some(dst)) = (args.get(i + 1), keys.get_mut(1))
            {
                dst.0 = other_db(n);
            }
        }
        _ => {}
    }
    keys
}

/// The arguments a command looks up for reading, which publish `keymiss` when missing:
/// Redis's `lookupKeyRead` calls. Read-only commands read all their keys except OBJECT and
/// MEMORY (looked up without notifying); among writers, GETDEL, GETEX, GETSET, SET ... GET,
/// COPY and SORT read their first key and the *STORE commands their sources.
fn read_keys(spec: &Spec, args: &[Bytes]) -> Vec<usize> {
    let positions = || spec.key_positions(args).unwrap_or_default();
    match spec.name {
        "object" | "memory" => Vec::new(),
        "getdel" | "getex" | "getset" | "copy" | "sort" => vec![1],
        "set" if args.iter().skip(3).any(|a| is(a, "GET")) => vec![1],
        "sinterstore" | "sunionstore" | "sdiffstore" | "zunionstore" | "zinterstore"
        | "zdiffstore" | "zrangestore" => positions().into_iter().skip(1).collect(),
        _ if spec.flags.contains(&"readonly") => positions(),
        _ => Vec::new(),
    }
}

/// Before a command runs: publishes `keymiss` for each key it reads ([`read_keys`]) that
/// does not exist, if class `m` is on (Redis publishes it from the lookup, before the
/// command's own events).
pub fn key_misses(shared: &Shared, spec: &Spec, args: &[Bytes], db: u8) {
    let flags = shared.notify.flags();
    if flags & KEY_MISS == 0 || flags & (KEYSPACE | KEYEVENT) == 0 {
        return;
    }
    for i in read_keys(spec, args) {
        if let Some(key) = args.get(i)
            && !exists(&shared.store, db, key)
        {
            shared.notify.notify(shared, KEY_MISS, "keymiss", db, key);
        }
    }
}

/// Before a write command runs: the existence of its keys, if notifications are on.
pub fn prepare(shared: &Shared, spec: &Spec, args: &[Bytes], db: u8) -> Option<Touched> {
    if !shared.notify.active() || !spec.flags.contains(&"write") {
        return None;
    }
    let keys = touched_keys(spec, args, db);
    let before = keys
        .iter()
        .map(|(d, k)| exists(&shared.store, *d, k))
        .collect();
    Some(Touched { db, keys, before })
}

/// After it ran: publishes its events if it wrote anything, and keeps the expiry
/// timetable up to date.
pub fn finish(
    shared: &Shared,
    touched: Touched,
    name: &'static str,
    args: &[Bytes],
    reply: &Frame,
    wrote: bool,
) {
    let notifier = &shared.notify;
    if matches!(name, "flushdb" | "flushall") {
        let mut t = notifier.timetable.lock().unwrap_or_else(|e| e.into_inner());
        if name == "flushall" {
            *t = Timetable::default();
        } else {
            let db = touched.db;
            t.by_time.retain(|(_, d, _)| *d != db);
            t.by_key.retain(|(d, _), _| *d != db);
        }
        return;
    }
    if !wrote {
        return;
    }
    let store = &shared.store;
    let metas: Vec<Option<cask_engine::KeyMeta>> = touched
        .keys
        .iter()
        .map(|(d, k)| store.meta(*d, k).ok().flatten())
        .collect();
    let after: Vec<bool> = metas.iter().map(Option::is_some).collect();
    for (i, (db, key)) in touched.keys.iter().enumerate() {
        if !touched.before[i] && after[i] {
            notifier.notify(shared, NEW, "new", *db, key);
        }
    }
    for (class, event, db, key) in command_events(name, args, reply, &touched, &after) {
        notifier.notify(shared, class, event, db, &key);
    }
    for ((db, key), meta) in touched.keys.iter().zip(&metas) {
        notifier.track(*db, key, meta.as_ref().and_then(|m| m.expire_at));
    }
}

/// What a write through the HTTP API did to a string key.
#[derive(Debug, Clone, Copy)]
pub enum HttpWrite {
    /// Stored a value (`created`: the key did not exist), with this expiry.
    Set {
        /// The key did not exist before.
        created: bool,
        /// Expiry, ms since the epoch.
        expire_at: Option<u64>,
    },
    /// Deleted an existing key.
    Deleted,
}

/// After a write through the HTTP API: the events SET (with EX) or DEL would publish
/// (`new`, `set`, `expire`; `del`), and the expiry timetable, so that subscribers see
/// every change whichever interface made it.
pub fn http_write(shared: &Shared, db: u8, key: &[u8], wrote: HttpWrite) {
    let notifier = &shared.notify;
    if !notifier.active() {
        return;
    }
    match wrote {
        HttpWrite::Set { created, expire_at } => {
            if created {
                notifier.notify(shared, NEW, "new", db, key);
            }
            notifier.notify(shared, STRING, "set", db, key);
            if expire_at.is_some() {
                notifier.notify(shared, GENERIC, "expire", db, key);
            }
            notifier.track(db, &Bytes::copy_from_slice(key), expire_at);
        }
        HttpWrite::Deleted => {
            notifier.notify(shared, GENERIC, "del", db, key);
            notifier.track(db, &Bytes::copy_from_slice(key), None);
        }
    }
}

/// One event: class, name, database, key.
type Event = (u32, &'static str, u8, Bytes);

/// Redis 7's events for a write command that wrote something (`notifyKeyspaceEvent` calls
/// of its implementation), in Redis's order; `new` is published before them by
/// [`finish`].
fn command_events(
    name: &'static str,
    args: &[Bytes],
    reply: &Frame,
    t: &Touched,
    after: &[bool],
) -> Vec<Event> {
    let mut ev: Vec<Event> = Vec::new();
    let key = |i: usize| t.keys.get(i).cloned();
    let push = |ev: &mut Vec<Event>, class: u32, event: &'static str, i: usize| {
        if let Some((db, k)) = key(i) {
            ev.push((class, event, db, k));
        }
    };
    // `del` for a key a pop or removal emptied.
    let emptied = |ev: &mut Vec<Event>, i: usize| {
        if t.before.get(i) == Some(&true)
            && after.get(i) == Some(&false)
            && let Some((db, k)) = t.keys.get(i)
        {
            ev.push((GENERIC, "del", *db, k.clone()));
        }
    };
    // The key a multi-key pop served, from its reply (`[key, ...]`).
    let served = |reply: &Frame| -> Option<usize> {
        let Frame::Array(items) = reply else {
            return None;
        };
        let Some(Frame::Bulk(k)) = items.first() else {
            return None;
        };
        t.keys.iter().position(|(_, key)| key == k)
    };
    // An option among the arguments from `from` on (after the key and any value).
    let has = |from: usize, word: &str| args.iter().skip(from).any(|a| is(a, word));
    // The word right after the keys of LMPOP/ZMPOP (`numkeys` at 1) and their blocking
    // forms (`numkeys` at 2): the end or order to pop from.
    let after_keys = |numkeys_at: usize| -> Option<&Bytes> {
        let n = crate::server::parse::parse_i64(args.get(numkeys_at)?)?;
        args.get(numkeys_at + 1 + usize::try_from(n).ok()?)
    };
    match name {
        "set" => {
            push(&mut ev, STRING, "set", 0);
            if ["EX", "PX", "EXAT", "PXAT"].iter().any(|w| has(3, w)) {
                push(&mut ev, GENERIC, "expire", 0);
            }
        }
        "setex" | "psetex" => {
            push(&mut ev, STRING, "set", 0);
            push(&mut ev, GENERIC, "expire", 0);
        }
        "setnx" | "getset" | "mset" | "msetnx" => {
            for i in 0..t.keys.len() {
                push(&mut ev, STRING, "set", i);
            }
        }
        "append" | "setrange" | "incrbyfloat" | "setbit" => {
            push(&mut ev, STRING, name, 0);
        }
        "incr" | "decr" | "incrby" | "decrby" => push(&mut ev, STRING, "incrby", 0),
        "getdel" => push(&mut ev, GENERIC, "del", 0),
        "getex" => {
            let e = if has(2, "PERSIST") {
                "persist"
            } else {
                "expire"
            };
            push(&mut ev, GENERIC, e, 0);
        }
        "del" | "unlink" => {
            for i in 0..t.keys.len() {
                emptied(&mut ev, i);
            }
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => {
            // An expiry in the past deletes the key.
            let e = if after.first() == Some(&true) {
                "expire"
            } else {
                "del"
            };
            push(&mut ev, GENERIC, e, 0);
        }
        "persist" => push(&mut ev, GENERIC, "persist", 0),
        "restore" => {
            let e = if after.first() == Some(&true) {
                "restore"
            } else {
                "del"
            };
            push(&mut ev, GENERIC, e, 0);
        }
        "rename" | "renamenx" => {
            push(&mut ev, GENERIC, "rename_from", 0);
            push(&mut ev, GENERIC, "rename_to", 1);
        }
        "copy" => push(&mut ev, GENERIC, "copy_to", 1),
        "move" => {
            push(&mut ev, GENERIC, "move_from", 0);
            push(&mut ev, GENERIC, "move_to", 1);
        }
        "lpush" | "lpushx" => push(&mut ev, LIST, "lpush", 0),
        "rpush" | "rpushx" => push(&mut ev, LIST, "rpush", 0),
        "linsert" | "lset" => push(&mut ev, LIST, name, 0),
        "lpop" | "rpop" | "lrem" | "ltrim" => {
            push(&mut ev, LIST, name, 0);
            emptied(&mut ev, 0);
        }
        "lmove" | "blmove" | "rpoplpush" | "brpoplpush" => {
            let (from, to) = if name.ends_with("move") {
                (
                    args.get(3).is_some_and(|a| is(a, "LEFT")),
                    args.get(4).is_some_and(|a| is(a, "LEFT")),
                )
            } else {
                (false, true)
            };
            push(&mut ev, LIST, if to { "lpush" } else { "rpush" }, 1);
            push(&mut ev, LIST, if from { "lpop" } else { "rpop" }, 0);
            emptied(&mut ev, 0);
        }
        "blpop" | "brpop" | "lmpop" | "blmpop" => {
            if let Some(i) = served(reply) {
                let left = match name {
                    "blpop" => true,
                    "brpop" => false,
                    "lmpop" => after_keys(1).is_some_and(|a| is(a, "LEFT")),
                    _ => after_keys(2).is_some_and(|a| is(a, "LEFT")),
                };
                push(&mut ev, LIST, if left { "lpop" } else { "rpop" }, i);
                emptied(&mut ev, i);
            }
        }
        "hset" | "hmset" | "hsetnx" => push(&mut ev, HASH, "hset", 0),
        "hincrby" | "hincrbyfloat" => push(&mut ev, HASH, name, 0),
        "hdel" => {
            push(&mut ev, HASH, "hdel", 0);
            emptied(&mut ev, 0);
        }
        "sadd" => push(&mut ev, SET, "sadd", 0),
        "srem" | "spop" => {
            push(&mut ev, SET, name, 0);
            emptied(&mut ev, 0);
        }
        "smove" => {
            push(&mut ev, SET, "srem", 0);
            emptied(&mut ev, 0);
            push(&mut ev, SET, "sadd", 1);
        }
        "sinterstore" | "sunionstore" | "sdiffstore" => stored(&mut ev, SET, name, t, after, 0),
        "zunionstore" | "zinterstore" | "zdiffstore" | "zrangestore" => {
            stored(&mut ev, ZSET, name, t, after, 0);
        }
        "sort" if t.keys.len() > 1 => stored(&mut ev, LIST, "sortstore", t, after, 1),
        "zadd" => {
            // Options come before the first score.
            let incr = args
                .iter()
                .skip(2)
                .take_while(|a| {
                    ["NX", "XX", "GT", "LT", "CH", "INCR"]
                        .iter()
                        .any(|w| is(a, w))
                })
                .any(|a| is(a, "INCR"));
            push(&mut ev, ZSET, if incr { "zincr" } else { "zadd" }, 0);
        }
        "zincrby" => push(&mut ev, ZSET, "zincr", 0),
        "zrem" | "zremrangebyscore" | "zremrangebyrank" | "zremrangebylex" | "zpopmin"
        | "zpopmax" => {
            push(&mut ev, ZSET, name, 0);
            emptied(&mut ev, 0);
        }
        "bzpopmin" | "bzpopmax" | "zmpop" | "bzmpop" => {
            if let Some(i) = served(reply) {
                let min = match name {
                    "bzpopmin" => true,
                    "bzpopmax" => false,
                    "zmpop" => after_keys(1).is_some_and(|a| is(a, "MIN")),
                    _ => after_keys(2).is_some_and(|a| is(a, "MIN")),
                };
                push(&mut ev, ZSET, if min { "zpopmin" } else { "zpopmax" }, i);
                emptied(&mut ev, i);
            }
        }
        _ => {}
    }
    ev
}

/// The events of a command that stores its result in key `i`: the command's event, or
/// `del` when an empty result deleted an existing key.
fn stored(
    ev: &mut Vec<Event>,
    class: u32,
    name: &'static str,
    t: &Touched,
    after: &[bool],
    i: usize,
) {
    let Some((db, k)) = t.keys.get(i) else {
        return;
    };
    if after.get(i) == Some(&true) {
        ev.push((class, name, *db, k.clone()));
    } else if t.before.get(i) == Some(&true) {
        ev.push((GENERIC, "del", *db, k.clone()));
    }
}

/// Publishes `expired` for the keys of the timetable whose time has come and that are
/// gone, every 100 ms, until the server is dropped.
pub async fn expire_loop(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.notify.flags() & EXPIRED == 0 {
            continue;
        }
        let now = shared.store.db.now_ms();
        let due: Vec<(u64, u8, Bytes)> = {
            let mut t = shared
                .notify
                .timetable
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut due = Vec::new();
            while let Some(first) = t.by_time.first().cloned() {
                if first.0 > now {
                    break;
                }
                t.by_time.remove(&first);
                t.by_key.remove(&(first.1, first.2.clone()));
                due.push(first);
            }
            due
        };
        for (_, db, key) in due {
            // Gone at its expiry time, with no write since: it expired.
            if !exists(&shared.store, db, &key) {
                shared.notify.notify(&shared, EXPIRED, "expired", db, &key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_format_as_redis_does() {
        for (input, shown) in [
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("KA", "AK"),
            ("EA", "AE"),
            ("", ""),
            ("Exn", "xnE"),
            ("Am", "Am"),
        ] {
            let f = parse_flags(input.as_bytes()).unwrap();
            assert_eq!(flags_to_string(f), shown, "{input}");
        }
        assert_eq!(parse_flags(b"KEQ"), None);
    }

    #[test]
    fn turning_expired_events_off_empties_the_timetable() {
        let n = Notifier::default();
        n.set_flags(parse_flags(b"Ex").unwrap());
        {
            let mut t = n.timetable.lock().unwrap();
            t.by_time.insert((5, 0, Bytes::from_static(b"k")));
            t.by_key.insert((0, Bytes::from_static(b"k")), 5);
        }
        n.set_flags(parse_flags(b"Eg").unwrap());
        let t = n.timetable.lock().unwrap();
        assert!(t.by_time.is_empty() && t.by_key.is_empty());
    }
}
