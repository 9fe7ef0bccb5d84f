//! Server commands: INFO CONFIG DBSIZE FLUSHDB FLUSHALL TIME LASTSAVE SAVE BGSAVE
//! BGREWRITEAOF SHUTDOWN.
//!
//! cask has no snapshot file: its log is the persistence. SAVE therefore means "fsync
//! everything and compact the log", and runs on a blocking thread; BGSAVE and BGREWRITEAOF
//! do the same in the background.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cask_engine::SyncPolicy;

use super::connection::REDIS_VERSION;
use super::{CmdError, CmdResult, Ctx, Outcome, is, truncate};
use crate::server::frame::Frame;
use crate::server::keyspace::DATABASES;
use crate::server::{Shared, glob, unix_secs};

fn sections(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let sh = ctx.shared;
    let c = &sh.counters;
    let stats = sh.store.db.stats();
    let uptime = sh.started.elapsed().as_secs();
    let clients = sh.clients.lock().map(|c| c.len()).unwrap_or(0);
    let (aof, fsync) = appendfsync(&stats.sync);
    let mut out = Vec::new();
    out.push((
        "server",
        format!(
            "redis_version:{REDIS_VERSION}\r\ncask_version:{}\r\nredis_mode:standalone\r\n\
             os:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\n\
             uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:cask\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            sh.local_addr.port(),
            uptime / 86400,
        ),
    ));
    out.push((
        "clients",
        format!(
            "connected_clients:{clients}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n",
            sh.config.maxclients,
            sh.store.ready.blocked_clients()
        ),
    ));
    out.push((
        "memory",
        format!(
            "used_memory:{0}\r\nused_memory_human:{1}\r\nmaxmemory:0\r\n\
             maxmemory_policy:noeviction\r\n",
            stats.keys * 64,
            human(stats.keys * 64)
        ),
    ));
    out.push((
        "persistence",
        format!(
            "loading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\n\
             rdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\naof_enabled:{aof}\r\n\
             aof_rewrite_in_progress:0\r\naof_last_write_status:{}\r\n\
             cask_sync_policy:{fsync}\r\n",
            c.dirty.load(Ordering::Relaxed),
            u8::from(sh.bgsave_running.load(Ordering::Relaxed)),
            sh.last_save.load(Ordering::Relaxed),
            if sh.store.db.is_poisoned() {
                "err"
            } else {
                "ok"
            },
        ),
    ));
    out.push((
        "stats",
        format!(
            "total_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             total_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\n\
             rejected_connections:{}\r\nexpired_keys:0\r\nevicted_keys:0\r\n\
             keyspace_hits:{}\r\nkeyspace_misses:{}\r\ntotal_error_replies:{}\r\n",
            c.connections.load(Ordering::Relaxed),
            c.commands.load(Ordering::Relaxed),
            c.net_in.load(Ordering::Relaxed),
            c.net_out.load(Ordering::Relaxed),
            c.rejected.load(Ordering::Relaxed),
            c.hits.load(Ordering::Relaxed),
            c.misses.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        ),
    ));
    out.push((
        "commandstats",
        sh.cmd_stats.render(super::COMMANDS.iter().map(|c| c.name)),
    ));
    out.push((
        "replication",
        "role:master\r\nconnected_slaves:0\r\n".into(),
    ));
    let mut ks = String::new();
    let now = ctx.now_ms();
    for db in 0..DATABASES as u8 {
        let (mut keys, mut expires, mut ttl_sum) = (0u64, 0u64, 0u64);
        for k in sh.store.keys_from(db, None) {
            let Ok(k) = k else { continue };
            keys += 1;
            if let Ok(Some(meta)) = sh.store.meta(db, &k)
                && let Some(at) = meta.expire_at
            {
                expires += 1;
                ttl_sum += at.saturating_sub(now);
            }
        }
        if keys > 0 {
            let avg = ttl_sum.checked_div(expires).unwrap_or(0);
            let _ = write!(ks, "db{db}:keys={keys},expires={expires},avg_ttl={avg}\r\n");
        }
    }
    out.push(("keyspace", ks));
    out.push((
        "cask",
        format!(
            "engine_keys:{}\r\nengine_segments:{}\r\nengine_total_bytes:{}\r\n\
             engine_live_bytes:{}\r\nengine_dead_bytes:{}\r\nengine_seq:{}\r\n\
             engine_sync:{fsync}\r\nengine_syncs:{}\r\nengine_writes:{}\r\n\
             engine_compactions:{}\r\nengine_reclaimed_bytes:{}\r\nengine_poisoned:{}\r\n",
            stats.keys,
            stats.segments.len(),
            stats.total_bytes,
            stats.live_bytes,
            stats.dead_bytes,
            stats.seq,
            stats.syncs,
            stats.writes,
            stats.compactions,
            stats.reclaimed_bytes,
            u8::from(sh.store.db.is_poisoned()),
        ),
    ));
    out
}

