//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH.
//!
//! MULTI makes [`super::execute`] queue every command (after the same checks as outside a
//! transaction: unknown command, arity, authentication; a command refused there flags the
//! transaction, and EXEC then fails with `EXECABORT`). EXEC runs the queue holding the
//! server's execution gate exclusively (`Shared::exec_gate`; every other command execution
//! holds it shared), so no other client's command interleaves with the transaction and no
//! reader sees it half done. Runtime errors are returned per command, as in Redis.
//!
//! WATCH records each key's engine version (`None` when absent). Every write to a key gives
//! it a new version (strings rewrite their record, collections their metadata record) and a
//! delete or expiry makes it absent, so EXEC aborts (null array) when any recorded version
//! differs from the current one. This sees writes from every client and front end, expiry,
//! FLUSHDB and FLUSHALL. One case versions cannot see: a key absent at WATCH that another
//! client created and deleted again before EXEC (absent both times). For that, keys absent
//! at WATCH are registered in [`Watches`]; after every write command the registry checks
//! whether any of its arguments names a registered key that now exists, and if so marks the
//! watchers dirty. The check is by name in every database and over every argument of the
//! write command, so it may abort a transaction spuriously (a write command whose non-key
//! argument equals a watched missing key's name and which left that key existing), never
//! miss a creation made by a RESP command. It costs one atomic load per write command while
//! nobody watches a missing key. Front ends that write without going through
//! [`super::execute`] (the HTTP API) call [`Watches::after_write`] with the keys they wrote.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::{COMMANDS, CmdError, CmdResult, Ctx, Outcome};
use crate::server::frame::Frame;
use crate::server::keyspace::Store;

/// Shards of the execution gate: a reader touches only its own shard's cache line.
const GATE_SHARDS: usize = 32;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(RwLock<()>);

/// The execution gate: every command execution holds one shard shared (chosen by its
/// connection id), EXEC holds every shard exclusively (taken in order, so two EXECs cannot
/// deadlock). Sharding keeps the readers of different connections off each other's cache
/// lines: a single `RwLock` makes every command of every connection write one shared
/// word, which measurably slowed pipelined SET (see the tx-pubsub notes).
#[derive(Debug)]
pub struct ExecGate {
    shards: Box<[Shard]>,
}

