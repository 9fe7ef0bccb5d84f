//! One client connection: read, parse every complete request, execute, wait once for
//! durability, write every reply at once.
//!
//! Pipelining comes for free from that loop: a client that sends a hundred requests in one
//! packet gets them executed back to back, one fsync (under `--sync always`, shared with
//! other connections by the engine's group commit) and one write. Replies are kept as frames
//! until the durability wait has succeeded, so a failed fsync turns every write's `+OK`
//! into an error instead of a lie.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use cask_engine::SyncPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};

use super::cmd::tx::TxState;
use super::cmd::{self, Outcome};
use super::frame::Frame;
use super::parse::{Parsed, parse};
use super::pubsub::{Outbox, Queued, Subscriptions};
use super::{ClientHandle, ClientNames, Shared};

/// Replies held back before a flush even if more requests are buffered.
const FLUSH_EVERY: usize = 1024;

/// Per-connection state the commands read and change.
#[derive(Debug)]
pub struct ClientState {
    /// The registry entry (name, db, kill switch).
    pub handle: Arc<ClientHandle>,
    /// Selected database.
    pub db: u8,
    /// RESP version: 2 or 3.
    pub proto: u8,
    /// Whether AUTH succeeded (or no password is required).
    pub authenticated: bool,
    /// Highest engine version written by the requests not yet acknowledged.
    pub max_version: u64,
    /// MULTI queue and WATCHed keys.
    pub tx: TxState,
    /// Pub/sub subscriptions and the outbox messages arrive in.
    pub subs: Subscriptions,
    /// CLIENT REPLY OFF: command replies are not sent.
    pub reply_off: bool,
    /// CLIENT REPLY SKIP: replies left to drop (the SKIP's own and the next command's).
    pub reply_skip: u8,
}

impl ClientState {
    /// A fresh state for the connection `handle`: database 0, RESP2, nothing watched or
    /// subscribed, and no outbox (set one to let the client SUBSCRIBE).
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> ClientState {
        ClientState {
            handle,
            db: 0,
            proto: 2,
            authenticated,
            max_version: 0,
            tx: TxState::default(),
            subs: Subscriptions::default(),
            reply_off: false,
            reply_skip: 0,
        }
    }
}

struct Pending {
    frame: Frame,
    wrote: bool,
    /// The protocol in force when the request ran (HELLO may change it mid-pipeline).
    proto: u8,
    /// Bytes this frame holds in the outbox's accounting (pub/sub messages), released once
    /// it is written.
    pushed: u64,
}

impl Pending {
    fn reply(frame: Frame, wrote: bool, proto: u8) -> Pending {
        Pending {
            frame,
            wrote,
            proto,
            pushed: 0,
        }
    }
}

/// Queues a command's reply unless CLIENT REPLY suppresses it (RESP3 push frames, such as
/// SUBSCRIBE confirmations, are always sent, as in Redis).
fn push_reply(pending: &mut Vec<Pending>, frame: Frame, wrote: bool, proto: u8, suppress: bool) {
    if !suppress || (proto >= 3 && matches!(frame, Frame::Push(_))) {
        pending.push(Pending::reply(frame, wrote, proto));
    }
}

/// Moves up to `max` queued pub/sub messages into the pending replies.
fn drain_messages(
    rx: &mut mpsc::UnboundedReceiver<Queued>,
    proto: u8,
    pending: &mut Vec<Pending>,
    max: usize,
) {
    for _ in 0..max {
        match rx.try_recv() {
            Ok((frame, size)) => pending.push(Pending {
                frame,
                wrote: false,
                proto,
                pushed: size,
            }),
            Err(_) => break,
        }
    }
}

