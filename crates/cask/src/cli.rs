//! The `cask` command line.
//!
//! One-shot commands (`get`, `set`, `rm`, `scan`, `stats`, `compact`, `check`, `dump`,
//! `load`) open the data directory, do their work and close it again, so their writes are
//! fsynced when the process exits. `repl` keeps the database open for an interactive session.
//! `serve` hands over to [`crate::server`].
//!
//! Conventions, shared by every command (see `docs/CLI.md`):
//! - Values are written to stdout raw; keys and values in listings (`scan`, the REPL) are
//!   escaped so that every line is printable: see [`text::escape`].
//! - A failure prints one line `cask: <message>` on stderr and exits with status 1; a usage
//!   error exits with status 2 (clap's convention). User errors never panic.
//! - Long work shows a progress bar on stderr when stderr is a terminal, and none otherwise.
//! - Logs go to stderr through `tracing`, at level `warn` unless `CASK_LOG` or `RUST_LOG`
//!   says otherwise (`serve` sets up its own logging).

mod admin;
pub mod bench;
mod dump;
mod kv;
mod progress;
mod repl;
pub mod text;
pub mod torture;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cask_engine::{Db, Options, SyncPolicy};
use clap::{Args, Parser, Subcommand};

use crate::config::ServeArgs;

/// cask: a persistent key-value database.
#[derive(Debug, Parser)]
#[command(name = "cask", version, about)]
pub struct Cli {
    /// Data directory.
    #[arg(long, global = true, env = "CASK_DIR", default_value = "./cask-data")]
    pub dir: PathBuf,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Redis-compatible server (and the HTTP API).
    Serve(ServeArgs),
    /// Print a key's value (raw bytes), or `Key not found`.
    Get(GetArgs),
    /// Set a key to a value (`-` reads the value from stdin).
    Set(SetArgs),
    /// Remove a key (exit status 1 if it did not exist).
    Rm(RmArgs),
    /// List keys and values in key order, one `key<TAB>value` line each.
    Scan(ScanArgs),
    /// Interactive shell (also reads commands from a pipe).
    Repl,
    /// Show keys, sizes, segments and compaction statistics.
    Stats(StatsArgs),
    /// Rewrite segments to reclaim the space of overwritten, deleted and expired keys.
    Compact,
    /// Verify every record on disk; `--repair` salvages the intact ones.
    Check(CheckArgs),
    /// Write every key as a JSON line to stdout (binary-safe; see `load`).
    Dump,
    /// Read JSON lines as written by `dump` and store them.
    Load(LoadArgs),
    /// Measure set/get/scan throughput and latency on the data directory or a server.
    Bench(bench::BenchArgs),
    /// Crash torture: kill `cask serve` with SIGKILL over and over, verify every
    /// acknowledged write after each restart (the data directory must be new or empty).
    Torture(torture::TortureArgs),
}

/// Arguments of `cask get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key (taken as raw bytes).
    pub key: OsString,
}

/// Arguments of `cask set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key (taken as raw bytes).
    pub key: OsString,
    /// The value, or `-` to read it from stdin (binary-safe, up to end of input).
    pub value: OsString,
    /// Expire the key after this long (e.g. `10s`, `5m`, `1h 30m`, `250ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<std::time::Duration>,
}

/// Arguments of `cask rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The key (taken as raw bytes).
    pub key: OsString,
}

/// Arguments of `cask scan` (also of `scan` and `list` in the REPL).
#[derive(Debug, Args, Default)]
pub struct ScanArgs {
    /// Only keys that start with this prefix.
    #[arg(long)]
    pub prefix: Option<OsString>,
    /// First key (inclusive).
    #[arg(long)]
    pub start: Option<OsString>,
    /// Last key (exclusive).
    #[arg(long)]
    pub end: Option<OsString>,
    /// Stop after this many entries.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Descending key order.
    #[arg(long)]
    pub reverse: bool,
    /// Print keys only.
    #[arg(long)]
    pub keys_only: bool,
}

/// Arguments of `cask stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `cask check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rewrite damaged segments keeping only their intact records.
    #[arg(long)]
    pub repair: bool,
}

/// Arguments of `cask load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Entries written per atomic batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
}

/// Why a command failed. `Display` is the one line printed after `cask: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An engine error (its message is written for users).
    #[error("{0}{hint}", hint = engine_hint(.0))]
    Engine(#[from] cask_engine::Error),
    /// An I/O error outside the engine (stdin, stdout, a file).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Any other failure, already phrased for the user.
    #[error("{0}")]
    Message(String),
}

/// Advice appended to an engine error, when there is any.
fn engine_hint(e: &cask_engine::Error) -> &'static str {
    if e.is_corruption() {
        " (run `cask check` to inspect it)"
    } else {
        ""
    }
}

/// The result of a command: the exit code to use, or an error to report.
pub type CliResult = Result<ExitCode, CliError>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server sets up its own logging.
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging();
    }
    let dir = &cli.dir;
    let result = match cli.command {
        Command::Serve(args) => return crate::server::run(&cli.dir, args),
        Command::Get(args) => kv::get(dir, args),
        Command::Set(args) => kv::set(dir, args),
        Command::Rm(args) => kv::rm(dir, args),
        Command::Scan(args) => kv::scan(dir, args),
        Command::Repl => repl::run(dir),
        Command::Stats(args) => admin::stats(dir, args),
        Command::Compact => admin::compact(dir),
        Command::Check(args) => admin::check(dir, args),
        Command::Dump => dump::dump(dir),
        Command::Load(args) => dump::load(dir, args),
        Command::Bench(args) => bench::run(dir, args),
        Command::Torture(args) => torture::run(dir, &args),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`cask dump | head`) is not an error worth reporting.
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `tracing` output to stderr, filtered by `CASK_LOG`, else `RUST_LOG`, else `warn`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = ["CASK_LOG", "RUST_LOG"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find_map(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    // Another subscriber (a test harness, the server) may already be installed: keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// Opens the database for a one-shot command: no background compaction, and no fsync per
/// write, because [`Db::close`] syncs everything before the command exits.
fn open_oneshot(dir: &Path) -> Result<Db, CliError> {
    let db = Db::open(
        dir,
        Options {
            sync: SyncPolicy::Never,
            background_compaction: false,
            ..Options::default()
        },
    )?;
    // `dump`, `load` and `rm` see collections in the current element layout only.
    crate::server::coll::migrate_v0_elements(&db)?;
    Ok(db)
}

/// Like [`open_oneshot`], for commands that only read or remove: a directory that does not
/// exist is an error rather than a new, empty database (a mistyped `--dir` should not pass
/// silently).
fn open_existing(dir: &Path) -> Result<Db, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Message(format!(
            "no database in {} (the directory does not exist)",
            dir.display()
        )));
    }
    open_oneshot(dir)
}

/// Bytes of a command-line argument, unchanged (keys and values are binary on Unix).
fn arg_bytes(arg: &OsString) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        arg.as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        arg.to_string_lossy().into_owned().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