impl Default for ExecGate {
    fn default() -> Self {
        ExecGate {
            shards: (0..GATE_SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl ExecGate {
    /// Holds the gate shared for connection `client` while the guard lives.
    pub fn read(&self, client: u64) -> RwLockReadGuard<'_, ()> {
        self.shards[(client % GATE_SHARDS as u64) as usize]
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Holds the gate exclusively while the guards live.
    pub fn write(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        self.shards
            .iter()
            .map(|s| s.0.write().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }
}

/// One watched key.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Its database.
    pub db: u8,
    /// The key.
    pub key: Bytes,
    /// Its version at WATCH time; `None` if it was absent (or expired).
    pub version: Option<u64>,
}

/// A connection's transaction state (kept in its `ClientState`).
#[derive(Debug, Default)]
pub struct TxState {
    /// The queued commands (index in [`COMMANDS`], full arguments) while in MULTI.
    pub queued: Option<Vec<(usize, Vec<Bytes>)>>,
    /// A command was refused while queueing: EXEC must fail.
    pub aborted: bool,
    /// WATCHed keys.
    pub watched: Vec<Watched>,
    /// Set by [`Watches`] when a key that was absent at WATCH time was created.
    pub dirty: Arc<AtomicBool>,
}

impl TxState {
    /// Whether the connection is inside MULTI.
    pub fn in_multi(&self) -> bool {
        self.queued.is_some()
    }
}

type Registrations = HashMap<Bytes, Vec<(u64, u8, Arc<AtomicBool>)>>;

/// The registry of watched keys that were absent at WATCH time (see the module docs).
#[derive(Debug, Default)]
pub struct Watches {
    count: AtomicUsize,
    map: Mutex<Registrations>,
}

impl Watches {
    fn map(&self) -> std::sync::MutexGuard<'_, Registrations> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, client: u64, db: u8, key: &Bytes, dirty: &Arc<AtomicBool>) {
        let mut map = self.map();
        map.entry(key.clone())
            .or_default()
            .push((client, db, dirty.clone()));
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn unregister(&self, client: u64, watched: &[Watched]) {
        if watched.iter().all(|w| w.version.is_some()) {
            return;
        }
        let mut map = self.map();
        for w in watched.iter().filter(|w| w.version.is_none()) {
            if let Some(v) = map.get_mut(&w.key) {
                let before = v.len();
                if let Some(pos) = v.iter().position(|(c, db, _)| *c == client && *db == w.db) {
                    v.remove(pos);
                }
                self.count.fetch_sub(before - v.len(), Ordering::AcqRel);
                if v.is_empty() {
                    map.remove(&w.key);
                }
            }
        }
    }

    /// Whether anyone watches a key that was missing at WATCH time.
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Called after a write that may have created any of `keys` (in any database): marks
    /// the clients watching one of them, absent at WATCH time and existing now, dirty.
    /// One atomic load when nobody watches a missing key.
    pub fn after_write(&self, store: &Store, keys: &[Bytes]) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let map = self.map();
        for k in keys {
            let Some(regs) = map.get(k) else { continue };
            for (_, db, dirty) in regs {
                if !dirty.load(Ordering::Relaxed) && matches!(store.meta(*db, k), Ok(Some(_))) {
                    dirty.store(true, Ordering::Release);
                }
            }
        }
    }
}

/// Forgets every watched key of the connection (UNWATCH, EXEC, DISCARD, RESET, close).
pub fn unwatch_all(
    shared: &crate::server::Shared,
    client: &mut crate::server::connection::ClientState,
) {
    let watched = std::mem::take(&mut client.tx.watched);
    shared.watches.unregister(client.handle.id, &watched);
    client.tx.dirty.store(false, Ordering::Release);
}

/// Leaves MULTI and forgets the watched keys (DISCARD, RESET, connection close).
pub fn reset_client(
    shared: &crate::server::Shared,
    client: &mut crate::server::connection::ClientState,
) {
    client.tx.queued = None;
    client.tx.aborted = false;
    unwatch_all(shared, client);
}

/// MULTI
pub fn multi(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    if ctx.client.tx.in_multi() {
        return Err(CmdError::err("MULTI calls can not be nested"));
    }
    ctx.client.tx.queued = Some(Vec::new());
    ctx.client.tx.aborted = false;
    Ok(Frame::ok())
}

/// DISCARD
pub fn discard(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    if !ctx.client.tx.in_multi() {
        return Err(CmdError::err("DISCARD without MULTI"));
    }
    reset_client(ctx.shared, ctx.client);
    Ok(Frame::ok())
}

/// WATCH key [key ...]
pub fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    if ctx.client.tx.in_multi() {
        return Err(CmdError::err("WATCH inside MULTI is not allowed"));
    }
    let db = ctx.db();
    for key in args {
        if ctx
            .client
            .tx
            .watched
            .iter()
            .any(|w| w.db == db && w.key == *key)
        {
            continue;
        }
        let version = ctx.store().meta(db, key)?.map(|m| m.version);
        if version.is_none() {
            let dirty = ctx.client.tx.dirty.clone();
            ctx.shared
                .watches
                .register(ctx.client.handle.id, db, key, &dirty);
        }
        ctx.client.tx.watched.push(Watched {
            db,
            key: key.clone(),
            version,
        });
    }
    Ok(Frame::ok())
}

/// UNWATCH
pub fn unwatch(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    unwatch_all(ctx.shared, ctx.client);
    Ok(Frame::ok())
}

/// Whether a watched key changed since WATCH.
fn watched_changed(ctx: &Ctx<'_>) -> CmdResult<bool> {
    if ctx.client.tx.dirty.load(Ordering::Acquire) {
        return Ok(true);
    }
    for w in &ctx.client.tx.watched {
        let now = ctx.store().meta(w.db, &w.key)?.map(|m| m.version);
        if now != w.version {
            return Ok(true);
        }
    }
    Ok(false)
}

/// EXEC
///
/// Runs with the execution gate held exclusively: called by [`super::execute`] without
/// the shared hold every other command takes.
pub fn exec(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Outcome> {
    let Some(queued) = ctx.client.tx.queued.take() else {
        return Err(CmdError::err("EXEC without MULTI"));
    };
    if std::mem::take(&mut ctx.client.tx.aborted) {
        unwatch_all(ctx.shared, ctx.client);
        return Err(CmdError(
            "EXECABORT Transaction discarded because of previous errors.".into(),
        ));
    }
    let shared = ctx.shared;
    let _gate = shared.exec_gate.write();
    let changed = watched_changed(ctx);
    unwatch_all(shared, ctx.client);
    if changed? {
        return Ok(Outcome::Reply(Frame::NullArray));
    }
    let mut replies = Vec::with_capacity(queued.len());
    for (index, args) in queued {
        let spec = &COMMANDS[index];
        shared.counters.commands.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let (frame, wrote) = super::run(
            ctx,
            spec,
            &args,
            |ctx| {
                match spec.call(ctx, &args) {
                    Err(e) => Frame::Error(e.0),
                    Ok(Outcome::Reply(f) | Outcome::Close(f)) => f,
                    // Blocking commands do not block inside a transaction.
                    Ok(Outcome::Block(b)) => b.timeout_reply,
                    Ok(Outcome::Replies(mut fs)) => {
                        if fs.len() == 1 {
                            fs.pop().unwrap_or(Frame::Null)
                        } else {
                            Frame::Array(fs)
                        }
                    }
                    // Off-runtime work (SAVE) and SHUTDOWN are refused while queueing.
                    Ok(Outcome::Blocking(job)) => job(),
                    Ok(Outcome::Shutdown) => {
                        Frame::error("ERR Command not allowed inside a transaction")
                    }
                }
            },
            |f: &Frame| Some(f),
        );
        let failed = matches!(frame, Frame::Error(_));
        super::account(shared, index, started.elapsed(), failed, wrote);
        replies.push(frame);
    }
    Ok(Outcome::Reply(Frame::Array(replies)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn exec_gate_excludes_every_reader_and_waits_for_them() {
        let gate = Arc::new(ExecGate::default());
        // Readers of any connections coexist.
        let (r1, r2, r33) = (gate.read(1), gate.read(2), gate.read(33));
        drop((r1, r2, r33));
        // The exclusive hold covers every connection's shard.
        let w = gate.write();
        for id in 0..(2 * GATE_SHARDS) {
            assert!(gate.shards[id % GATE_SHARDS].0.try_read().is_err());
        }
        drop(w);
        assert!(gate.shards[5].0.try_read().is_ok());
        // EXEC waits until a running command finishes.
        let r = gate.read(7);
        let g2 = gate.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _w = g2.write();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(r);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
