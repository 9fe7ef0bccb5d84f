//! Server configuration: flags override `CASK_*` environment variables, which override the
//! TOML file given by `--config`, which overrides the built-in defaults.
//!
//! clap already resolves "flag, else environment variable" for every field of [`ServeArgs`];
//! [`ServerConfig::resolve`] then falls back to the TOML file and finally to the defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Flags of `cask serve`. Every field is optional so that a flag or variable that was not
/// given falls through to the TOML file, then to the built-in default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// RESP port (default 7379; 0 picks a free port).
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
    /// HTTP API port on the same address (default 7380, 0 disables the HTTP API).
    #[arg(long, env = "CASK_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Most entries one `GET /v1/kv` page may return (default 10000).
    #[arg(long, env = "CASK_HTTP_MAX_LIST_LIMIT")]
    pub http_max_list_limit: Option<usize>,
    /// Refuse non-loopback binds without a password: yes or no (default yes).
    #[arg(long, env = "CASK_PROTECTED_MODE")]
    pub protected_mode: Option<String>,
    /// Largest bulk string a client may send, in bytes (default 512 MiB).
    #[arg(long, env = "CASK_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<u64>,
    /// Most arguments in one command (default 1048576).
    #[arg(long, env = "CASK_PROTO_MAX_MULTIBULK_LEN")]
    pub proto_max_multibulk_len: Option<u64>,
    /// Largest unprocessed input buffered per client, in bytes (default 1 GiB).
    #[arg(long, env = "CASK_CLIENT_QUERY_BUFFER_LIMIT")]
    pub client_query_buffer_limit: Option<u64>,
    /// Most bytes of pub/sub messages queued for a subscriber that does not read them;
    /// past it the subscriber is disconnected (default 32 MiB, 0 = no limit).
    #[arg(long, env = "CASK_CLIENT_OUTPUT_BUFFER_LIMIT_PUBSUB")]
    pub client_output_buffer_limit_pubsub: Option<u64>,
    /// Seal a segment file once it reaches this many bytes (default 128 MiB). Small values
    /// make rotation, hint files and compaction frequent (`cask torture` uses that).
    #[arg(long, env = "CASK_MAX_SEGMENT_SIZE")]
    pub max_segment_size: Option<u64>,
    /// How often background compaction looks for wasteful segments, in ms (default 10000).
    #[arg(long, env = "CASK_COMPACTION_INTERVAL_MS")]
    pub compaction_interval_ms: Option<u64>,
    /// Slots of the engine's cache of recently written and read small values, one value per
    /// slot (default 16384, 0 = off).
    #[arg(long, env = "CASK_VALUE_CACHE_SLOTS")]
    pub value_cache_slots: Option<usize>,
    /// Largest value the value cache holds, in bytes (default 256).
    #[arg(long, env = "CASK_VALUE_CACHE_MAX_VALUE")]
    pub value_cache_max_value: Option<usize>,
}

/// The TOML file: the same keys as the flags, with underscores.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    port: Option<u16>,
    bind: Option<String>,
    sync: Option<String>,
    requirepass: Option<String>,
    maxclients: Option<usize>,
    http_port: Option<u16>,
    http_max_list_limit: Option<usize>,
    protected_mode: Option<String>,
    proto_max_bulk_len: Option<u64>,
    proto_max_multibulk_len: Option<u64>,
    client_query_buffer_limit: Option<u64>,
    client_output_buffer_limit_pubsub: Option<u64>,
    max_segment_size: Option<u64>,
    compaction_interval_ms: Option<u64>,
    value_cache_slots: Option<usize>,
    value_cache_max_value: Option<usize>,
}

/// Protocol limits, all checked before the memory they bound is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string in a request.
    pub max_bulk_len: u64,
    /// Most arguments in one multibulk request.
    pub max_multibulk_len: u64,
    /// Largest unparsed input held for one client.
    pub query_buffer_limit: u64,
    /// Most bytes of pub/sub messages queued for one subscriber (0: no limit).
    pub pubsub_output_limit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 << 20,
            max_multibulk_len: 1 << 20,
            query_buffer_limit: 1 << 30,
            pubsub_output_limit: 32 << 20,
        }
    }
}

