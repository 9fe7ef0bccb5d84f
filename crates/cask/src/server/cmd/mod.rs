//! Commands: the dispatch table, argument helpers, and one module per command family.
//!
//! [`execute`] follows Redis's `processCommand` order: look the command up (unknown command
//! error), check its arity (wrong number of arguments), check authentication (`NOAUTH`),
//! then run it. Handlers get a [`Ctx`] and the arguments after the command name, and
//! return a [`Frame`] or a [`CmdError`] that becomes the `-ERR ...` reply. Handlers never
//! panic on client input: every argument is validated and every engine error is mapped.

pub mod connection;
pub mod dump;
pub mod hash;
pub mod keys;
pub mod list;
pub mod pubsub;
pub mod server;
pub mod set;
pub mod sort;
pub mod strings;
pub mod tx;
pub mod zset;

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Shared;
use super::connection::ClientState;
use super::frame::Frame;
use super::keyspace::Store;

/// A command's failure: the full error reply text, code included (`ERR ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError(pub String);

/// Result of a command step.
pub type CmdResult<T> = Result<T, CmdError>;

impl CmdError {
    /// `ERR <msg>`.
    pub fn err(msg: impl std::fmt::Display) -> CmdError {
        CmdError(format!("ERR {msg}"))
    }
    /// Redis's syntax error.
    pub fn syntax() -> CmdError {
        CmdError("ERR syntax error".into())
    }
    /// Redis's integer parse error.
    pub fn not_integer() -> CmdError {
        CmdError("ERR value is not an integer or out of range".into())
    }
    /// Redis's float parse error.
    pub fn not_float() -> CmdError {
        CmdError("ERR value is not a valid float".into())
    }
    /// Redis's type error.
    pub fn wrong_type() -> CmdError {
        CmdError("WRONGTYPE Operation against a key holding the wrong kind of value".into())
    }
    /// Redis's missing key error (RENAME and friends).
    pub fn no_such_key() -> CmdError {
        CmdError("ERR no such key".into())
    }
    /// Wrong arity for `name` (lowercase, `a|b` for subcommands).
    pub fn arity(name: &str) -> CmdError {
        CmdError(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    }
    /// Unknown subcommand of `cmd`.
    pub fn unknown_subcommand(sub: &[u8], cmd: &str) -> CmdError {
        CmdError(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            truncate(sub, 128),
            cmd.to_ascii_uppercase()
        ))
    }
}

impl From<cask_engine::Error> for CmdError {
    fn from(e: cask_engine::Error) -> Self {
        tracing::warn!(error = %e, "engine error");
        CmdError::err(e)
    }
}

/// What the connection does after a command.
pub enum Outcome {
    /// Send this reply.
    Reply(Frame),
    /// Send this reply, then close the connection (QUIT).
    Close(Frame),
    /// Close the connection without a reply and shut the server down (SHUTDOWN).
    Shutdown,
    /// Run this off the runtime's workers (fsync, compaction), then send its reply.
    Blocking(Box<dyn FnOnce() -> Frame + Send + 'static>),
    /// Block the client until one of the keys is written, then retry (BLPOP and friends).
    Block(Block),
    /// Send several replies (SUBSCRIBE confirms each channel with its own reply). They are
    /// pushes: CLIENT REPLY OFF / SKIP do not silence them.
    Replies(Vec<Frame>),
}

/// A blocked command: the connection sends the replies it has, registers on `keys`, and
/// calls `retry` each time one of them is written, until it returns a reply or the timeout
/// passes (then it sends `timeout_reply`). Inside MULTI/EXEC a blocking command does not
/// block: it replies `timeout_reply` at once, as in Redis.
pub struct Block {
    /// The keys to wait on, in the client's selected database.
    pub keys: Vec<Bytes>,
    /// How long to wait; `None` waits forever.
    pub timeout: Option<std::time::Duration>,
    /// The command's non-blocking attempt: `Ok(Some(reply))` serves the client,
    /// `Ok(None)` keeps it waiting.
    pub retry: fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult<Option<Frame>>,
    /// The command's arguments (after its name), passed to `retry`.
    pub args: Vec<Bytes>,
    /// The reply when the timeout passes (a null array for BLPOP, a null for BLMOVE).
    pub timeout_reply: Frame,
}

/// Parses a blocking command's timeout (seconds, fractions allowed; 0 waits forever).
///
/// # Errors
/// Redis's texts for a non-number and for a negative timeout.
pub fn timeout_arg(b: &[u8]) -> CmdResult<Option<std::time::Duration>> {
    // Redis reads the timeout with strtold, which also takes hexadecimal ("0x10").
    let hex = b
        .strip_prefix(b"0x")
        .or_else(|| b.strip_prefix(b"0X"))
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .map(|v| v as f64);
    let secs = hex
        .or_else(|| parse_float(b))
        .filter(|v| v.is_finite())
        .ok_or_else(|| CmdError::err("timeout is not a float or out of range"))?;
    // As in Redis: ms rounded up, and the deadline (now + ms) must fit in an i64.
    let ms = (secs * 1000.0).ceil();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64);
    if ms > i64::MAX as f64 - now {
        return Err(CmdError::err("timeout is out of range"));
    }
    if ms < 0.0 {
        return Err(CmdError::err("timeout is negative"));
    }
    if ms == 0.0 {
        return Ok(None);
    }
    // Anything past a few thousand years is "forever" in practice (and keeps the timer's
    // deadline arithmetic far from overflow).
    Ok(Some(std::time::Duration::from_millis(ms.min(1e15) as u64)))
}

