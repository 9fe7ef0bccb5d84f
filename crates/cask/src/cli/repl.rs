//! `cask repl`: an interactive shell on an open database.
//!
//! On a terminal it reads lines with rustyline (editing, history in `~/.cask_history`) and
//! shows a `cask> ` prompt. From a pipe it reads stdin line by line without any prompt, so
//! `cask repl < script` prints only the commands' own output. Arguments are split by
//! [`tokenize`] (quotes and backslash escapes); values are shown with [`escape`]. An error
//! is printed on stderr as `error: ...` and the shell goes on; end of input (or `quit`)
//! ends it with exit status 0. Lines starting with `#` are comments.

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cask_engine::{Db, Options, WriteOptions};
use clap::Parser;

use super::admin::{render_stats, size};
use super::kv::{NOT_FOUND, delete_key, expire_at, get_string, set_string, write_scan};
use super::text::{escape, tokenize};
use super::{CliError, CliResult, ScanArgs};

const HELP: &str = "\
commands (arguments may be \"quoted\" or 'quoted'; escapes: \\n \\t \\\\ \\\" \\xNN):
  set KEY VALUE [TTL]     store a value; TTL like 10s, 5m, 250ms
  get KEY                 show a value (escaped), or Key not found
  delete KEY | rm KEY     remove a key
  scan [PREFIX] [--start S] [--end E] [--limit N] [--reverse] [--keys-only]
                          list key<TAB>value in key order
  list [PREFIX] [...]     list keys only (same options as scan)
  stats                   keys, bytes, segments, compactions
  compact                 reclaim the space of dead records now
  help                    this text
  quit | exit             leave (so does end of input, Ctrl-D)";

/// Whether the shell goes on after a command.
enum Flow {
    Continue,
    Quit,
}

/// Runs the shell on the database in `dir` until `quit` or end of input.
pub fn run(dir: &Path) -> CliResult {
    let db = Db::open(dir, Options::default())?;
    let result = if io::stdin().is_terminal() {
        interactive(&db)
    } else {
        piped(&db)
    };
    db.close()?;
    result.map(|()| ExitCode::SUCCESS)
}

/// Reads commands from a pipe: no prompt, no history.
fn piped(db: &Db) -> Result<(), CliError> {
    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if let Flow::Quit = handle(db, &line)? {
            return Ok(());
        }
    }
}

/// Reads commands from a terminal with line editing and history.
fn interactive(db: &Db) -> Result<(), CliError> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| CliError::Message(format!("cannot start the line editor: {e}")))?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing or unreadable history file only means starting without one.
        let _ = editor.load_history(path);
    }
    println!(
        "cask {} on {}; type help",
        env!("CARGO_PKG_VERSION"),
        db.dir().display()
    );
    let result = loop {
        match editor.readline("cask> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match handle(db, line.as_bytes()) {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Quit) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            // Ctrl-C abandons the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break Ok(()),
            Err(e) => break Err(CliError::Message(format!("cannot read input: {e}"))),
        }
    };
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        tracing::warn!("cannot save history to {}: {e}", path.display());
    }
    result
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cask_history"))
}

/// Runs one line. Errors of the command are printed and the shell goes on; only a failure
/// to write stdout is returned.
fn handle(db: &Db, line: &[u8]) -> Result<Flow, CliError> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() || trimmed.starts_with(b"#") {
        return Ok(Flow::Continue);
    }
    let mut out = io::stdout().lock();
    let flow = match tokenize(trimmed) {
        Err(e) => {
            eprintln!("error: {e}");
            Flow::Continue
        }
        Ok(args) => match execute(db, &args, &mut out) {
            Ok(flow) => flow,
            Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Flow::Quit,
            Err(e) => {
                out.flush()?;
                eprintln!("error: {e}");
                Flow::Continue
            }
        },
    };
    out.flush()?;
    Ok(flow)
}

