//! The Redis-compatible server (`cask serve`).

use std::path::Path;

use crate::config::ServeArgs;

/// Runs the server until shutdown. Returns the process exit code.
pub fn run(_dir: &Path, _args: ServeArgs) -> std::process::ExitCode {
    eprintln!("cask: serve is not implemented yet");
    std::process::ExitCode::FAILURE
}