/// The context of one command execution.
pub struct Ctx<'a> {
    /// Server-wide state.
    pub shared: &'a Shared,
    /// This connection's state.
    pub client: &'a mut ClientState,
}

impl Ctx<'_> {
    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
    /// The selected database.
    pub fn db(&self) -> u8 {
        self.client.db
    }
    /// Records a write so the reply waits for its durability.
    pub fn wrote(&mut self, version: u64) {
        self.client.max_version = self.client.max_version.max(version);
    }
    /// Now, in ms since the epoch, by the engine's clock.
    pub fn now_ms(&self) -> u64 {
        self.shared.store.db.now_ms()
    }
    /// Counts a key lookup for INFO's keyspace_hits / keyspace_misses.
    pub fn count_lookup(&self, hit: bool) {
        let c = &self.shared.counters;
        if hit {
            c.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            c.misses.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A handler: plain commands reply; a few need the connection to do more.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Replies with a frame.
    Plain(fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult<Frame>),
    /// Returns an [`Outcome`].
    Special(fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult<Outcome>),
}

/// One entry of the command table (also what COMMAND INFO reports).
pub struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i64,
    /// Redis command flags.
    pub flags: &'static [&'static str],
    /// First key argument (0: none).
    pub first_key: i64,
    /// Last key argument (-1: the last argument).
    pub last_key: i64,
    /// Step between keys.
    pub step: i64,
    /// The code.
    pub handler: Handler,
}

impl Spec {
    /// Calls the command's handler on `args` (the whole command, name first).
    ///
    /// # Errors
    /// The handler's error reply.
    pub fn call(&self, ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
        match self.handler {
            Handler::Plain(h) => h(ctx, &args[1..]).map(Outcome::Reply),
            Handler::Special(h) => h(ctx, &args[1..]),
        }
    }

    /// Whether `n` arguments (the name included) fit the command's arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i64;
        if self.arity > 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }

    /// The positions of the keys in `args` (the command name first) of a call of this
    /// command (COMMAND GETKEYS, keyspace notifications).
    ///
    /// # Errors
    /// A key count (`numkeys`) that is not a number or exceeds the arguments.
    pub fn key_positions(&self, args: &[Bytes]) -> CmdResult<Vec<usize>> {
        let invalid = || CmdError::err("Invalid arguments specified for command");
        // `numkeys` at `at`, the keys right after it.
        let numkeys = |at: usize| -> CmdResult<Vec<usize>> {
            let n = args
                .get(at)
                .and_then(|a| crate::server::parse::parse_i64(a))
                .filter(|&n| n > 0)
                .ok_or_else(invalid)? as usize;
            if at + n >= args.len() {
                return Err(invalid());
            }
            Ok((at + 1..=at + n).collect())
        };
        match self.name {
            "zunionstore" | "zinterstore" | "zdiffstore" => {
                let mut keys = vec![1];
                keys.extend(numkeys(2)?);
                return Ok(keys);
            }
            "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "zmpop" | "lmpop" => {
                return numkeys(1);
            }
            "bzmpop" | "blmpop" => return numkeys(2),
            "sort" => {
                // As Redis's sortGetKeys: skip the options' values; the last STORE wins.
                let mut store = None;
                let mut i = 2;
                while i < args.len() {
                    if is(&args[i], "LIMIT") {
                        i += 2;
                    } else if is(&args[i], "GET") || is(&args[i], "BY") {
                        i += 1;
                    } else if is(&args[i], "STORE") && i + 1 < args.len() {
                        store = Some(i + 1);
                        i += 1;
                    }
                    i += 1;
                }
                return Ok(std::iter::once(1).chain(store).collect());
            }
            _ => {}
        }
        if self.first_key <= 0 {
            return Ok(Vec::new());
        }
        let argc = args.len() as i64;
        let last = if self.last_key < 0 {
            argc + self.last_key
        } else {
            self.last_key
        };
        let mut keys = Vec::new();
        let mut i = self.first_key;
        while i <= last && i < argc {
            keys.push(i as usize);
            i += self.step.max(1);
        }
        Ok(keys)
    }
}