/// Serves one client until it quits, errs, is killed, or the server shuts down.
pub async fn handle(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let laddr = stream.local_addr().unwrap_or(shared.local_addr);
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let handle = Arc::new(ClientHandle {
        id,
        addr,
        laddr,
        created: Instant::now(),
        names: std::sync::Mutex::new(ClientNames::default()),
        db: AtomicU8::new(0),
        proto: AtomicU8::new(2),
        killed: AtomicBool::new(false),
        kill: Notify::new(),
        blocked: AtomicBool::new(false),
        unblock_mode: AtomicU8::new(0),
        unblock: Notify::new(),
        last_cmd: std::sync::atomic::AtomicUsize::new(usize::MAX),
    });
    let admitted = {
        let mut clients = shared.clients.lock().unwrap_or_else(|e| e.into_inner());
        let room = clients.len() < shared.config.maxclients;
        if room {
            clients.insert(id, handle.clone());
        }
        room
    };
    if !admitted {
        shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let _ = stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    let mut client = ClientState::new(handle.clone(), shared.password().is_none());
    let (outbox, mut rx) = Outbox::new(handle.clone(), shared.config.limits.pubsub_output_limit);
    client.subs.outbox = Some(outbox);
    if let Err(e) = serve_client(&shared, &mut stream, &mut client, &mut shutdown, &mut rx).await {
        tracing::debug!(client = id, error = %e, "connection closed");
    }
    cmd::tx::reset_client(&shared, &mut client);
    cmd::pubsub::reset_client(&shared, &mut client);
    shared
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

async fn serve_client(
    shared: &Shared,
    stream: &mut TcpStream,
    client: &mut ClientState,
    shutdown: &mut watch::Receiver<bool>,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
) -> std::io::Result<()> {
    let limits = shared.config.limits;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut pending: Vec<Pending> = Vec::new();
    let mut need = 1usize;
    loop {
        // The gate of the stripe the last single-key write ran on, kept while the next
        // buffered commands write the same stripe: a pipeline of writes to one key runs
        // without handing the key over between its commands, and connections waiting for
        // it wait on the runtime rather than blocking a worker thread. Any other command
        // drops it first (so a blocking command or a background job never waits holding
        // it), and so does every flush (a slow reader must not hold up the key).
        let mut gate: Option<(usize, tokio::sync::MutexGuard<'_, ()>)> = None;
        let mut close = false;
        let mut shutdown_server = false;
        while buf.len() >= need && !close {
            let parsed = match parse(&buf, &limits, client.authenticated) {
                Ok(p) => p,
                Err(e) => {
                    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(client = client.handle.id, error = %e, "protocol error");
                    pending.push(Pending::reply(
                        Frame::error(format!("ERR {e}")),
                        false,
                        client.proto,
                    ));
                    close = true;
                    break;
                }
            };
            let args: Vec<Bytes> = match parsed {
                Parsed::Incomplete(n) => {
                    need = n;
                    break;
                }
                Parsed::Multibulk(ranges, used) => {
                    let frame = buf.split_to(used).freeze();
                    ranges.into_iter().map(|r| frame.slice(r)).collect()
                }
                Parsed::Inline(args, used) => {
                    buf.advance(used);
                    args.into_iter().map(Bytes::from).collect()
                }
            };
            need = 1;
            if args.is_empty() {
                continue;
            }
            let before = client.max_version;
            match cmd::written_key(&args) {
                Some(key) if !client.tx.in_multi() => {
                    let stripe = shared.store.stripe_of(client.db, key);
                    if gate.as_ref().is_none_or(|(s, _)| *s != stripe) {
                        drop(gate.take());
                        gate = Some((stripe, shared.store.gate(stripe).await));
                    }
                }
                _ => gate = None,
            }
            let outcome = cmd::execute(shared, client, args);
            let wrote = client.max_version != before;
            // CLIENT REPLY OFF / SKIP (the SKIP itself and the next command).
            let suppress = client.reply_off || client.reply_skip > 0;
            client.reply_skip = client.reply_skip.saturating_sub(1);
            match outcome {
                Outcome::Reply(frame) => {
                    push_reply(&mut pending, frame, wrote, client.proto, suppress)
                }
                Outcome::Replies(frames) => {
                    // (P)(UN)SUBSCRIBE confirmations are pushes, which CLIENT REPLY OFF /
                    // SKIP do not silence (as in Redis).
                    for frame in frames {
                        push_reply(&mut pending, frame, wrote, client.proto, false);
                    }
                }
                Outcome::Close(frame) => {
                    push_reply(&mut pending, frame, wrote, client.proto, suppress);
                    close = true;
                }
                Outcome::Shutdown => {
                    shutdown_server = true;
                    close = true;
                }
                Outcome::Block(block) => {
                    // Send what came before, then wait; requests pipelined behind the
                    // blocked one stay in the buffer until it is served.
                    flush(shared, stream, client, &mut pending).await?;
                    let Some(frame) =
                        wait_blocked(shared, stream, client, shutdown, &mut buf, block, rx).await?
                    else {
                        return Ok(());
                    };
                    let wrote = client.max_version != before;
                    push_reply(&mut pending, frame, wrote, client.proto, suppress);
                }
                Outcome::Blocking(job) => {
                    // SAVE and friends: never fsync or compact on a runtime worker.
                    let frame = match tokio::task::spawn_blocking(job).await {
                        Ok(f) => f,
                        Err(e) => Frame::error(format!("ERR background task failed: {e}")),
                    };
                    push_reply(&mut pending, frame, wrote, client.proto, suppress);
                }
            }
            if client.subs.count() > 0 {
                // Messages published meanwhile (to ourselves, too) follow this reply.
                drain_messages(rx, client.proto, &mut pending, FLUSH_EVERY);
            }
            if pending.len() >= FLUSH_EVERY {
                gate = None;
                flush(shared, stream, client, &mut pending).await?;
            }
        }
        drop(gate);
        flush(shared, stream, client, &mut pending).await?;
        if shutdown_server {
            shared.shutdown_requested.notify_one();
        }
        if close || client.handle.killed.load(Ordering::Relaxed) {
            return Ok(());
        }
        if need as u64 > limits.query_buffer_limit || buf.len() as u64 > limits.query_buffer_limit {
            tracing::warn!(
                client = client.handle.id,
                "closing client that reached the query buffer limit"
            );
            return Ok(());
        }
        // Room for what the parser says is missing, but never more than what has already
        // arrived: a client announcing a huge bulk makes the buffer grow by doubling as the
        // bytes come in, not at once.
        let want = need
            .saturating_sub(buf.len())
            .clamp(16 * 1024, buf.len().max(16 * 1024));
        buf.reserve(want);
        // Biased: a kill or shutdown that is already signalled wins over bytes that are
        // already readable, and a killed client is never served again (as in Redis).
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(()),
            () = client.handle.kill.notified() => return Ok(()),
            Some(msg) = rx.recv() => {
                pending.push(Pending { frame: msg.0, wrote: false, proto: client.proto, pushed: msg.1 });
                drain_messages(rx, client.proto, &mut pending, FLUSH_EVERY);
                continue;
            }
            n = stream.read_buf(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                shared.counters.net_in.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if client.handle.killed.load(Ordering::Acquire) {
            return Ok(());
        }
    }
}

/// Blocks a client on keys until `block.retry` serves it or the timeout passes. Returns
/// `None` when the connection must close instead (shutdown, CLIENT KILL, the peer hung up:
/// a client that left must not take an element nobody will receive). Bytes that arrive
/// meanwhile are kept in `buf` for after the reply.
async fn wait_blocked(
    shared: &Shared,
    stream: &mut TcpStream,
    client: &mut ClientState,
    shutdown: &mut watch::Receiver<bool>,
    buf: &mut BytesMut,
    block: cmd::Block,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
) -> std::io::Result<Option<Frame>> {
    let db = client.db;
    let keys: Vec<&[u8]> = block.keys.iter().map(|k| &k[..]).collect();
    let waiter = shared.store.ready.register_as(db, &keys, client.handle.id);
    let deadline = block.timeout.map(|t| tokio::time::Instant::now() + t);
    // CLIENT UNBLOCK acts only while this flag is up; the guard lowers it on every exit.
    let handle = client.handle.clone();
    handle.unblock_mode.store(0, Ordering::Release);
    handle.blocked.store(true, Ordering::Release);
    struct Unblocked<'a>(&'a crate::server::ClientHandle);
    impl Drop for Unblocked<'_> {
        fn drop(&mut self) {
            self.0.blocked.store(false, Ordering::Release);
        }
    }
    let _blocked = Unblocked(&handle);
    // For INFO commandstats: the time spent running the command (not waiting), and
    // whether it wrote.
    let (mut busy, before) = (std::time::Duration::ZERO, client.max_version);
    // The command as `cmd::run` takes it (name first), built once for all the retries.
    let command = cmd::COMMANDS
        .get(client.handle.last_cmd.load(Ordering::Relaxed))
        .map(|spec| {
            let full: Vec<Bytes> = std::iter::once(Bytes::from_static(spec.name.as_bytes()))
                .chain(block.args.iter().cloned())
                .collect();
            (spec, full)
        });
    let served = loop {
        // Retry first: a write may have come between the attempt and the registration.
        let res = {
            let started = std::time::Instant::now();
            let _gate = shared.exec_gate.read(client.handle.id);
            let mut ctx = cmd::Ctx { shared, client };
            let res = match &command {
                Some((spec, full)) => {
                    cmd::run(
                        &mut ctx,
                        spec,
                        full,
                        |ctx| (block.retry)(ctx, &block.args),
                        |res| res.as_ref().ok().and_then(Option::as_ref),
                    )
                    .0
                }
                None => (block.retry)(&mut ctx, &block.args),
            };
            busy += started.elapsed();
            res
        };
        match res {
            Ok(Some(frame)) => break frame,
            Err(e) => break Frame::Error(e.0),
            Ok(None) => {}
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(None),
            () = client.handle.kill.notified() => return Ok(None),
            () = waiter.notify.notified() => {}
            () = handle.unblock.notified() => {
                // A permit left by an UNBLOCK that raced with the end of an earlier wait
                // finds the mode cleared: keep waiting.
                match handle.unblock_mode.swap(0, Ordering::AcqRel) {
                    crate::server::UNBLOCK_TIMEOUT => break block.timeout_reply,
                    crate::server::UNBLOCK_ERROR => {
                        break Frame::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
                    }
                    _ => {}
                }
            }
            () = sleep => break block.timeout_reply,
            Some(msg) = rx.recv() => {
                // RESP3 clients may block while subscribed: keep delivering.
                let mut pending = vec![Pending { frame: msg.0, wrote: false, proto: client.proto, pushed: msg.1 }];
                drain_messages(rx, client.proto, &mut pending, FLUSH_EVERY);
                flush(shared, stream, client, &mut pending).await?;
            }
            n = stream.read_buf(buf) => {
                let n = n?;
                shared.counters.net_in.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 || buf.len() as u64 > shared.config.limits.query_buffer_limit {
                    return Ok(None);
                }
            }
        }
    };
    let failed = matches!(served, Frame::Error(_));
    let index = client.handle.last_cmd.load(Ordering::Relaxed);
    cmd::account(shared, index, busy, failed, client.max_version != before);
    // Pass the turn: the next client blocked on these keys retries if anything is left.
    drop(waiter);
    for k in &keys {
        shared.store.ready.signal(db, k);
    }
    Ok(Some(served))
}

/// Waits until the batch's writes are durable, then sends every pending reply in one write.
async fn flush(
    shared: &Shared,
    stream: &mut TcpStream,
    client: &mut ClientState,
    pending: &mut Vec<Pending>,
) -> std::io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    // Only `always` makes the wait block; the other policies would return at once, so do
    // not pay for a trip through the durability thread.
    let version = std::mem::take(&mut client.max_version);
    if version > 0
        && shared.store.db.options().sync == SyncPolicy::Always
        && let Err(e) = shared.durability.wait(version).await
    {
        tracing::error!(error = %e, "durability wait failed");
        for p in pending.iter_mut().filter(|p| p.wrote) {
            p.frame = Frame::error(format!("ERR write not durable: {e}"));
        }
    }
    let mut out = BytesMut::new();
    let mut pushed = 0;
    for p in pending.drain(..) {
        if p.frame.is_error() {
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        pushed += p.pushed;
        p.frame.encode(p.proto, &mut out);
    }
    shared
        .counters
        .net_out
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    // A client that stops reading must not pin this task: CLIENT KILL and the pub/sub
    // output limit (which kills) interrupt the write.
    tokio::select! {
        biased;
        r = stream.write_all(&out) => r?,
        () = client.handle.kill.notified() => {
            return Err(std::io::Error::other("client killed"));
        }
    }
    if pushed > 0
        && let Some(o) = &client.subs.outbox
    {
        o.written(pushed);
    }
    Ok(())
}