/// The resolved configuration of `cask serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// RESP port; 0 picks a free one.
    pub port: u16,
    /// Sync policy text, as accepted by `SyncPolicy::from_str`.
    pub sync: String,
    /// Password required by AUTH, if any.
    pub requirepass: Option<String>,
    /// Maximum simultaneous clients.
    pub maxclients: usize,
    /// HTTP API port; 0 disables the HTTP API.
    pub http_port: u16,
    /// Most entries in one page of the HTTP listing.
    pub http_max_list_limit: usize,
    /// Whether protected mode is on.
    pub protected_mode: bool,
    /// Protocol limits.
    pub limits: Limits,
    /// Segment size for the engine (`None`: the engine's default).
    pub max_segment_size: Option<u64>,
    /// Background compaction interval in ms (`None`: the engine's default).
    pub compaction_interval_ms: Option<u64>,
    /// Value cache slots (`None`: the engine's default).
    pub value_cache_slots: Option<usize>,
    /// Largest cached value (`None`: the engine's default).
    pub value_cache_max_value: Option<usize>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is malformed.
    #[error("invalid config file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml reported.
        message: String,
    },
    /// A value is out of range or unknown.
    #[error("invalid value for {name}: {message}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl ServerConfig {
    /// Resolves flags/environment (already merged by clap), the TOML file and defaults.
    ///
    /// # Errors
    /// An unreadable or malformed file, or an invalid value.
    pub fn resolve(args: &ServeArgs) -> Result<ServerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = Limits::default();
        let protected = args
            .protected_mode
            .clone()
            .or(file.protected_mode)
            .unwrap_or_else(|| "yes".into());
        let protected_mode = match protected.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" => true,
            "no" | "false" | "0" => false,
            other => {
                return Err(ConfigError::Invalid {
                    name: "protected-mode",
                    message: format!("expected yes or no, got '{other}'"),
                });
            }
        };
        let cfg = ServerConfig {
            bind: args
                .bind
                .clone()
                .or(file.bind)
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: args.port.or(file.port).unwrap_or(7379),
            sync: args
                .sync
                .clone()
                .or(file.sync)
                .unwrap_or_else(|| "interval".into()),
            requirepass: args
                .requirepass
                .clone()
                .or(file.requirepass)
                .filter(|p| !p.is_empty()),
            maxclients: args.maxclients.or(file.maxclients).unwrap_or(10_000),
            http_port: args.http_port.or(file.http_port).unwrap_or(7380),
            http_max_list_limit: args
                .http_max_list_limit
                .or(file.http_max_list_limit)
                .unwrap_or(10_000),
            protected_mode,
            limits: Limits {
                max_bulk_len: args
                    .proto_max_bulk_len
                    .or(file.proto_max_bulk_len)
                    .unwrap_or(defaults.max_bulk_len),
                max_multibulk_len: args
                    .proto_max_multibulk_len
                    .or(file.proto_max_multibulk_len)
                    .unwrap_or(defaults.max_multibulk_len),
                query_buffer_limit: args
                    .client_query_buffer_limit
                    .or(file.client_query_buffer_limit)
                    .unwrap_or(defaults.query_buffer_limit),
                pubsub_output_limit: args
                    .client_output_buffer_limit_pubsub
                    .or(file.client_output_buffer_limit_pubsub)
                    .unwrap_or(defaults.pubsub_output_limit),
            },
            max_segment_size: args.max_segment_size.or(file.max_segment_size),
            compaction_interval_ms: args.compaction_interval_ms.or(file.compaction_interval_ms),
            value_cache_slots: args.value_cache_slots.or(file.value_cache_slots),
            value_cache_max_value: args.value_cache_max_value.or(file.value_cache_max_value),
        };
        if cfg.compaction_interval_ms == Some(0) {
            return Err(ConfigError::Invalid {
                name: "compaction-interval-ms",
                message: "must be at least 1".into(),
            });
        }
        if cfg.maxclients == 0 {
            return Err(ConfigError::Invalid {
                name: "maxclients",
                message: "must be at least 1".into(),
            });
        }
        if cfg.http_max_list_limit == 0 {
            return Err(ConfigError::Invalid {
                name: "http-max-list-limit",
                message: "must be at least 1".into(),
            });
        }
        if cfg.limits.max_bulk_len == 0 || cfg.limits.query_buffer_limit < 1024 {
            return Err(ConfigError::Invalid {
                name: "limits",
                message: "proto-max-bulk-len must be > 0 and client-query-buffer-limit >= 1024"
                    .into(),
            });
        }
        Ok(cfg)
    }

    /// Whether the bind address is a loopback address (or `localhost`).
    pub fn binds_loopback(&self) -> bool {
        if self.bind.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.bind
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_flags_or_file() {
        let cfg = ServerConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1");
        assert_eq!(cfg.port, 7379);
        assert_eq!(cfg.sync, "interval");
        assert!(cfg.protected_mode);
        assert_eq!(cfg.limits, Limits::default());
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cask.toml");
        std::fs::write(
            &path,
            "port = 9000\nbind = \"127.0.0.2\"\nsync = \"never\"\nproto_max_bulk_len = 100\n",
        )
        .unwrap();
        let args = ServeArgs {
            port: Some(9100),
            config: Some(path),
            ..ServeArgs::default()
        };
        let cfg = ServerConfig::resolve(&args).unwrap();
        assert_eq!(cfg.port, 9100, "flag wins over file");
        assert_eq!(cfg.bind, "127.0.0.2", "file wins over default");
        assert_eq!(cfg.sync, "never");
        assert_eq!(cfg.limits.max_bulk_len, 100);
        assert_eq!(cfg.limits.query_buffer_limit, 1 << 30);
        assert_eq!(cfg.limits.pubsub_output_limit, 32 << 20);
    }

    #[test]
    fn pubsub_output_limit_flag_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cask.toml");
        std::fs::write(&path, "client_output_buffer_limit_pubsub = 4096\n").unwrap();
        let mut args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let cfg = ServerConfig::resolve(&args).unwrap();
        assert_eq!(
            cfg.limits.pubsub_output_limit, 4096,
            "file wins over default"
        );
        args.client_output_buffer_limit_pubsub = Some(0);
        let cfg = ServerConfig::resolve(&args).unwrap();
        assert_eq!(cfg.limits.pubsub_output_limit, 0, "flag wins over file");
    }

    #[test]
    fn bad_file_and_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cask.toml");
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(matches!(
            ServerConfig::resolve(&args),
            Err(ConfigError::Parse { .. })
        ));
        let args = ServeArgs {
            protected_mode: Some("maybe".into()),
            ..ServeArgs::default()
        };
        assert!(ServerConfig::resolve(&args).is_err());
    }

    #[test]
    fn engine_knobs_resolve_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cask.toml");
        std::fs::write(
            &path,
            "max_segment_size = 8192\ncompaction_interval_ms = 50\n\
             value_cache_slots = 10\nvalue_cache_max_value = 64\n",
        )
        .unwrap();
        let args = ServeArgs {
            compaction_interval_ms: Some(20),
            value_cache_slots: Some(0),
            config: Some(path),
            ..ServeArgs::default()
        };
        let cfg = ServerConfig::resolve(&args).unwrap();
        assert_eq!(cfg.max_segment_size, Some(8192), "from the file");
        assert_eq!(cfg.compaction_interval_ms, Some(20), "flag wins");
        assert_eq!(cfg.value_cache_slots, Some(0), "flag wins");
        assert_eq!(cfg.value_cache_max_value, Some(64), "from the file");
        let cfg = ServerConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(
            (cfg.max_segment_size, cfg.compaction_interval_ms),
            (None, None)
        );
        let args = ServeArgs {
            compaction_interval_ms: Some(0),
            ..ServeArgs::default()
        };
        assert!(ServerConfig::resolve(&args).is_err());
    }
}