const W: &[&str] = &["write"];
const WD: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly", "fast"];
const F: &[&str] = &["fast"];
const NA: &[&str] = &["noauth", "fast"];
const A: &[&str] = &["admin"];
const PS: &[&str] = &["pubsub", "noscript"];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $f:expr, $l:expr, $s:expr, plain $h:path) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $f,
            last_key: $l,
            step: $s,
            handler: Handler::Plain($h),
        }
    };
    ($name:literal, $arity:expr, $flags:expr, $f:expr, $l:expr, $s:expr, special $h:path) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $f,
            last_key: $l,
            step: $s,
            handler: Handler::Special($h),
        }
    };
}

/// Every command cask implements.
pub static COMMANDS: &[Spec] = &[
    // Connection.
    spec!("ping", -1, F, 0, 0, 0, plain connection::ping),
    spec!("echo", 2, F, 0, 0, 0, plain connection::echo),
    spec!("hello", -1, NA, 0, 0, 0, plain connection::hello),
    spec!("auth", -2, NA, 0, 0, 0, plain connection::auth),
    spec!("select", 2, F, 0, 0, 0, plain connection::select),
    spec!("quit", -1, NA, 0, 0, 0, special connection::quit),
    spec!("reset", 1, NA, 0, 0, 0, plain connection::reset),
    spec!("client", -2, &[], 0, 0, 0, plain connection::client),
    spec!("command", -1, &[], 0, 0, 0, plain connection::command),
    // Transactions and pub/sub.
    spec!("multi", 1, F, 0, 0, 0, plain tx::multi),
    spec!("exec", 1, &["noscript"], 0, 0, 0, special tx::exec),
    spec!("discard", 1, F, 0, 0, 0, plain tx::discard),
    spec!("watch", -2, F, 1, -1, 1, plain tx::watch),
    spec!("unwatch", 1, F, 0, 0, 0, plain tx::unwatch),
    spec!("subscribe", -2, PS, 0, 0, 0, special pubsub::subscribe),
    spec!("unsubscribe", -1, PS, 0, 0, 0, special pubsub::unsubscribe),
    spec!("psubscribe", -2, PS, 0, 0, 0, special pubsub::psubscribe),
    spec!("punsubscribe", -1, PS, 0, 0, 0, special pubsub::punsubscribe),
    spec!("publish", 3, &["pubsub", "fast"], 0, 0, 0, plain pubsub::publish),
    spec!("pubsub", -2, &["pubsub"], 0, 0, 0, plain pubsub::pubsub),
    // Server.
    spec!("info", -1, &[], 0, 0, 0, plain server::info),
    spec!("config", -2, A, 0, 0, 0, plain server::config),
    spec!("dbsize", 1, R, 0, 0, 0, plain server::dbsize),
    spec!("flushdb", -1, W, 0, 0, 0, plain server::flushdb),
    spec!("flushall", -1, W, 0, 0, 0, plain server::flushall),
    spec!("time", 1, F, 0, 0, 0, plain server::time),
    spec!("lastsave", 1, F, 0, 0, 0, plain server::lastsave),
    spec!("save", 1, A, 0, 0, 0, special server::save),
    spec!("bgsave", -1, A, 0, 0, 0, plain server::bgsave),
    spec!("bgrewriteaof", 1, A, 0, 0, 0, plain server::bgrewriteaof),
    spec!("shutdown", -1, A, 0, 0, 0, special server::shutdown),
    spec!("function", -2, &["noscript"], 0, 0, 0, plain server::function),
    // Sorted sets (zset.rs).
    spec!("zadd", -4, &["write", "denyoom", "fast"], 1, 1, 1, plain zset::zadd),
    spec!("zincrby", 4, &["write", "denyoom", "fast"], 1, 1, 1, plain zset::zincrby),
    spec!("zrem", -3, &["write", "fast"], 1, 1, 1, plain zset::zrem),
    spec!("zscore", 3, R, 1, 1, 1, plain zset::zscore),
    spec!("zmscore", -3, R, 1, 1, 1, plain zset::zmscore),
    spec!("zcard", 2, R, 1, 1, 1, plain zset::zcard),
    spec!("zcount", 4, R, 1, 1, 1, plain zset::zcount),
    spec!("zlexcount", 4, R, 1, 1, 1, plain zset::zlexcount),
    spec!("zrange", -4, &["readonly"], 1, 1, 1, plain zset::zrange),
    spec!("zrangestore", -5, WD, 1, 2, 1, plain zset::zrangestore),
    spec!("zrangebyscore", -4, &["readonly"], 1, 1, 1, plain zset::zrangebyscore),
    spec!("zrevrangebyscore", -4, &["readonly"], 1, 1, 1, plain zset::zrevrangebyscore),
    spec!("zrangebylex", -4, &["readonly"], 1, 1, 1, plain zset::zrangebylex),
    spec!("zrevrangebylex", -4, &["readonly"], 1, 1, 1, plain zset::zrevrangebylex),
    spec!("zrevrange", -4, &["readonly"], 1, 1, 1, plain zset::zrevrange),
    spec!("zrank", -3, R, 1, 1, 1, plain zset::zrank),
    spec!("zrevrank", -3, R, 1, 1, 1, plain zset::zrevrank),
    spec!("zpopmin", -2, &["write", "fast"], 1, 1, 1, plain zset::zpopmin),
    spec!("zpopmax", -2, &["write", "fast"], 1, 1, 1, plain zset::zpopmax),
    spec!("bzpopmin", -3, &["write", "noscript", "blocking", "fast"], 1, -2, 1, special zset::bzpopmin),
    spec!("bzpopmax", -3, &["write", "noscript", "blocking", "fast"], 1, -2, 1, special zset::bzpopmax),
    spec!("zmpop", -4, &["write", "movablekeys"], 0, 0, 0, plain zset::zmpop),
    spec!("bzmpop", -5, &["write", "blocking", "movablekeys"], 0, 0, 0, special zset::bzmpop),
    spec!("zunionstore", -4, &["write", "denyoom", "movablekeys"], 1, 1, 1, plain zset::zunionstore),
    spec!("zinterstore", -4, &["write", "denyoom", "movablekeys"], 1, 1, 1, plain zset::zinterstore),
    spec!("zdiffstore", -4, &["write", "denyoom", "movablekeys"], 1, 1, 1, plain zset::zdiffstore),
    spec!("zunion", -3, &["readonly", "movablekeys"], 0, 0, 0, plain zset::zunion),
    spec!("zinter", -3, &["readonly", "movablekeys"], 0, 0, 0, plain zset::zinter),
    spec!("zdiff", -3, &["readonly", "movablekeys"], 0, 0, 0, plain zset::zdiff),
    spec!("zintercard", -3, &["readonly", "movablekeys"], 0, 0, 0, plain zset::zintercard),
    spec!("zremrangebyscore", 4, W, 1, 1, 1, plain zset::zremrangebyscore),
    spec!("zremrangebyrank", 4, W, 1, 1, 1, plain zset::zremrangebyrank),
    spec!("zremrangebylex", 4, W, 1, 1, 1, plain zset::zremrangebylex),
    spec!("zrandmember", -2, &["readonly"], 1, 1, 1, plain zset::zrandmember),
    spec!("zscan", -3, &["readonly"], 1, 1, 1, plain zset::zscan),
    // Sets (set.rs).
    spec!("sadd", -3, &["write", "denyoom", "fast"], 1, 1, 1, plain set::sadd),
    spec!("srem", -3, &["write", "fast"], 1, 1, 1, plain set::srem),
    spec!("smembers", 2, &["readonly"], 1, 1, 1, plain set::smembers),
    spec!("sismember", 3, R, 1, 1, 1, plain set::sismember),
    spec!("smismember", -3, R, 1, 1, 1, plain set::smismember),
    spec!("scard", 2, R, 1, 1, 1, plain set::scard),
    spec!("spop", -2, &["write", "fast"], 1, 1, 1, plain set::spop),
    spec!("srandmember", -2, &["readonly"], 1, 1, 1, plain set::srandmember),
    spec!("smove", 4, &["write", "fast"], 1, 2, 1, plain set::smove),
    spec!("sinter", -2, &["readonly"], 1, -1, 1, plain set::sinter),
    spec!("sunion", -2, &["readonly"], 1, -1, 1, plain set::sunion),
    spec!("sdiff", -2, &["readonly"], 1, -1, 1, plain set::sdiff),
    spec!("sinterstore", -3, WD, 1, -1, 1, plain set::sinterstore),
    spec!("sunionstore", -3, WD, 1, -1, 1, plain set::sunionstore),
    spec!("sdiffstore", -3, WD, 1, -1, 1, plain set::sdiffstore),
    spec!("sintercard", -3, &["readonly", "movablekeys"], 0, 0, 0, plain set::sintercard),
    spec!("sscan", -3, &["readonly"], 1, 1, 1, plain set::sscan),
    // Strings.
    spec!("get", 2, R, 1, 1, 1, plain strings::get),
    spec!("set", -3, WD, 1, 1, 1, plain strings::set),
    spec!("setnx", 3, WD, 1, 1, 1, plain strings::setnx),
    spec!("setex", 4, WD, 1, 1, 1, plain strings::setex),
    spec!("psetex", 4, WD, 1, 1, 1, plain strings::psetex),
    spec!("mget", -2, R, 1, -1, 1, plain strings::mget),
    spec!("mset", -3, WD, 1, -1, 2, plain strings::mset),
    spec!("msetnx", -3, WD, 1, -1, 2, plain strings::msetnx),
    spec!("getset", 3, WD, 1, 1, 1, plain strings::getset),
    spec!("getdel", 2, W, 1, 1, 1, plain strings::getdel),
    spec!("getex", -2, W, 1, 1, 1, plain strings::getex),
    spec!("append", 3, WD, 1, 1, 1, plain strings::append),
    spec!("strlen", 2, R, 1, 1, 1, plain strings::strlen),
    spec!("incr", 2, WD, 1, 1, 1, plain strings::incr),
    spec!("decr", 2, WD, 1, 1, 1, plain strings::decr),
    spec!("incrby", 3, WD, 1, 1, 1, plain strings::incrby),
    spec!("decrby", 3, WD, 1, 1, 1, plain strings::decrby),
    spec!("incrbyfloat", 3, WD, 1, 1, 1, plain strings::incrbyfloat),
    spec!("getrange", 4, &["readonly"], 1, 1, 1, plain strings::getrange),
    spec!("substr", 4, &["readonly"], 1, 1, 1, plain strings::getrange),
    spec!("setrange", 4, WD, 1, 1, 1, plain strings::setrange),
    spec!("setbit", 4, WD, 1, 1, 1, plain strings::setbit),
    spec!("getbit", 3, R, 1, 1, 1, plain strings::getbit),
    spec!("lcs", -3, &["readonly"], 1, 2, 1, plain strings::lcs),
    // Hashes (hash.rs).
    spec!("hset", -4, &["write", "denyoom", "fast"], 1, 1, 1, plain hash::hset),
    spec!("hsetnx", 4, &["write", "denyoom", "fast"], 1, 1, 1, plain hash::hsetnx),
    spec!("hget", 3, R, 1, 1, 1, plain hash::hget),
    spec!("hmget", -3, R, 1, 1, 1, plain hash::hmget),
    spec!("hmset", -4, &["write", "denyoom", "fast"], 1, 1, 1, plain hash::hmset),
    spec!("hdel", -3, &["write", "fast"], 1, 1, 1, plain hash::hdel),
    spec!("hexists", 3, R, 1, 1, 1, plain hash::hexists),
    spec!("hgetall", 2, &["readonly"], 1, 1, 1, plain hash::hgetall),
    spec!("hkeys", 2, &["readonly"], 1, 1, 1, plain hash::hkeys),
    spec!("hvals", 2, &["readonly"], 1, 1, 1, plain hash::hvals),
    spec!("hlen", 2, R, 1, 1, 1, plain hash::hlen),
    spec!("hstrlen", 3, R, 1, 1, 1, plain hash::hstrlen),
    spec!("hincrby", 4, &["write", "denyoom", "fast"], 1, 1, 1, plain hash::hincrby),
    spec!("hincrbyfloat", 4, &["write", "denyoom", "fast"], 1, 1, 1, plain hash::hincrbyfloat),
    spec!("hrandfield", -2, &["readonly"], 1, 1, 1, plain hash::hrandfield),
    spec!("hscan", -3, &["readonly"], 1, 1, 1, plain hash::hscan),
    // Keys.
    spec!("del", -2, W, 1, -1, 1, plain keys::del),
    spec!("unlink", -2, W, 1, -1, 1, plain keys::del),
    spec!("exists", -2, R, 1, -1, 1, plain keys::exists),
    spec!("touch", -2, R, 1, -1, 1, plain keys::exists),
    spec!("type", 2, R, 1, 1, 1, plain keys::type_),
    spec!("keys", 2, &["readonly"], 0, 0, 0, plain keys::keys),
    spec!("scan", -2, &["readonly"], 0, 0, 0, plain keys::scan),
    spec!("randomkey", 1, &["readonly"], 0, 0, 0, plain keys::randomkey),
    spec!("rename", 3, W, 1, 2, 1, plain keys::rename),
    spec!("renamenx", 3, W, 1, 2, 1, plain keys::renamenx),
    spec!("copy", -3, WD, 1, 2, 1, plain keys::copy),
    spec!("move", 3, W, 1, 1, 1, plain keys::move_),
    spec!("expire", -3, W, 1, 1, 1, plain keys::expire),
    spec!("pexpire", -3, W, 1, 1, 1, plain keys::pexpire),
    spec!("expireat", -3, W, 1, 1, 1, plain keys::expireat),
    spec!("pexpireat", -3, W, 1, 1, 1, plain keys::pexpireat),
    spec!("expiretime", 2, R, 1, 1, 1, plain keys::expiretime),
    spec!("pexpiretime", 2, R, 1, 1, 1, plain keys::pexpiretime),
    spec!("ttl", 2, R, 1, 1, 1, plain keys::ttl),
    spec!("pttl", 2, R, 1, 1, 1, plain keys::pttl),
    spec!("persist", 2, W, 1, 1, 1, plain keys::persist),
    spec!("object", -2, &["readonly"], 0, 0, 0, plain keys::object),
    spec!("memory", -2, &["readonly"], 0, 0, 0, plain keys::memory),
    spec!("dump", 2, &["readonly"], 1, 1, 1, plain dump::dump),
    spec!("restore", -4, &["write", "denyoom"], 1, 1, 1, plain dump::restore),
    spec!("sort", -2, &["write", "denyoom", "movablekeys"], 1, 1, 1, plain sort::sort),
    spec!("sort_ro", -2, &["readonly"], 1, 1, 1, plain sort::sort_ro),
    // Lists (list.rs).
    spec!("lpush", -3, &["write", "denyoom", "fast"], 1, 1, 1, plain list::lpush),
    spec!("rpush", -3, &["write", "denyoom", "fast"], 1, 1, 1, plain list::rpush),
    spec!("lpushx", -3, &["write", "denyoom", "fast"], 1, 1, 1, plain list::lpushx),
    spec!("rpushx", -3, &["write", "denyoom", "fast"], 1, 1, 1, plain list::rpushx),
    spec!("lpop", -2, &["write", "fast"], 1, 1, 1, plain list::lpop),
    spec!("rpop", -2, &["write", "fast"], 1, 1, 1, plain list::rpop),
    spec!("llen", 2, R, 1, 1, 1, plain list::llen),
    spec!("lrange", 4, &["readonly"], 1, 1, 1, plain list::lrange),
    spec!("lindex", 3, &["readonly"], 1, 1, 1, plain list::lindex),
    spec!("lset", 4, WD, 1, 1, 1, plain list::lset),
    spec!("linsert", 5, WD, 1, 1, 1, plain list::linsert),
    spec!("lrem", 4, W, 1, 1, 1, plain list::lrem),
    spec!("ltrim", 4, W, 1, 1, 1, plain list::ltrim),
    spec!("lpos", -3, &["readonly"], 1, 1, 1, plain list::lpos),
    spec!("lmove", 5, WD, 1, 2, 1, plain list::lmove),
    spec!("rpoplpush", 3, WD, 1, 2, 1, plain list::rpoplpush),
    spec!("lmpop", -4, &["write", "movablekeys"], 0, 0, 0, plain list::lmpop),
    spec!("blpop", -3, &["write", "blocking"], 1, -2, 1, special list::blpop),
    spec!("brpop", -3, &["write", "blocking"], 1, -2, 1, special list::brpop),
    spec!("blmove", 6, &["write", "denyoom", "blocking"], 1, 2, 1, special list::blmove),
    spec!("brpoplpush", 4, &["write", "denyoom", "blocking"], 1, 2, 1, special list::brpoplpush),
    spec!("blmpop", -5, &["write", "blocking", "movablekeys"], 0, 0, 0, special list::blmpop),
];

