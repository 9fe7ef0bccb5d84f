//! Publish/subscribe: the server-wide registry of subscribers and each connection's outbox.
//!
//! Every connection owns an [`Outbox`]: an unbounded tokio channel plus a count of the bytes
//! queued in it and not yet written to the socket. PUBLISH (run on the publisher's task)
//! pushes the message into the outbox of every subscriber; the subscriber's connection task
//! selects on its channel beside the socket read and writes the messages out. A subscriber
//! that does not read its socket makes its queue grow: once the queued bytes would pass the
//! configured limit (`--client-output-buffer-limit-pubsub`, 0 = none), the message is
//! dropped and the subscriber is disconnected, as Redis does with its pubsub output buffer
//! hard limit. PUBLISH itself never waits on a subscriber.
//!
//! Delivery order per subscriber: the channel's message first, then one `pmessage` per
//! matching pattern, in the order the patterns were first subscribed on the server.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::ClientHandle;
use super::frame::Frame;
use super::glob;

/// A message waiting in an outbox: the frame and the bytes it was accounted for.
pub type Queued = (Frame, u64);

/// A connection's queue of messages not yet written.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    queued: AtomicU64,
    limit: u64,
    handle: Arc<ClientHandle>,
    overflowed: AtomicBool,
}

impl Outbox {
    /// A new outbox for the connection `handle`, holding at most `limit` bytes (0: no
    /// limit), and the receiver its connection task reads.
    pub fn new(
        handle: Arc<ClientHandle>,
        limit: u64,
    ) -> (Arc<Outbox>, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Arc::new(Outbox {
            tx,
            queued: AtomicU64::new(0),
            limit,
            handle,
            overflowed: AtomicBool::new(false),
        });
        (outbox, rx)
    }

    /// Queues a frame of about `size` bytes. Returns false (and disconnects the client)
    /// when that would pass the limit, or when the client is already gone.
    pub fn push(&self, frame: Frame, size: u64) -> bool {
        if self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let now = self.queued.fetch_add(size, Ordering::AcqRel) + size;
        if self.limit > 0 && now > self.limit {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            if !self.overflowed.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    client = self.handle.id,
                    limit = self.limit,
                    "closing subscriber that reached the pubsub output buffer limit"
                );
                self.handle.killed.store(true, Ordering::Release);
                self.handle.kill.notify_one();
            }
            return false;
        }
        if self.tx.send((frame, size)).is_err() {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Records that `size` bytes taken from the queue were written to the socket.
    pub fn written(&self, size: u64) {
        self.queued.fetch_sub(size, Ordering::AcqRel);
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }
}

/// A connection's subscriptions (kept in its `ClientState`).
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Where messages for this connection go; `None` for callers that cannot receive
    /// pushes (SUBSCRIBE is refused there).
    pub outbox: Option<Arc<Outbox>>,
    /// Subscribed channels, in subscription order.
    pub channels: Vec<Bytes>,
    /// Subscribed patterns, in subscription order.
    pub patterns: Vec<Bytes>,
}

impl Subscriptions {
    /// Channels plus patterns: the count SUBSCRIBE and friends reply with.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

type Subscribers = Vec<(u64, Arc<Outbox>)>;

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<Bytes, Subscribers>,
    /// Patterns in the order they were first subscribed (`order` numbers them).
    patterns: HashMap<Bytes, (u64, Subscribers)>,
    order: BTreeSet<(u64, Bytes)>,
    next_order: u64,
    /// Per client id: (channels, patterns), for CLIENT LIST.
    per_client: HashMap<u64, (usize, usize)>,
}

/// The server-wide subscriber registry.
#[derive(Debug, Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

impl Hub {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes client `id` to `channel`; returns false if it already was.
    pub fn subscribe(&self, id: u64, outbox: &Arc<Outbox>, channel: &Bytes) -> bool {
        let mut inner = self.inner();
        let subs = inner.channels.entry(channel.clone()).or_default();
        if subs.iter().any(|(c, _)| *c == id) {
            return false;
        }
        subs.push((id, outbox.clone()));
        inner.per_client.entry(id).or_default().0 += 1;
        true
    }

