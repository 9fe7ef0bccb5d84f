//! cask: a persistent key-value database with Redis's interface, on `cask-engine`.
//!
//! - [`cli`]: the `cask` command line (get/set/rm/scan, repl, check, compact, stats,
//!   dump/load, bench, serve).
//! - [`config`]: server configuration from flags, `CASK_*` variables and a TOML file.
//! - [`server`]: the Redis-compatible RESP2/RESP3 server.
//! - [`http`]: the HTTP/JSON API on the same database.

pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzz_support;
pub mod http;
pub mod server;