/// The key of a write command that names exactly one key (SET, LPUSH, ZADD...), if it is
/// one.
pub fn written_key(args: &[Bytes]) -> Option<&[u8]> {
    let spec = &COMMANDS[lookup_index(&args[0])?];
    if spec.first_key <= 0 || spec.last_key != spec.first_key || !spec.flags.contains(&"write") {
        return None;
    }
    args.get(spec.first_key as usize).map(|k| &k[..])
}

/// Looks a command up by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    lookup_index(name).map(|i| &COMMANDS[i])
}

/// The position of a command in [`COMMANDS`], by name, case-insensitively.
pub fn lookup_index(name: &[u8]) -> Option<usize> {
    static INDEX: std::sync::OnceLock<std::collections::HashMap<&'static [u8], usize>> =
        std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        COMMANDS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_bytes(), i))
            .collect()
    });
    // Command names are short: lowercase them on the stack.
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    index.get(&*lower).copied()
}

/// Runs one request (`args[0]` is the command name).
///
/// Inside MULTI, commands other than EXEC DISCARD MULTI WATCH QUIT RESET are checked, then
/// queued (`+QUEUED`); a refused command flags the transaction so EXEC fails. Every
/// command runs holding `Shared::exec_gate` shared, except EXEC, which takes it exclusively
/// (see `tx.rs`).
pub fn execute(shared: &Shared, client: &mut ClientState, args: Vec<Bytes>) -> Outcome {
    shared.counters.commands.fetch_add(1, Ordering::Relaxed);
    let refuse = |client: &mut ClientState, msg: String| {
        if client.tx.in_multi() {
            client.tx.aborted = true;
        }
        Outcome::Reply(Frame::error(msg))
    };
    let Some(index) = lookup_index(&args[0]) else {
        let mut rest = String::new();
        for a in &args[1..] {
            if rest.len() >= 128 {
                break;
            }
            let room = 128 - rest.len();
            rest.push_str(&format!("'{}' ", truncate(a, room)));
        }
        let msg = format!(
            "ERR unknown command '{}', with args beginning with: {rest}",
            truncate(&args[0], 128)
        );
        return refuse(client, msg);
    };
    let spec = &COMMANDS[index];
    // Refusals from here on count as the command's rejected calls (INFO commandstats).
    let refuse = |client: &mut ClientState, msg: String| {
        shared.cmd_stats.reject(index);
        refuse(client, msg)
    };
    if !spec.arity_ok(args.len()) {
        return refuse(client, CmdError::arity(spec.name).0);
    }
    if !client.authenticated && !spec.flags.contains(&"noauth") {
        return refuse(client, "NOAUTH Authentication required.".into());
    }
    let name = spec.name;
    let in_multi = client.tx.in_multi();
    if in_multi && matches!(name, "save" | "shutdown") {
        return refuse(
            client,
            "ERR Command not allowed inside a transaction".into(),
        );
    }
    let subscribed = client.proto == 2 && client.subs.count() > 0;
    if subscribed {
        if !matches!(
            name,
            "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
        ) {
            return refuse(
                client,
                format!(
                    "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / \
                     PING / QUIT / RESET are allowed in this context"
                ),
            );
        }
        if name == "ping" && !in_multi {
            // RESP2 subscribed mode: PING replies [pong, message-or-empty].
            let msg = args.get(1).cloned().unwrap_or_default();
            return Outcome::Reply(Frame::Array(vec![Frame::bulk("pong"), Frame::Bulk(msg)]));
        }
    }
    client.handle.last_cmd.store(index, Ordering::Relaxed);
    if in_multi
        && !matches!(
            name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    {
        if let Some(q) = client.tx.queued.as_mut() {
            q.push((index, args));
        }
        return Outcome::Reply(Frame::Simple("QUEUED".into()));
    }
    let started = std::time::Instant::now();
    // EXEC takes the gate exclusively itself; a shared hold here would deadlock it.
    let id = client.handle.id;
    let _gate = (name != "exec").then(|| shared.exec_gate.read(id));
    let mut ctx = Ctx { shared, client };
    let (out, wrote) = run(
        &mut ctx,
        spec,
        &args,
        |ctx| {
            spec.call(ctx, &args)
                .unwrap_or_else(|e| Outcome::Reply(Frame::Error(e.0)))
        },
        |out| match out {
            Outcome::Block(_) => None,
            Outcome::Reply(f) => Some(f),
            _ => Some(&Frame::Null),
        },
    );
    let ok = !matches!(out, Outcome::Reply(Frame::Error(_)));
    let took = started.elapsed();
    shared.metrics.resp_command(index, ok, took);
    // A blocked command counts once it is served; EXEC's queued commands count themselves.
    if !matches!(out, Outcome::Block(_)) {
        account(shared, index, took, !ok, name != "exec" && wrote);
    }
    out
}

/// Runs one command's handler (`body`) with what every run of a command needs around it,
/// wherever it runs (a request, a command queued in EXEC, a blocked client's retry):
/// keyspace events (key misses before it, the write's events after it, both only while
/// notifications are on) and WATCH's dirty flags after a write command. `args` is the
/// whole command, name first; `served` picks the reply the body gave, `None` if it did not
/// serve the client yet (a blocked command). Returns the body's result and whether it
/// wrote. Counting (INFO commandstats, the dirty counter) is left to the caller, since a
/// blocked command counts its retries once.
pub fn run<T>(
    ctx: &mut Ctx<'_>,
    spec: &'static Spec,
    args: &[Bytes],
    body: impl FnOnce(&mut Ctx<'_>) -> T,
    served: impl FnOnce(&T) -> Option<&Frame>,
) -> (T, bool) {
    let shared = ctx.shared;
    let (before, db) = (ctx.client.max_version, ctx.client.db);
    crate::server::notify::key_misses(shared, spec, args, db);
    let touched = crate::server::notify::prepare(shared, spec, args, db);
    let out = body(ctx);
    if shared.watches.active() && spec.flags.contains(&"write") {
        shared.watches.after_write(&shared.store, &args[1..]);
    }
    let wrote = ctx.client.max_version != before;
    if let Some(t) = touched
        && let Some(reply) = served(&out)
    {
        crate::server::notify::finish(shared, t, spec.name, args, reply, wrote);
    }
    (out, wrote)
}

/// Counts one run of the command at `index` of [`COMMANDS`] (by [`execute`], EXEC or a
/// blocked client's wait): its INFO commandstats entry, and the dirty counter if it
/// wrote.
pub fn account(
    shared: &Shared,
    index: usize,
    took: std::time::Duration,
    failed: bool,
    wrote: bool,
) {
    shared.cmd_stats.call(index, took, failed);
    if wrote {
        shared.counters.dirty.fetch_add(1, Ordering::Relaxed);
    }
}

/// At most `max` bytes of `b`, lossily as text, for error messages.
pub fn truncate(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned();
    s.replace(['\r', '\n'], " ")
}

/// Parses an integer argument strictly (Redis's `string2ll`).
///
/// # Errors
/// `ERR value is not an integer or out of range`.
pub fn int_arg(b: &[u8]) -> CmdResult<i64> {
    super::parse::parse_i64(b).ok_or_else(CmdError::not_integer)
}

/// Parses a float argument like Redis's `string2ld`: no spaces, no NaN.
///
/// # Errors
/// `ERR value is not a valid float`.
pub fn float_arg(b: &[u8]) -> CmdResult<f64> {
    parse_float(b).ok_or_else(CmdError::not_float)
}

/// Parses a float the way Redis accepts one (`inf`, `-inf`, decimal, exponent); `None` for
/// NaN, spaces or junk.
pub fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.len() > 5000 || s.starts_with(char::is_whitespace) {
        return None;
    }
    if s.ends_with(char::is_whitespace) {
        return None;
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        l if l.contains("nan") || l.contains("inf") => return None,
        _ => s.parse().ok()?,
    };
    Some(v)
}

/// The options of SCAN and HSCAN/SSCAN/ZSCAN.
pub struct ScanOptions<'a> {
    /// `MATCH pattern`.
    pub pattern: Option<&'a [u8]>,
    /// `COUNT count`: 10 by default, at least 1.
    pub count: i64,
    /// `TYPE type` (SCAN only).
    pub type_filter: Option<&'a [u8]>,
}

/// Parses `[MATCH pattern] [COUNT count]` (and `[TYPE type]` when `with_type`, for SCAN)
/// from `args[from..]`.
///
/// # Errors
/// A syntax error for anything else, a missing value or a count below 1.
pub fn scan_options(args: &[Bytes], from: usize, with_type: bool) -> CmdResult<ScanOptions<'_>> {
    let mut opts = ScanOptions {
        pattern: None,
        count: 10,
        type_filter: None,
    };
    let mut i = from;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return Err(CmdError::syntax());
        };
        if is(&args[i], "MATCH") {
            opts.pattern = Some(v);
        } else if is(&args[i], "COUNT") {
            opts.count = int_arg(v)?;
            if opts.count < 1 {
                return Err(CmdError::syntax());
            }
        } else if with_type && is(&args[i], "TYPE") {
            opts.type_filter = Some(v);
        } else {
            return Err(CmdError::syntax());
        }
        i += 2;
    }
    Ok(opts)
}

/// Whether an argument equals a keyword, ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}