/// Options of `scan` and `list` in the shell: `cask scan`'s, plus a positional prefix.
#[derive(Debug, Parser)]
#[command(
    name = "scan",
    about = "List entries (or, as list, keys) in key order",
    no_binary_name = true,
    disable_version_flag = true
)]
struct ShellScan {
    /// Only keys that start with this prefix.
    #[arg(value_name = "PREFIX")]
    bare_prefix: Option<OsString>,
    #[command(flatten)]
    args: ScanArgs,
}

/// Runs one tokenized command, writing its output to `out`.
fn execute(db: &Db, args: &[Vec<u8>], out: &mut dyn Write) -> Result<Flow, CliError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Ok(Flow::Continue);
    };
    let cmd = String::from_utf8_lossy(cmd).to_ascii_lowercase();
    match (cmd.as_str(), rest) {
        ("set", [key, value]) => {
            set_string(db, key, value, WriteOptions::default())?;
            writeln!(out, "OK")?;
        }
        ("set", [key, value, ttl]) => {
            let ttl = std::str::from_utf8(ttl)
                .ok()
                .and_then(|t| humantime::parse_duration(t).ok())
                .ok_or_else(|| {
                    CliError::Message(format!(
                        "invalid TTL {:?} (try 10s, 5m, 250ms)",
                        escape(ttl)
                    ))
                })?;
            let opts = WriteOptions {
                expire_at: Some(expire_at(db, ttl)),
            };
            set_string(db, key, value, opts)?;
            writeln!(out, "OK")?;
        }
        ("get", [key]) => match get_string(db, key)? {
            Some(value) => writeln!(out, "{}", escape(&value))?,
            None => writeln!(out, "{NOT_FOUND}")?,
        },
        ("delete" | "del" | "rm", [key]) => {
            if delete_key(db, key)? {
                writeln!(out, "OK")?;
            } else {
                writeln!(out, "{NOT_FOUND}")?;
            }
        }
        ("scan" | "list", rest) => {
            let parsed = match ShellScan::try_parse_from(rest.iter().map(|a| os_string(a))) {
                Ok(parsed) => parsed,
                Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
                    write!(out, "{}", e.render())?;
                    return Ok(Flow::Continue);
                }
                Err(e) => {
                    // clap's first line is the message; the rest is advice for a shell.
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or_default();
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    return Err(CliError::Message(format!("{cmd}: {first}")));
                }
            };
            let mut scan = parsed.args;
            if let Some(prefix) = parsed.bare_prefix {
                if scan.prefix.is_some() {
                    return Err(CliError::Message(
                        "give the prefix either as an argument or with --prefix".into(),
                    ));
                }
                scan.prefix = Some(prefix);
            }
            scan.keys_only |= cmd == "list";
            write_scan(db, &scan, out)?;
        }
        ("stats", []) => out.write_all(render_stats(&db.stats(), db.now_ms()).as_bytes())?,
        ("compact", []) => {
            let r = db.compact()?;
            writeln!(
                out,
                "compacted {} segment(s) into {}: {} -> {}, reclaimed {}",
                r.segments_in,
                r.segments_out,
                size(r.bytes_in),
                size(r.bytes_out),
                size(r.reclaimed())
            )?;
        }
        ("help" | "?", _) => writeln!(out, "{HELP}")?,
        ("quit" | "exit", []) => return Ok(Flow::Quit),
        ("set" | "get" | "delete" | "del" | "rm" | "stats" | "compact" | "quit" | "exit", _) => {
            return Err(CliError::Message(format!(
                "wrong number of arguments for {cmd}; type help for usage"
            )));
        }
        _ => {
            return Err(CliError::Message(format!(
                "unknown command {:?}; type help for the list",
                escape(&args[0])
            )));
        }
    }
    Ok(Flow::Continue)
}

fn os_string(bytes: &[u8]) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(bytes.to_vec())
    }
    #[cfg(not(unix))]
    {
        OsString::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_scan_parser_is_valid() {
        use clap::CommandFactory;
        ShellScan::command().debug_assert();
    }
}
