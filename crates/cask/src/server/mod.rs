//! The Redis-compatible server (`cask serve`), RESP2 and RESP3 over TCP.
//!
//! Layers, after tokio-rs/mini-redis:
//! - [`parse`]: bytes to requests (multibulk and inline), limits checked before allocation.
//! - [`frame`]: replies and their RESP2/RESP3 encoding.
//! - [`connection`]: one task per client; pipelining (every complete request in the read
//!   buffer is executed, then one durability wait, then one write of all replies).
//! - [`cmd`]: the commands, one module per family, and the dispatch table.
//! - [`keyspace`]: how Redis keys and typed values map onto engine records.
//! - [`durability`]: one thread that batches the connections' waits for fsync.
//! - [`metrics`]: Prometheus metrics of both servers (served by the HTTP API).
//! - [`shutdown`]: graceful shutdown on SIGINT, SIGTERM or `SHUTDOWN`: stop accepting,
//!   let every handler finish the requests it has, sync and close the database.

pub mod blocking;
pub mod cmd;
pub mod cmdstats;
pub mod coll;
pub mod connection;
pub mod durability;
pub mod frame;
pub mod glob;
pub mod keyspace;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod pubsub;
pub mod rdb;
pub mod shutdown;
pub mod sweep;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cask_engine::{Db, Options, SyncPolicy};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::{ServeArgs, ServerConfig};
use keyspace::Store;

/// How long shutdown waits for connections to finish what they have read.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Server-wide counters reported by INFO.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted since start.
    pub connections: AtomicU64,
    /// Connections refused because of maxclients.
    pub rejected: AtomicU64,
    /// Commands executed.
    pub commands: AtomicU64,
    /// Successful key lookups.
    pub hits: AtomicU64,
    /// Failed key lookups.
    pub misses: AtomicU64,
    /// Bytes read from clients.
    pub net_in: AtomicU64,
    /// Bytes written to clients.
    pub net_out: AtomicU64,
    /// Protocol errors and error replies.
    pub errors: AtomicU64,
    /// RESP commands that changed data since the last SAVE / BGSAVE (INFO's
    /// `rdb_changes_since_last_save`): one per command, not per element.
    pub dirty: Arc<AtomicU64>,
}

/// What CLIENT LIST and CLIENT KILL see of a connection.
#[derive(Debug)]
pub struct ClientHandle {
    /// CLIENT ID.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// When it connected.
    pub created: Instant,
    /// CLIENT SETNAME, lib-name, lib-ver.
    pub names: Mutex<ClientNames>,
    /// Selected database.
    pub db: AtomicU8,
    /// RESP version.
    pub proto: AtomicU8,
    /// Set by CLIENT KILL.
    pub killed: AtomicBool,
    /// Wakes the handler on CLIENT KILL.
    pub kill: Notify,
    /// Whether the client waits in a blocking command (CLIENT UNBLOCK acts only then).
    pub blocked: AtomicBool,
    /// How CLIENT UNBLOCK ends the wait: 0 not asked, [`UNBLOCK_TIMEOUT`] or
    /// [`UNBLOCK_ERROR`].
    pub unblock_mode: AtomicU8,
    /// Wakes a blocked handler on CLIENT UNBLOCK.
    pub unblock: Notify,
    /// Index in the command table of the last command run (`usize::MAX`: none yet).
    pub last_cmd: std::sync::atomic::AtomicUsize,
}

/// CLIENT UNBLOCK (or ... TIMEOUT): the blocked command replies as if it timed out.
pub const UNBLOCK_TIMEOUT: u8 = 1;
/// CLIENT UNBLOCK ... ERROR: the blocked command replies with an `-UNBLOCKED` error.
pub const UNBLOCK_ERROR: u8 = 2;

