//! Waiting for the reasons to stop: SIGINT, SIGTERM or the SHUTDOWN command.
//!
//! The signal handlers are installed before the server announces its address, so a signal
//! sent as soon as the address is known is never lost (or fatal).

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Shared;

/// Installed signal handlers.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Installs the SIGINT and SIGTERM handlers.
    ///
    /// # Errors
    /// If the handlers cannot be installed.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when the server should shut down; returns why.
    pub async fn wait(&mut self, shared: &Shared) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            () = shared.shutdown_requested.notified() => "SHUTDOWN",
        }
    }
}
