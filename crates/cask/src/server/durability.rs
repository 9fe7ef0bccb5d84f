//! The durability waiter: one thread that turns "these versions must be on disk" requests
//! from every connection into as few fsyncs as possible.
//!
//! Under `--sync always` each connection, after executing a pipeline batch, must wait for
//! its highest written version to be durable before replying. Doing that wait through
//! `spawn_blocking` costs a blocking-pool thread and a wake-up per connection; with this
//! thread, waiting connections queue a request and sleep on a oneshot channel, and the
//! thread takes every queued request at once, waits for the highest version (the engine's
//! group commit makes that one fsync) and answers them all. The runtime's workers never
//! block on an fsync.

use std::sync::mpsc;

use cask_engine::Db;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<(), String>>;

/// A handle for queueing durability waits.
#[derive(Debug)]
pub struct Durability {
    tx: mpsc::Sender<(u64, Reply)>,
}

impl Durability {
    /// Starts the waiter thread for `db`; it ends when the handle is dropped.
    ///
    /// # Errors
    /// If the thread cannot be spawned.
    pub fn start(db: Db) -> std::io::Result<Durability> {
        let (tx, rx) = mpsc::channel::<(u64, Reply)>();
        std::thread::Builder::new()
            .name("cask-durability".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let max = batch.iter().map(|(v, _)| *v).max().unwrap_or(0);
                    let res = db.wait_durable(max).map_err(|e| e.to_string());
                    for (_, reply) in batch {
                        let _ = reply.send(res.clone());
                    }
                }
            })?;
        Ok(Durability { tx })
    }

    /// Waits until every write up to `version` is durable.
    ///
    /// # Errors
    /// The engine's error (a failed fsync poisons the database), or a stopped waiter.
    pub async fn wait(&self, version: u64) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((version, tx))
            .map_err(|_| "the durability waiter has stopped".to_string())?;
        rx.await
            .map_err(|_| "the durability waiter has stopped".to_string())?
    }
}