/// Names a client gave itself.
#[derive(Debug, Default, Clone)]
pub struct ClientNames {
    /// CLIENT SETNAME.
    pub name: String,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: String,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: String,
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    /// Typed access to the engine.
    pub store: Store,
    /// Where connections wait for their writes to be durable.
    pub durability: durability::Durability,
    /// The configuration the server started with.
    pub config: ServerConfig,
    /// The password in force (CONFIG SET requirepass changes it).
    pub requirepass: RwLock<Option<String>>,
    /// Server start.
    pub started: Instant,
    /// Counters for INFO.
    pub counters: Counters,
    /// Live connections by id.
    pub clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    /// Next CLIENT ID.
    pub next_client_id: AtomicU64,
    /// SCAN cursors.
    pub cursors: cmd::keys::Cursors,
    /// Unix time (s) of the last SAVE / BGSAVE.
    pub last_save: Arc<AtomicU64>,
    /// A SHUTDOWN command asked the server to stop.
    pub shutdown_requested: Notify,
    /// The address the listener is bound to.
    pub local_addr: SocketAddr,
    /// Whether a BGSAVE is running.
    pub bgsave_running: Arc<AtomicBool>,
    /// Redis's in-memory encoding thresholds: accepted by CONFIG SET, reported by CONFIG
    /// GET, and without effect (cask stores every element as its own record).
    pub tunables: Mutex<BTreeMap<String, String>>,
    /// Held shared by every command execution and exclusively by EXEC, so that a
    /// transaction never interleaves with another client's command (see `cmd/tx.rs`).
    /// Front ends that run commands outside `cmd::execute` must hold it shared too
    /// (`exec_gate.read(id)` around each operation).
    pub exec_gate: cmd::tx::ExecGate,
    /// Watched keys that were missing at WATCH time (see `cmd/tx.rs`).
    pub watches: cmd::tx::Watches,
    /// Pub/sub subscribers.
    pub pubsub: pubsub::Hub,
    /// Prometheus metrics of both servers.
    pub metrics: metrics::Metrics,
    /// INFO commandstats.
    pub cmd_stats: cmdstats::CommandStats,
    /// Keyspace notifications (`notify-keyspace-events`).
    pub notify: notify::Notifier,
}