fn human(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2}G", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.2}M", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.2}K", b as f64 / 1024.0)
    }
}

fn appendfsync(sync: &SyncPolicy) -> (u8, &'static str) {
    match sync {
        SyncPolicy::Always => (1, "always"),
        SyncPolicy::Interval(_) => (1, "everysec"),
        SyncPolicy::Never => (0, "no"),
    }
}

/// INFO [section ...]
pub fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let all = args.iter().any(|a| is(a, "all") || is(a, "everything"));
    let default = args.is_empty() || args.iter().any(|a| is(a, "default"));
    let mut text = String::new();
    for (name, body) in sections(ctx) {
        // As in Redis, the default sections leave out commandstats.
        if all || (default && name != "commandstats") || args.iter().any(|a| is(a, name)) {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            let mut title = name.to_string();
            title[..1].make_ascii_uppercase();
            let _ = write!(text, "# {title}\r\n{body}");
        }
    }
    Ok(Frame::Verbatim(text.into()))
}

/// Redis's encoding thresholds, which cask accepts and ignores, with Redis's defaults.
pub fn default_tunables() -> std::collections::BTreeMap<String, String> {
    [
        ("hash-max-listpack-entries", "128"),
        ("hash-max-listpack-value", "64"),
        ("hash-max-ziplist-entries", "128"),
        ("hash-max-ziplist-value", "64"),
        ("list-max-listpack-size", "-2"),
        ("list-max-ziplist-size", "-2"),
        ("list-compress-depth", "0"),
        ("set-max-intset-entries", "512"),
        ("set-max-listpack-entries", "128"),
        ("set-max-listpack-value", "64"),
        ("zset-max-listpack-entries", "128"),
        ("zset-max-listpack-value", "64"),
        ("zset-max-ziplist-entries", "128"),
        ("zset-max-ziplist-value", "64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn config_params(sh: &Shared) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = fixed_params(sh)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let tunables = sh.tunables.lock().unwrap_or_else(|e| e.into_inner());
    params.extend(tunables.iter().map(|(k, v)| (k.clone(), v.clone())));
    params
}

fn fixed_params(sh: &Shared) -> Vec<(&'static str, String)> {
    let stats_sync = sh.store.db.options().sync;
    let (aof, fsync) = appendfsync(&stats_sync);
    let l = &sh.config.limits;
    vec![
        ("save", String::new()),
        ("appendonly", if aof == 1 { "yes" } else { "no" }.into()),
        ("appendfsync", fsync.into()),
        ("databases", DATABASES.to_string()),
        ("port", sh.local_addr.port().to_string()),
        ("bind", sh.config.bind.clone()),
        ("maxclients", sh.config.maxclients.to_string()),
        ("requirepass", sh.password().unwrap_or_default()),
        (
            "protected-mode",
            if sh.config.protected_mode {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
        ("proto-max-bulk-len", l.max_bulk_len.to_string()),
        (
            "client-query-buffer-limit",
            l.query_buffer_limit.to_string(),
        ),
        ("proto-max-multibulk-len", l.max_multibulk_len.to_string()),
        ("dir", sh.store.db.dir().display().to_string()),
        ("timeout", "0".into()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        (
            "notify-keyspace-events",
            crate::server::notify::flags_to_string(sh.notify.flags()),
        ),
    ]
}

/// CONFIG GET pattern... | SET name value | RESETSTAT
pub fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let sub = &args[0];
    let rest = &args[1..];
    if is(sub, "GET") {
        if rest.is_empty() {
            return Err(CmdError::arity("config|get"));
        }
        let params = config_params(ctx.shared);
        let pairs = params
            .into_iter()
            .filter(|(name, _)| {
                rest.iter()
                    .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
            })
            .map(|(name, v)| (Frame::bulk(name), Frame::bulk(v)))
            .collect();
        Ok(Frame::Map(pairs))
    } else if is(sub, "SET") {
        if rest.len() < 2 || !rest.len().is_multiple_of(2) {
            return Err(CmdError::arity("config|set"));
        }
        for pair in rest.chunks(2) {
            let name = &pair[0];
            if is(name, "notify-keyspace-events") {
                let Some(flags) = crate::server::notify::parse_flags(&pair[1]) else {
                    return Err(CmdError::err(
                        "CONFIG SET failed (possibly related to argument \
                         'notify-keyspace-events') - Invalid event class character. Use \
                         'Ag$lshzxeKEtmdn'.",
                    ));
                };
                ctx.shared.notify.set_flags(flags);
            } else if is(name, "requirepass") {
                let pw = String::from_utf8_lossy(&pair[1]).into_owned();
                *ctx.shared
                    .requirepass
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = (!pw.is_empty()).then_some(pw);
            } else if let Some(v) = ctx
                .shared
                .tunables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&String::from_utf8_lossy(name).to_ascii_lowercase())
            {
                *v = String::from_utf8_lossy(&pair[1]).into_owned();
            } else if let Some((_, current)) = fixed_params(ctx.shared)
                .into_iter()
                .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            {
                // Setting a fixed parameter to the value it has is a no-op (Redis's test
                // suite starts with CONFIG SET save "").
                if current.as_bytes() == &pair[1][..] {
                    continue;
                }
                return Err(CmdError::err(format!(
                    "CONFIG SET failed (possibly related to argument '{}') - can't set \
                     immutable config",
                    truncate(name, 128)
                )));
            } else {
                return Err(CmdError::err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{}'",
                    truncate(name, 128)
                )));
            }
        }
        Ok(Frame::ok())
    } else if is(sub, "RESETSTAT") {
        let c = &ctx.shared.counters;
        for counter in [
            &c.commands,
            &c.hits,
            &c.misses,
            &c.net_in,
            &c.net_out,
            &c.rejected,
            &c.errors,
            &c.connections,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        ctx.shared.cmd_stats.reset();
        Ok(Frame::ok())
    } else if is(sub, "HELP") {
        Ok(Frame::Array(
            [
                "CONFIG GET <pattern>...",
                "CONFIG SET <name> <value>",
                "CONFIG RESETSTAT",
            ]
            .iter()
            .map(|l| Frame::Simple((*l).into()))
            .collect(),
        ))
    } else {
        Err(CmdError::unknown_subcommand(sub, "config"))
    }
}

/// DBSIZE
pub fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    Ok(Frame::Integer(ctx.store().dbsize(ctx.db())? as i64))
}

fn flush_mode(args: &[Bytes]) -> CmdResult<()> {
    match args {
        [] => Ok(()),
        [m] if is(m, "ASYNC") || is(m, "SYNC") => Ok(()),
        _ => Err(CmdError::syntax()),
    }
}

/// FLUSHDB [ASYNC|SYNC]
pub fn flushdb(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    flush_mode(args)?;
    let v = ctx.store().flush_db(ctx.db())?;
    ctx.wrote(v);
    Ok(Frame::ok())
}

/// FLUSHALL [ASYNC|SYNC]
pub fn flushall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    flush_mode(args)?;
    for db in 0..DATABASES as u8 {
        let v = ctx.store().flush_db(db)?;
        ctx.wrote(v);
    }
    Ok(Frame::ok())
}

