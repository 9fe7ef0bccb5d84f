//! Waiting for the reasons to stop: SIGINT, SIGTERM or the SHUTDOWN command.

use super::Shared;

/// Resolves when the server should shut down; returns why.
pub async fn signal(shared: &Shared) -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                return tokio::select! {
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                    () = shared.shutdown_requested.notified() => "SHUTDOWN",
                };
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            () = shared.shutdown_requested.notified() => "SHUTDOWN",
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            () = shared.shutdown_requested.notified() => "SHUTDOWN",
        }
    }
}