impl Shared {
    /// The current password, if any.
    pub fn password(&self) -> Option<String> {
        self.requirepass
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the server until shutdown. Returns the process exit code.
pub fn run(dir: &Path, args: ServeArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = match ServerConfig::resolve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cask: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.protected_mode && config.requirepass.is_none() && !config.binds_loopback() {
        eprintln!(
            "cask: refusing to listen on non-loopback address {} without --requirepass; \
             set a password or pass --protected-mode no",
            config.bind
        );
        return ExitCode::FAILURE;
    }
    let sync: SyncPolicy = match config.sync.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cask: invalid --sync '{}': {e}", config.sync);
            return ExitCode::FAILURE;
        }
    };
    let mut opts = Options::default().sync(sync);
    // A value is the string plus its type tag byte: let the largest string a client may
    // send fit.
    opts.max_value_size = opts.max_value_size.max(
        usize::try_from(config.limits.max_bulk_len)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    );
    if let Some(bytes) = config.max_segment_size {
        opts.segment_size = bytes;
    }
    if let Some(ms) = config.compaction_interval_ms {
        opts.compaction_interval = std::time::Duration::from_millis(ms);
    }
    if let Some(slots) = config.value_cache_slots {
        opts.value_cache_slots = slots;
    }
    if let Some(bytes) = config.value_cache_max_value {
        opts.value_cache_max_value = bytes;
    }
    let db = match Db::open(dir, opts) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("cask: cannot open {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cask: cannot start the runtime: {e}");
            let _ = db.close();
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(db.clone(), config));
    // Handlers are gone; close syncs and releases the directory lock.
    match db.close() {
        Ok(()) => {
            tracing::info!("database closed");
            code
        }
        Err(e) => {
            eprintln!("cask: final sync failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(db: Db, config: ServerConfig) -> ExitCode {
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cask: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    serve_on(db, listener, config).await
}

/// Serves RESP on an already-bound `listener` over an already-open `db` until shutdown
/// (`SHUTDOWN`, SIGINT or SIGTERM), then syncs (the caller closes `db`). `cask serve` uses
/// it after binding; tests use it to run the server in-process over an engine opened on a
/// fault-injecting file system.
pub async fn serve_on(db: Db, listener: TcpListener, config: ServerConfig) -> ExitCode {
    let local_addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cask: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http_listener = if config.http_port == 0 {
        None
    } else {
        let http_addr = format!("{}:{}", config.bind, config.http_port);
        match TcpListener::bind(&http_addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "cask: cannot listen on {http_addr} (HTTP API; --http-port 0 disables it): {e}"
                );
                return ExitCode::FAILURE;
            }
        }
    };
    let shared = match new_shared(db, config, local_addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cask: cannot start the durability thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(notify::expire_loop(Arc::downgrade(&shared)));
    let mut signals = match shutdown::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cask: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (notify_shutdown, _) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    if let Some(listener) = http_listener {
        match listener.local_addr() {
            // Printed before the RESP line, which scripts wait for.
            Ok(a) => eprintln!("cask: http listening on {a}"),
            Err(e) => {
                eprintln!("cask: {e}");
                return ExitCode::FAILURE;
            }
        }
        let (shared, shutdown, done) =
            (shared.clone(), notify_shutdown.subscribe(), done_tx.clone());
        tokio::spawn(async move {
            crate::http::serve(listener, shared, shutdown).await;
            drop(done);
        });
    }
    // The line tests and scripts wait for.
    eprintln!("cask: listening on {local_addr}");
    tracing::info!(%local_addr, "listening");

    tokio::select! {
        () = accept_loop(&listener, &shared, &notify_shutdown, &done_tx) => {}
        reason = signals.wait(&shared) => {
            tracing::info!(reason, "shutting down");
        }
    }
    drop(listener);
    // Tell every handler, then wait until the last one has dropped its sender. A client
    // that stopped reading its replies must not hold the shutdown forever: after the grace
    // period the database is closed anyway (late writes then fail, unacknowledged).
    let _ = notify_shutdown.send(true);
    drop(done_tx);
    if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after the shutdown grace period; closing anyway");
    }
    let store_db = shared.store.db.clone();
    match tokio::task::spawn_blocking(move || store_db.sync()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("cask: final sync failed: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The state shared by the RESP and HTTP servers: starts the durability thread and registers
/// the metrics.
///
/// # Errors
/// If the durability thread cannot be started.
pub fn new_shared(
    db: Db,
    config: ServerConfig,
    local_addr: SocketAddr,
) -> std::io::Result<Arc<Shared>> {
    let durability = durability::Durability::start(db.clone())?;
    let names: Vec<&str> = cmd::COMMANDS.iter().map(|c| c.name).collect();
    Ok(Arc::new(Shared {
        metrics: metrics::Metrics::new(db.clone(), &names),
        store: Store::new(db),
        durability,
        requirepass: RwLock::new(config.requirepass.clone()),
        config,
        started: Instant::now(),
        counters: Counters::default(),
        clients: Mutex::new(BTreeMap::new()),
        next_client_id: AtomicU64::new(1),
        cursors: cmd::keys::Cursors::default(),
        last_save: Arc::new(AtomicU64::new(unix_secs())),
        shutdown_requested: Notify::new(),
        local_addr,
        bgsave_running: Arc::new(AtomicBool::new(false)),
        tunables: Mutex::new(cmd::server::default_tunables()),
        exec_gate: cmd::tx::ExecGate::default(),
        watches: cmd::tx::Watches::default(),
        pubsub: pubsub::Hub::default(),
        cmd_stats: cmdstats::CommandStats::new(cmd::COMMANDS.len()),
        notify: notify::Notifier::default(),
    }))
}

async fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    notify_shutdown: &watch::Sender<bool>,
    done_tx: &mpsc::Sender<()>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let shutdown = notify_shutdown.subscribe();
        let done = done_tx.clone();
        tokio::spawn(async move {
            connection::handle(shared, stream, addr, shutdown).await;
            drop(done);
        });
    }
}
