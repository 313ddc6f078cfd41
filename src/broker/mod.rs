//! The in-process pub/sub engine: publications in, deliveries out.
//!
//! The broker knows nothing of Laravel, Pusher or socket.io. It moves opaque
//! publications (channel bytes, payload bytes) from publishers to subscribers, matching
//! exact channels, Redis glob patterns and shard channels with Redis's semantics (a
//! subscriber is counted once per matching subscription). Protocol edges attach in two
//! ways:
//! - as a [`Subscriber`] on channels and patterns (RESP clients, later the cluster bridge);
//! - as a [`Tap`] that sees every `PUBLISH` once and does its own routing (the
//!   socket.io and Pusher edges: they decode a Laravel envelope once per publication and
//!   fan the encoded frame out to their own rooms).
//!
//! Registries are sharded read-write maps, so publishes on two cores proceed in
//! parallel; a subscriber's `deliver` only queues shared bytes into its bounded outbox.
//! Room for what comes next: per-channel offsets for history and recovery would be
//! assigned in `publish` under the channel's shard lock, and a Redis backplane would
//! implement the same methods behind a trait.

pub mod glob;
pub mod history;
pub mod offset;
mod registry;

use crate::metrics::Counter;
use crate::readmostly::ReadMostly;
use bytes::Bytes;
use registry::{PatternRegistry, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Identifies one subscribing connection; unique for the life of the process.
pub type SubscriberId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh subscriber (client) id. RESP's `CLIENT ID` reports it.
pub fn next_subscriber_id() -> SubscriberId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// How a delivery matched its subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via<'a> {
    /// SUBSCRIBE to this exact channel.
    Channel,
    /// PSUBSCRIBE with this pattern.
    Pattern(&'a [u8]),
    /// SSUBSCRIBE to this shard channel.
    Shard,
}

/// Something that receives publications: one connection's view of the broker.
pub trait Subscriber: Send + Sync {
    fn id(&self) -> SubscriberId;
    /// Called on the publisher's task: queue and return, never block.
    fn deliver(&self, via: Via<'_>, channel: &Bytes, payload: &Bytes);
}

/// An edge that sees every `PUBLISH` and routes it itself.
pub trait Tap: Send + Sync {
    /// Returns how many receivers the publication reached (added to PUBLISH's reply).
    fn publish(&self, channel: &Bytes, payload: &Bytes) -> usize;
}

/// Counters that INFO (`total_published`, `total_delivered`) and /metrics
/// (`herald_publications_total`, `herald_deliveries_total`) report: publications through
/// the broker (RESP PUBLISH and SPUBLISH, each channel of Laravel's EVAL) and the
/// receivers they reached (RESP subscribers and WebSocket connections).
#[derive(Default)]
pub struct BrokerStats {
    pub published: Counter,
    pub delivered: Counter,
}

/// The hub. Cheap to share: wrap it in an `Arc`.
#[derive(Default)]
pub struct Broker {
    channels: Registry,
    shard_channels: Registry,
    patterns: PatternRegistry,
    taps: ReadMostly<dyn Tap>,
    pub stats: BrokerStats,
}

impl Broker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attach an edge that sees every publication.
    pub fn add_tap(&self, tap: Arc<dyn Tap>) {
        self.taps.push(tap);
    }

    /// Subscribe to an exact channel. False if this subscriber already was.
    pub fn subscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        self.channels.add(channel, sub)
    }

    pub fn unsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool {
        self.channels.remove(channel, id)
    }

    pub fn psubscribe(&self, pattern: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        self.patterns.add(pattern, sub)
    }

    pub fn punsubscribe(&self, pattern: &[u8], id: SubscriberId) -> bool {
        self.patterns.remove(pattern, id)
    }

    pub fn ssubscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        self.shard_channels.add(channel, sub)
    }

    pub fn sunsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool {
        self.shard_channels.remove(channel, id)
    }

    /// PUBLISH: deliver to channel subscribers, pattern subscribers and taps.
    /// Returns the number of receivers, as Redis counts them.
    pub fn publish(&self, channel: Bytes, payload: Bytes) -> usize {
        self.stats.published.inc();
        let mut n = self.channels.deliver(&channel, &payload, Via::Channel);
        n += self.patterns.deliver(&channel, &payload);
        for tap in self.taps.load().iter() {
            n += tap.publish(&channel, &payload);
        }
        self.stats.delivered.add(n as u64);
        n
    }

    /// SPUBLISH: shard channels only (no patterns, no taps), as Redis does.
    pub fn spublish(&self, channel: Bytes, payload: Bytes) -> usize {
        self.stats.published.inc();
        let n = self.shard_channels.deliver(&channel, &payload, Via::Shard);
        self.stats.delivered.add(n as u64);
        n
    }

    /// PUBSUB CHANNELS [pattern]: active channels, optionally filtered.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels.names(pattern)
    }

    pub fn shard_channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.shard_channels.names(pattern)
    }

    /// PUBSUB NUMSUB: subscribers of one exact channel.
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.channels.count(channel)
    }

    pub fn shard_numsub(&self, channel: &[u8]) -> usize {
        self.shard_channels.count(channel)
    }

    /// PUBSUB NUMPAT: distinct patterns subscribed to (Redis 7 semantics).
    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }

    /// Totals for INFO: (channels, patterns, shard channels).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.channels.len(),
            self.patterns.len(),
            self.shard_channels.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// (pattern that matched, channel, payload)
    type Received = (Option<Vec<u8>>, Bytes, Bytes);

    struct Recorder {
        id: SubscriberId,
        got: Mutex<Vec<Received>>,
    }

    impl Recorder {
        fn new() -> Arc<Self> {
            Arc::new(Recorder {
                id: next_subscriber_id(),
                got: Mutex::new(Vec::new()),
            })
        }
    }

    impl Subscriber for Recorder {
        fn id(&self) -> SubscriberId {
            self.id
        }
        fn deliver(&self, via: Via<'_>, channel: &Bytes, payload: &Bytes) {
            let pat = match via {
                Via::Pattern(p) => Some(p.to_vec()),
                _ => None,
            };
            self.got
                .lock()
                .push((pat, channel.clone(), payload.clone()));
        }
    }

    #[test]
    fn counts_each_matching_subscription() {
        let b = Broker::new();
        let r = Recorder::new();
        assert!(b.subscribe(Bytes::from_static(b"news"), r.clone()));
        assert!(!b.subscribe(Bytes::from_static(b"news"), r.clone()));
        assert!(b.psubscribe(Bytes::from_static(b"n*"), r.clone()));
        assert!(b.psubscribe(Bytes::from_static(b"*s"), r.clone()));
        assert_eq!(
            b.publish(Bytes::from_static(b"news"), Bytes::from_static(b"hi")),
            3
        );
        assert_eq!(
            b.publish(Bytes::from_static(b"other"), Bytes::from_static(b"x")),
            0
        );
        assert_eq!(r.got.lock().len(), 3);
        assert_eq!(b.numpat(), 2);
        assert_eq!(b.numsub(b"news"), 1);
    }

    #[test]
    fn payload_is_shared_not_copied() {
        let b = Broker::new();
        let (r1, r2) = (Recorder::new(), Recorder::new());
        b.subscribe(Bytes::from_static(b"c"), r1.clone());
        b.subscribe(Bytes::from_static(b"c"), r2.clone());
        let payload = Bytes::from(vec![7u8; 1024]);
        b.publish(Bytes::from_static(b"c"), payload.clone());
        let p1 = r1.got.lock()[0].2.as_ptr();
        let p2 = r2.got.lock()[0].2.as_ptr();
        assert_eq!(p1, payload.as_ptr());
        assert_eq!(p2, payload.as_ptr());
    }

    #[test]
    fn unsubscribe_forgets_empty_channels() {
        let b = Broker::new();
        let r = Recorder::new();
        b.subscribe(Bytes::from_static(b"a"), r.clone());
        b.psubscribe(Bytes::from_static(b"p*"), r.clone());
        assert_eq!(b.channels(None), vec![Bytes::from_static(b"a")]);
        assert!(b.unsubscribe(b"a", r.id));
        assert!(!b.unsubscribe(b"a", r.id));
        assert!(b.punsubscribe(b"p*", r.id));
        assert_eq!(b.sizes(), (0, 0, 0));
    }

    #[test]
    fn shard_channels_are_their_own_namespace() {
        let b = Broker::new();
        let r = Recorder::new();
        b.ssubscribe(Bytes::from_static(b"s"), r.clone());
        b.psubscribe(Bytes::from_static(b"*"), r.clone());
        assert_eq!(b.spublish(Bytes::from_static(b"s"), Bytes::new()), 1);
        assert_eq!(b.shard_numsub(b"s"), 1);
        assert_eq!(b.numsub(b"s"), 0);
    }

    struct CountingTap(AtomicU64);
    impl Tap for CountingTap {
        fn publish(&self, _: &Bytes, _: &Bytes) -> usize {
            self.0.fetch_add(1, Ordering::Relaxed);
            2
        }
    }

    #[test]
    fn taps_see_every_publish() {
        let b = Broker::new();
        let tap = Arc::new(CountingTap(AtomicU64::new(0)));
        b.add_tap(tap.clone());
        assert_eq!(b.publish(Bytes::from_static(b"x"), Bytes::new()), 2);
        assert_eq!(b.spublish(Bytes::from_static(b"x"), Bytes::new()), 0);
        assert_eq!(tap.0.load(Ordering::Relaxed), 1);
    }
}
