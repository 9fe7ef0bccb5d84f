//! The `cask` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::server::run(&cli.dir, args),
    }
}
