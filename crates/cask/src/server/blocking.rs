//! Clients blocked on keys (BLPOP, BRPOP, BLMOVE, BZPOPMIN, ...).
//!
//! A blocked client registers a waiter on each of its keys, in arrival order. Every write
//! that leaves a collection non-empty calls [`Ready::signal`], which wakes the oldest waiter
//! of that key; it retries its command. A served client signals its keys again as it
//! leaves, which wakes the next one if something is left: clients are served in the order
//! they blocked, as in Redis. When nobody is blocked, `signal` is one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

type WaiterMap = HashMap<(u8, Vec<u8>), Vec<(u64, Arc<Notify>)>>;

/// The registry of blocked clients, by key.
#[derive(Debug, Default)]
pub struct Ready {
    waiting: AtomicUsize,
    next_id: AtomicUsize,
    map: Mutex<WaiterMap>,
}

/// A client's registration on some keys; dropping it unregisters.
#[derive(Debug)]
pub struct Waiter<'a> {
    ready: &'a Ready,
    id: u64,
    keys: Vec<(u8, Vec<u8>)>,
    /// Notified when one of the keys was written.
    pub notify: Arc<Notify>,
}

impl Ready {
    /// Registers a waiter on `keys` of database `db`.
    pub fn register(&self, db: u8, keys: &[&[u8]]) -> Waiter<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        self.register_as(db, keys, id)
    }

    /// Registers a waiter on `keys` under the id `id` (the client's id: a client waits on
    /// one command at a time), which [`Ready::waiting_before`] recognises.
    pub fn register_as(&self, db: u8, keys: &[&[u8]], id: u64) -> Waiter<'_> {
        let notify = Arc::new(Notify::new());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut owned = Vec::with_capacity(keys.len());
        for k in keys {
            map.entry((db, k.to_vec()))
                .or_default()
                .push((id, notify.clone()));
            owned.push((db, k.to_vec()));
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Waiter {
            ready: self,
            id,
            keys: owned,
            notify,
        }
    }

    /// Wakes the oldest client waiting on `key` of database `db`.
    pub fn signal(&self, db: u8, key: &[u8]) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = map.get(&(db, key.to_vec())).and_then(|w| w.first()) {
            n.notify_one();
        }
    }

    /// Whether a client other than `me` that blocked before `me` waits on `key` (any
    /// waiter at all if `me` is not waiting on it). A blocked client takes from a key only
    /// when no older waiter is in line there, so clients are served in the order they
    /// blocked even while their wake-ups race with new commands (Redis serves them before
    /// running the next command).
    pub fn waiting_before(&self, db: u8, key: &[u8], me: u64) -> bool {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return false;
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(db, key.to_vec()))
            .and_then(|w| w.first())
            .is_some_and(|(id, _)| *id != me)
    }

    /// Number of blocked clients.
    pub fn blocked_clients(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.ready.map.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            if let Some(v) = map.get_mut(k) {
                v.retain(|(id, _)| *id != self.id);
                // Pass the turn: a signal meant for this waiter may have arrived just as it
                // timed out, hung up or was killed, and only the oldest waiter is woken, so
                // the next one must look (a spurious wake-up only costs it a retry).
                match v.first() {
                    Some((_, n)) => n.notify_one(),
                    None => {
                        map.remove(k);
                    }
                }
            }
        }
        self.ready.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_leaving_after_a_signal_passes_it_on() {
        let ready = Ready::default();
        let first = ready.register(0, &[b"k"]);
        let second = ready.register(0, &[b"k"]);
        ready.signal(0, b"k");
        // The first waiter times out (or hangs up) without serving the signal.
        drop(first);
        let woken =
            tokio::time::timeout(std::time::Duration::from_secs(5), second.notify.notified()).await;
        assert!(woken.is_ok(), "the second waiter was never woken");
        assert_eq!(ready.blocked_clients(), 1);
        drop(second);
        assert_eq!(ready.blocked_clients(), 0);
        assert!(ready.map.lock().unwrap().is_empty());
    }

    #[test]
    fn only_the_oldest_waiter_of_a_key_is_first_in_line() {
        let ready = Ready::default();
        assert!(!ready.waiting_before(0, b"k", 7));
        let a = ready.register_as(0, &[b"k"], 7);
        let b = ready.register_as(0, &[b"k", b"j"], 8);
        assert!(!ready.waiting_before(0, b"k", 7));
        assert!(ready.waiting_before(0, b"k", 8));
        assert!(
            ready.waiting_before(0, b"k", 9),
            "a client not in line waits behind"
        );
        assert!(!ready.waiting_before(0, b"j", 8));
        assert!(!ready.waiting_before(1, b"k", 8), "other database");
        drop(a);
        assert!(!ready.waiting_before(0, b"k", 8));
        drop(b);
    }
}