    /// Unsubscribes client `id` from `channel`; returns whether it was subscribed.
    pub fn unsubscribe(&self, id: u64, channel: &[u8]) -> bool {
        let mut inner = self.inner();
        let Some(subs) = inner.channels.get_mut(channel) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|(c, _)| *c != id);
        let removed = subs.len() != before;
        if subs.is_empty() {
            inner.channels.remove(channel);
        }
        if removed {
            inner.uncount(id, true);
        }
        removed
    }

    /// Subscribes client `id` to `pattern`; returns false if it already was.
    pub fn psubscribe(&self, id: u64, outbox: &Arc<Outbox>, pattern: &Bytes) -> bool {
        let mut inner = self.inner();
        let order = inner.next_order;
        let entry = inner
            .patterns
            .entry(pattern.clone())
            .or_insert_with(|| (order, Vec::new()));
        if entry.1.iter().any(|(c, _)| *c == id) {
            return false;
        }
        entry.1.push((id, outbox.clone()));
        if entry.0 == order {
            inner.next_order += 1;
            inner.order.insert((order, pattern.clone()));
        }
        inner.per_client.entry(id).or_default().1 += 1;
        true
    }

    /// Unsubscribes client `id` from `pattern`; returns whether it was subscribed.
    pub fn punsubscribe(&self, id: u64, pattern: &[u8]) -> bool {
        let mut inner = self.inner();
        let Some((order, subs)) = inner.patterns.get_mut(pattern) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|(c, _)| *c != id);
        let removed = subs.len() != before;
        if subs.is_empty() {
            let order = *order;
            inner.patterns.remove(pattern);
            inner
                .order
                .remove(&(order, Bytes::copy_from_slice(pattern)));
        }
        if removed {
            inner.uncount(id, false);
        }
        removed
    }

    /// Delivers `message` to the subscribers of `channel` and of every matching pattern;
    /// returns how many deliveries were made (Redis's PUBLISH reply).
    pub fn publish(&self, channel: &Bytes, message: &Bytes) -> usize {
        let inner = self.inner();
        let mut n = 0;
        let base = (channel.len() + message.len()) as u64 + 48;
        if let Some(subs) = inner.channels.get(channel) {
            for (_, out) in subs {
                let frame = Frame::Push(vec![
                    Frame::bulk("message"),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                if out.push(frame, base) {
                    n += 1;
                }
            }
        }
        for (_, pattern) in &inner.order {
            if !glob::matches(pattern, channel) {
                continue;
            }
            let Some((_, subs)) = inner.patterns.get(pattern) else {
                continue;
            };
            for (_, out) in subs {
                let frame = Frame::Push(vec![
                    Frame::bulk("pmessage"),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                if out.push(frame, base + pattern.len() as u64 + 16) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Active channels (with at least one subscriber) matching `pattern` if given.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let inner = self.inner();
        let mut out: Vec<Bytes> = inner
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Number of subscribers of `channel` (patterns not counted, as in Redis).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.inner().channels.get(channel).map_or(0, Vec::len)
    }

    /// Number of distinct patterns subscribed by anyone.
    pub fn numpat(&self) -> usize {
        self.inner().patterns.len()
    }

    /// (channels, patterns) client `id` is subscribed to, for CLIENT LIST.
    pub fn client_counts(&self, id: u64) -> (usize, usize) {
        self.inner().per_client.get(&id).copied().unwrap_or((0, 0))
    }
}

impl Inner {
    fn uncount(&mut self, id: u64, channel: bool) {
        if let Some(c) = self.per_client.get_mut(&id) {
            if channel {
                c.0 = c.0.saturating_sub(1);
            } else {
                c.1 = c.1.saturating_sub(1);
            }
            if *c == (0, 0) {
                self.per_client.remove(&id);
            }
        }
    }
}