/// TIME
pub fn time(_ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CmdError::err("clock is before 1970"))?;
    Ok(Frame::Array(vec![
        Frame::bulk(now.as_secs().to_string()),
        Frame::bulk(now.subsec_micros().to_string()),
    ]))
}

/// LASTSAVE
pub fn lastsave(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    Ok(Frame::Integer(
        ctx.shared.last_save.load(Ordering::Relaxed) as i64
    ))
}

fn save_now(db: &cask_engine::Db) -> Result<(), cask_engine::Error> {
    db.sync()?;
    db.compact()?;
    Ok(())
}

/// SAVE: fsync and compact, on a blocking thread.
pub fn save(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Outcome> {
    let db = ctx.store().db.clone();
    let last = ctx.shared.last_save.clone();
    let dirty = ctx.shared.counters.dirty.clone();
    let saved = dirty.load(Ordering::Relaxed);
    Ok(Outcome::Blocking(Box::new(move || match save_now(&db) {
        Ok(()) => {
            last.store(unix_secs(), Ordering::Relaxed);
            dirty.fetch_sub(saved, Ordering::Relaxed);
            Frame::ok()
        }
        Err(e) => Frame::error(format!("ERR {e}")),
    })))
}

fn background(ctx: &Ctx<'_>) -> CmdResult<()> {
    let sh = ctx.shared;
    if sh.bgsave_running.swap(true, Ordering::SeqCst) {
        return Err(CmdError::err("Background save already in progress"));
    }
    let db = sh.store.db.clone();
    let last = sh.last_save.clone();
    let running = sh.bgsave_running.clone();
    let dirty = sh.counters.dirty.clone();
    let saved = dirty.load(Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        match save_now(&db) {
            Ok(()) => {
                last.store(unix_secs(), Ordering::Relaxed);
                // Changes made while it ran stay counted, as in Redis.
                dirty.fetch_sub(saved, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "background save failed"),
        }
        running.store(false, Ordering::SeqCst);
    });
    Ok(())
}

/// BGSAVE [SCHEDULE]
pub fn bgsave(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    match args {
        [] => {}
        [s] if is(s, "SCHEDULE") => {}
        _ => return Err(CmdError::syntax()),
    }
    background(ctx)?;
    Ok(Frame::Simple("Background saving started".into()))
}

/// BGREWRITEAOF
pub fn bgrewriteaof(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult<Frame> {
    background(ctx)?;
    Ok(Frame::Simple(
        "Background append only file rewriting started".into(),
    ))
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]
pub fn shutdown(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Outcome> {
    for a in args {
        if is(a, "ABORT") {
            return Err(CmdError::err("No shutdown in progress."));
        }
        if !(is(a, "NOSAVE") || is(a, "SAVE") || is(a, "NOW") || is(a, "FORCE")) {
            return Err(CmdError::syntax());
        }
    }
    Ok(Outcome::Shutdown)
}

/// FUNCTION FLUSH [ASYNC|SYNC] | LIST: cask has no scripting, so there are never functions.
pub fn function(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult<Frame> {
    let sub = &args[0];
    if is(sub, "FLUSH") {
        flush_mode(&args[1..])?;
        Ok(Frame::ok())
    } else if is(sub, "LIST") {
        Ok(Frame::Array(vec![]))
    } else {
        Err(CmdError::unknown_subcommand(sub, "function"))
    }
}
