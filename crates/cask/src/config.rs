//! Server configuration: flags override `CASK_*` environment variables, which override the
//! TOML file given by `--config`.

use std::path::PathBuf;

/// Flags of `cask serve`. Every field is optional so that a flag or variable that was not
/// given falls through to the TOML file, then to the built-in default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// RESP port (default 7379).
    #[arg(long, env = "CASK_PORT")]
    pub port: Option<u16>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long, env = "CASK_BIND")]
    pub bind: Option<String>,
    /// Durability: always, interval, interval:MS or never (default interval).
    #[arg(long, env = "CASK_SYNC")]
    pub sync: Option<String>,
    /// Password required by AUTH (and HTTP bearer token).
    #[arg(long, env = "CASK_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// Maximum simultaneous clients (default 10000).
    #[arg(long, env = "CASK_MAXCLIENTS")]
    pub maxclients: Option<usize>,
    /// TOML configuration file.
    #[arg(long, env = "CASK_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP API port (default 7380, 0 disables it).
    #[arg(long, env = "CASK_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Refuse non-loopback binds without a password: yes or no (default yes).
    #[arg(long, env = "CASK_PROTECTED_MODE")]
    pub protected_mode: Option<String>,
}
