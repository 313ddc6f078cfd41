//! The in-process [`Broker`]: RESP registries with Redis's semantics, and the streams
//! the edges subscribe to with their history, in this process's memory. What a single
//! herald needs; a Redis-backed broker for several nodes implements the same trait
//! beside it.

use super::history::HistoryLimits;
use super::registry::{PatternRegistry, Registry};
use super::streams::Streams;
use super::{
    Broker, BrokerStats, Interest, Namespace, Offset, Publication, StreamSubscriber, Subscriber,
    SubscriberId, ToResp, TooOld, Via,
};
use crate::metrics;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// The in-process broker. Cheap to share: wrap it in an `Arc`.
#[derive(Default)]
pub struct MemoryBroker {
    channels: Registry,
    shard_channels: Registry,
    patterns: PatternRegistry,
    streams: Streams,
    stats: BrokerStats,
}

impl MemoryBroker {
    /// With the default history limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeping as much history as `limits` allow.
    pub fn with_history(limits: HistoryLimits) -> Self {
        MemoryBroker {
            channels: Registry::default(),
            shard_channels: Registry::default(),
            patterns: PatternRegistry::default(),
            streams: Streams::new(limits),
            stats: BrokerStats::default(),
        }
    }

    /// A stream that has numbered nothing yet stands at `offset` (see `streams.rs`).
    pub fn stand_at(&self, namespace: &Namespace, channel: &[u8], offset: Offset) -> bool {
        self.streams.stand_at(namespace, channel, offset)
    }

    /// A stream that just gained its first subscriber stands at `offset`, or moves on to
    /// it (see `streams.rs`).
    pub fn rejoin_at(&self, namespace: &Namespace, channel: &[u8], offset: Offset) -> bool {
        self.streams.rejoin_at(namespace, channel, offset)
    }

    /// [`Broker::stream_subscribe`], saying whether the stream had no subscriber: a channel
    /// a node in a cluster starts to hear (again).
    pub fn stream_join(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) -> bool {
        self.streams.subscribe(namespace, channel, sub)
    }

    /// The RESP subscriptions [`Broker::publish`] would deliver `p` to here, as Redis
    /// counts them (each matching channel, pattern or shard channel subscription), without
    /// delivering it. A node in a cluster answers `PUBLISH` with it.
    pub fn resp_receivers(&self, p: &Publication) -> usize {
        match p.resp {
            ToResp::Shard => self.shard_channels.count(p.name()),
            ToResp::Channel => self.channels.count(p.name()) + self.patterns.count(p.name()),
            ToResp::Hidden => 0,
        }
    }

    /// How much history it keeps.
    pub fn history_limits(&self) -> HistoryLimits {
        *self.streams.history().limits()
    }

    /// A publication's delivery: numbered in its stream, to every receiver.
    fn deliver(&self, mut p: Publication) -> usize {
        self.stats.published.inc();
        let mut n = 0;
        match p.resp {
            ToResp::Shard => {
                // SPUBLISH: shard channels only (no patterns, no streams), as Redis does.
                n = self
                    .shard_channels
                    .deliver(p.name(), &p.payload, Via::Shard);
                self.stats.delivered.add(n as u64);
                metrics::PROTOCOL_DELIVERIES[2].add(n as u64);
                return n;
            }
            ToResp::Channel => {
                n += self.channels.deliver(p.name(), &p.payload, Via::Channel);
                n += self.patterns.deliver(p.name(), &p.payload);
                if n > 0 {
                    metrics::PROTOCOL_DELIVERIES[2].add(n as u64);
                }
            }
            ToResp::Hidden => {}
        }
        n += self.streams.publish(&mut p);
        self.stats.delivered.add(n as u64);
        n
    }
}

impl Broker for MemoryBroker {
    /// Delivered [`crate::outbox::delivering`]: the frames it queues carry when the
    /// first of them was (`herald_delivery_seconds`).
    fn publish(&self, p: Publication) -> usize {
        crate::outbox::delivering(|| self.deliver(p))
    }

    fn stream_subscribe(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) {
        self.streams.subscribe(namespace, channel, sub);
    }

    fn stream_unsubscribe(&self, namespace: &Namespace, channel: &[u8], id: SubscriberId) {
        self.streams.unsubscribe(namespace, channel, id);
    }

    fn stream_psubscribe(
        &self,
        namespace: &Namespace,
        pattern: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) -> bool {
        self.streams.psubscribe(namespace, pattern, sub)
    }

    fn stream_punsubscribe(&self, namespace: &Namespace, pattern: &[u8], id: SubscriberId) -> bool {
        self.streams.punsubscribe(namespace, pattern, id)
    }

    fn since(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        offset: Offset,
    ) -> Result<Vec<Publication>, TooOld> {
        self.streams.since(namespace, channel, offset)
    }

    fn position(&self, namespace: &Namespace, channel: &[u8]) -> Option<Offset> {
        self.streams.position(namespace, channel)
    }

    fn interest(&self) -> Interest {
        let (streams, stream_patterns) = self.streams.interest();
        let sorted = |mut v: Vec<Bytes>| {
            v.sort();
            v
        };
        Interest {
            streams,
            stream_patterns,
            channels: sorted(self.channels.names(None)),
            patterns: sorted(self.patterns.names()),
            shard_channels: sorted(self.shard_channels.names(None)),
        }
    }

    fn sweep(&self, now: Instant) {
        self.streams.sweep(now);
        self.streams.history().report_evictions(now);
    }

    fn subscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        self.channels.add(channel, sub)
    }

    fn unsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool {
        self.channels.remove(channel, id)
    }

    fn psubscribe(&self, pattern: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        self.patterns.add(pattern, sub)
    }

    fn punsubscribe(&self, pattern: &[u8], id: SubscriberId) -> bool {
        self.patterns.remove(pattern, id)
    }

    fn ssubscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        self.shard_channels.add(channel, sub)
    }

    fn sunsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool {
        self.shard_channels.remove(channel, id)
    }

    fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels.names(pattern)
    }

    fn shard_channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.shard_channels.names(pattern)
    }

    fn numsub(&self, channel: &[u8]) -> usize {
        self.channels.count(channel)
    }

    fn shard_numsub(&self, channel: &[u8]) -> usize {
        self.shard_channels.count(channel)
    }

    fn numpat(&self) -> usize {
        self.patterns.len()
    }

    fn sizes(&self) -> (usize, usize, usize) {
        (
            self.channels.len(),
            self.patterns.len(),
            self.shard_channels.len(),
        )
    }

    fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.streams.history().metrics().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{next_subscriber_id, Epoch, Origin};
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;

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

    /// A stream subscriber that keeps what it is given, reaching one connection each time.
    struct Edge {
        id: SubscriberId,
        got: Mutex<Vec<Publication>>,
    }

    impl Edge {
        fn new() -> Arc<Self> {
            Arc::new(Edge {
                id: next_subscriber_id(),
                got: Mutex::new(Vec::new()),
            })
        }

        fn offsets(&self) -> Vec<Offset> {
            self.got.lock().iter().map(|p| p.offset.unwrap()).collect()
        }
    }

    impl StreamSubscriber for Edge {
        fn id(&self) -> SubscriberId {
            self.id
        }
        fn deliver(&self, p: &Publication) -> usize {
            self.got.lock().push(p.clone());
            1
        }
    }

    fn resp(channel: &'static str, payload: &'static str) -> Publication {
        let c = Bytes::from_static(channel.as_bytes());
        Publication::new(
            Namespace::Default,
            c,
            Bytes::from_static(payload.as_bytes()),
        )
        .seen_by_resp()
    }

    fn on(namespace: &Namespace, channel: &'static str) -> Publication {
        Publication::new(
            namespace.clone(),
            Bytes::from_static(channel.as_bytes()),
            Bytes::new(),
        )
    }

    fn app(id: &str) -> Namespace {
        Namespace::App(id.into())
    }

    #[test]
    fn a_stream_that_numbered_nothing_stands_where_it_is_told_and_numbers_on_from_there() {
        let b = MemoryBroker::new();
        let e = Edge::new();
        let ns = Namespace::Default;
        let there = Offset {
            epoch: Epoch(0xc1),
            seq: 5,
        };
        assert!(!b.stand_at(&ns, b"a", there), "no stream");
        b.stream_subscribe(&ns, b"a", e.clone());
        assert!(b.stand_at(&ns, b"a", there));
        assert_eq!(b.position(&ns, b"a"), Some(there));
        assert_eq!(b.since(&ns, b"a", there), Ok(vec![]));
        let mut p = on(&ns, "a");
        p.offset = Some(Offset { seq: 6, ..there });
        b.publish(p);
        assert_eq!(e.offsets(), [Offset { seq: 6, ..there }]);
        assert!(!b.stand_at(&ns, b"a", there), "it numbered something");
        b.stream_subscribe(&ns, b"b", e.clone());
        b.publish(on(&ns, "b"));
        assert!(!b.stand_at(&ns, b"b", there), "numbered here");
    }

    #[test]
    fn a_stream_stands_once_and_a_join_says_when_it_had_no_subscriber() {
        let b = MemoryBroker::new();
        let (e, f) = (Edge::new(), Edge::new());
        let ns = Namespace::Default;
        let at = |seq| Offset {
            epoch: Epoch(0xc1),
            seq,
        };
        assert!(b.stream_join(&ns, b"a", e.clone()), "a new stream");
        assert!(!b.stream_join(&ns, b"a", f.clone()), "it had a subscriber");
        assert!(b.stand_at(&ns, b"a", at(5)));
        assert!(!b.stand_at(&ns, b"a", at(4)), "never back");
        assert!(
            !b.stand_at(&ns, b"a", at(7)),
            "nor on: its clients are owed 6, 7"
        );
        assert_eq!(b.position(&ns, b"a"), Some(at(5)));
        b.stream_unsubscribe(&ns, b"a", e.id);
        b.stream_unsubscribe(&ns, b"a", f.id);
        assert!(
            b.stream_join(&ns, b"a", e.clone()),
            "lingering, joined again"
        );
        let mut p = on(&ns, "a");
        p.offset = Some(at(8));
        b.publish(p);
        b.stream_unsubscribe(&ns, b"a", e.id);
        assert!(
            b.stream_join(&ns, b"a", e.clone()),
            "lingering with a publication"
        );
        assert!(
            !b.stand_at(&ns, b"a", at(12)),
            "it numbered: it does not stand"
        );
        assert!(!b.rejoin_at(&ns, b"a", at(7)), "a rejoin never goes back");
        assert!(b.rejoin_at(&ns, b"a", at(12)), "a rejoin moves on");
        assert_eq!(b.position(&ns, b"a"), Some(at(12)));
        assert_eq!(
            b.since(&ns, b"a", at(8)),
            Err(TooOld),
            "what it held is forgotten"
        );
        let other = Offset {
            epoch: Epoch(0xc2),
            seq: 3,
        };
        assert!(b.rejoin_at(&ns, b"a", other), "another epoch");
        assert_eq!(b.position(&ns, b"a"), Some(other));
    }

    #[test]
    fn resp_receivers_are_counted_as_publish_delivers() {
        let b = MemoryBroker::new();
        let (r, s) = (Recorder::new(), Recorder::new());
        b.subscribe(Bytes::from_static(b"news"), r.clone());
        b.subscribe(Bytes::from_static(b"news"), s.clone());
        b.psubscribe(Bytes::from_static(b"n*"), r.clone());
        b.psubscribe(Bytes::from_static(b"x*"), r.clone());
        b.ssubscribe(Bytes::from_static(b"news"), r.clone());
        let p = resp("news", "hi");
        assert_eq!(b.resp_receivers(&p), 3);
        assert_eq!(b.publish(p), 3);
        let shard = Publication::shard(Bytes::from_static(b"news"), Bytes::new());
        assert_eq!(b.resp_receivers(&shard), 1);
        assert_eq!(
            b.resp_receivers(&on(&Namespace::Default, "news")),
            0,
            "hidden"
        );
    }

    #[test]
    fn a_publication_moves_without_a_memcpy_call() {
        assert!(std::mem::size_of::<Publication>() <= 128);
    }

    #[test]
    fn counts_each_matching_subscription() {
        let b = MemoryBroker::new();
        let r = Recorder::new();
        assert!(b.subscribe(Bytes::from_static(b"news"), r.clone()));
        assert!(!b.subscribe(Bytes::from_static(b"news"), r.clone()));
        assert!(b.psubscribe(Bytes::from_static(b"n*"), r.clone()));
        assert!(b.psubscribe(Bytes::from_static(b"*s"), r.clone()));
        assert_eq!(b.publish(resp("news", "hi")), 3);
        assert_eq!(b.publish(resp("other", "x")), 0);
        assert_eq!(r.got.lock().len(), 3);
        assert_eq!(b.numpat(), 2);
        assert_eq!(b.numsub(b"news"), 1);
    }

    #[test]
    fn payload_is_shared_not_copied() {
        let b = MemoryBroker::new();
        let (r1, r2) = (Recorder::new(), Recorder::new());
        let e = Edge::new();
        b.subscribe(Bytes::from_static(b"c"), r1.clone());
        b.subscribe(Bytes::from_static(b"c"), r2.clone());
        b.stream_subscribe(&Namespace::Default, b"c", e.clone());
        let payload = Bytes::from(vec![7u8; 1024]);
        let c = Bytes::from_static(b"c");
        let p = Publication::new(Namespace::Default, c, payload.clone()).seen_by_resp();
        assert_eq!(b.publish(p), 3);
        assert_eq!(r1.got.lock()[0].2.as_ptr(), payload.as_ptr());
        assert_eq!(r2.got.lock()[0].2.as_ptr(), payload.as_ptr());
        assert_eq!(e.got.lock()[0].payload.as_ptr(), payload.as_ptr());
    }

    #[test]
    fn unsubscribe_forgets_empty_channels() {
        let b = MemoryBroker::new();
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
        let b = MemoryBroker::new();
        let r = Recorder::new();
        let e = Edge::new();
        b.ssubscribe(Bytes::from_static(b"s"), r.clone());
        b.psubscribe(Bytes::from_static(b"*"), r.clone());
        b.stream_subscribe(&Namespace::Default, b"s", e.clone());
        let p = Publication::shard(Bytes::from_static(b"s"), Bytes::new());
        assert_eq!(b.publish(p), 1);
        assert_eq!(b.shard_numsub(b"s"), 1);
        assert_eq!(b.numsub(b"s"), 0);
        assert!(e.got.lock().is_empty(), "no stream sees SPUBLISH");
        assert_eq!(b.stats().published.get(), 1);
    }

    #[test]
    fn resp_sees_the_name_published_and_streams_the_channel_in_its_namespace() {
        let b = MemoryBroker::new();
        let (raw, stripped) = (Recorder::new(), Recorder::new());
        b.subscribe(
            Bytes::from_static(b"laravel_database_orders.1"),
            raw.clone(),
        );
        b.subscribe(Bytes::from_static(b"orders.1"), stripped.clone());
        let (default, other) = (Edge::new(), Edge::new());
        b.stream_subscribe(&Namespace::Default, b"orders.1", default.clone());
        b.stream_subscribe(&app("2"), b"orders.1", other.clone());
        let prefixed = Bytes::from_static(b"laravel_database_orders.1");
        let p = Publication::published_as(prefixed, 17, Bytes::from_static(b"{}"));
        assert_eq!(p.channel(), b"orders.1");
        assert_eq!(b.publish(p), 2);
        assert_eq!(raw.got.lock().len(), 1);
        assert!(stripped.got.lock().is_empty());
        assert_eq!(default.got.lock().len(), 1);
        assert!(other.got.lock().is_empty(), "another app's stream");
        // Hidden from RESP: a client event, another app's event.
        assert_eq!(
            b.publish(on(&Namespace::Default, "orders.1").from_client()),
            1
        );
        assert_eq!(b.publish(on(&app("2"), "orders.1")), 1);
        assert_eq!(raw.got.lock().len() + stripped.got.lock().len(), 1);
        assert_eq!(default.got.lock()[1].origin, Origin::Client);
        assert_eq!(other.got.lock().len(), 1);
        assert_eq!(b.stats().published.get(), 3);
        assert_eq!(b.stats().delivered.get(), 4);
    }

    #[test]
    fn offsets_increase_by_one_per_stream_from_the_streams_own_epoch() {
        let b = MemoryBroker::new();
        let e = Edge::new();
        b.stream_subscribe(&Namespace::Default, b"a", e.clone());
        b.stream_subscribe(&Namespace::Default, b"b", e.clone());
        b.stream_subscribe(&app("2"), b"a", e.clone());
        for ch in ["a", "b", "a", "a", "b"] {
            b.publish(on(&Namespace::Default, ch));
        }
        b.publish(on(&app("2"), "a"));
        let got = e.got.lock();
        let of = |ns: &Namespace, ch: &str| -> Vec<Offset> {
            got.iter()
                .filter(|p| p.namespace == *ns && p.channel() == ch.as_bytes())
                .map(|p| p.offset.unwrap())
                .collect()
        };
        let (a, bb, a2) = (
            of(&Namespace::Default, "a"),
            of(&Namespace::Default, "b"),
            of(&app("2"), "a"),
        );
        assert_eq!(a.iter().map(|o| o.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(bb.iter().map(|o| o.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(a2.iter().map(|o| o.seq).collect::<Vec<_>>(), [1]);
        assert!(a.iter().all(|o| o.epoch == a[0].epoch));
        assert_ne!(a[0].epoch, bb[0].epoch, "each stream has its own epoch");
        assert_ne!(a[0].epoch, a2[0].epoch);
        assert_eq!(b.position(&Namespace::Default, b"a"), Some(a[2]));
        // A publication to a channel with no stream is not numbered.
        let r = Recorder::new();
        b.subscribe(Bytes::from_static(b"c"), r.clone());
        assert_eq!(b.publish(resp("c", "")), 1);
        assert_eq!(b.position(&Namespace::Default, b"c"), None);
    }

    #[test]
    fn one_stream_is_delivered_in_offset_order_under_concurrent_publishers() {
        const EACH: u64 = 20_000;
        let b = Arc::new(MemoryBroker::new());
        let (e1, e2) = (Edge::new(), Edge::new());
        b.stream_subscribe(&Namespace::Default, b"hot", e1.clone());
        b.stream_subscribe(&Namespace::Default, b"hot", e2.clone());
        let publishers: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|who| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let payload = Bytes::from(format!("{who}{i}"));
                        let p = Publication::new(
                            Namespace::Default,
                            Bytes::from_static(b"hot"),
                            payload,
                        );
                        b.publish(p);
                    }
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        for e in [&e1, &e2] {
            let seqs: Vec<u64> = e.offsets().iter().map(|o| o.seq).collect();
            assert_eq!(
                seqs,
                (1..=2 * EACH).collect::<Vec<_>>(),
                "offset order, none lost"
            );
        }
        // Both subscribers saw the one order, and each publisher's own order is kept.
        let order =
            |e: &Edge| -> Vec<Bytes> { e.got.lock().iter().map(|p| p.payload.clone()).collect() };
        assert_eq!(order(&e1), order(&e2));
        for who in ["x", "y"] {
            let mine: Vec<u64> = order(&e1)
                .iter()
                .filter_map(|p| {
                    std::str::from_utf8(p)
                        .unwrap()
                        .strip_prefix(who)?
                        .parse()
                        .ok()
                })
                .collect();
            assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
        }
    }

    #[test]
    fn interest_follows_the_first_subscribe_and_the_last_unsubscribe() {
        let b = MemoryBroker::new();
        let (e, r) = (Edge::new(), Recorder::new());
        let ns = Namespace::Default;
        assert_eq!(b.interest(), Interest::default());
        b.stream_subscribe(&ns, b"a", e.clone());
        b.stream_subscribe(&ns, b"a", e.clone()); // a second client of the edge
        b.stream_subscribe(&app("2"), b"a", e.clone());
        assert!(b.stream_psubscribe(&app("2"), b"cache-*", e.clone()));
        assert!(
            !b.stream_psubscribe(&app("2"), b"cache-*", e.clone()),
            "held already"
        );
        b.subscribe(Bytes::from_static(b"r"), r.clone());
        b.psubscribe(Bytes::from_static(b"r*"), r.clone());
        b.ssubscribe(Bytes::from_static(b"s"), r.clone());
        let a = Bytes::from_static(b"a");
        assert_eq!(
            b.interest(),
            Interest {
                streams: vec![(ns.clone(), a.clone()), (app("2"), a.clone())],
                stream_patterns: vec![(app("2"), Bytes::from_static(b"cache-*"))],
                channels: vec![Bytes::from_static(b"r")],
                patterns: vec![Bytes::from_static(b"r*")],
                shard_channels: vec![Bytes::from_static(b"s")],
            }
        );
        b.stream_unsubscribe(&ns, b"a", e.id);
        assert_eq!(
            b.interest().streams.len(),
            2,
            "one client of the edge is left"
        );
        b.stream_unsubscribe(&ns, b"a", e.id);
        b.stream_unsubscribe(&app("2"), b"a", e.id);
        assert!(b.stream_punsubscribe(&app("2"), b"cache-*", e.id));
        assert!(!b.stream_punsubscribe(&app("2"), b"cache-*", e.id));
        let left = b.interest();
        assert!(left.streams.is_empty() && left.stream_patterns.is_empty());
    }

    #[test]
    fn an_unsubscribe_that_overtakes_its_subscribe_cancels_it() {
        let b = MemoryBroker::new();
        let e = Edge::new();
        let ns = Namespace::Default;
        // Client 1 left (its edge's unsubscribe arrives first), client 2 joined meanwhile.
        b.stream_unsubscribe(&ns, b"a", e.id);
        assert!(b.interest().streams.is_empty());
        assert_eq!(
            b.publish(on(&ns, "a")),
            0,
            "a negative count receives nothing"
        );
        b.stream_subscribe(&ns, b"a", e.clone()); // client 1's late subscribe: back to zero
        assert!(b.interest().streams.is_empty());
        b.sweep(Instant::now() + HistoryLimits::default().ttl);
        assert_eq!(b.position(&ns, b"a"), None, "gone at zero, once swept");
        b.stream_subscribe(&ns, b"a", e.clone()); // client 2's
        assert_eq!(b.publish(on(&ns, "a")), 1);
        assert_eq!(b.interest().streams.len(), 1);
    }

    #[test]
    fn subscribes_and_unsubscribes_racing_on_two_threads_leave_the_right_interest() {
        const ROUNDS: usize = 20_000;
        let b = Arc::new(MemoryBroker::new());
        let e = Edge::new();
        // Thread A makes clients join and thread B makes them leave, each in its own
        // order, as two edge tasks can: B's first half overtakes every join (A waits
        // for it), the rest races A.
        let halfway = Arc::new(std::sync::Barrier::new(2));
        let joins = {
            let (b, e, halfway) = (b.clone(), e.clone(), halfway.clone());
            std::thread::spawn(move || {
                halfway.wait();
                for _ in 0..ROUNDS {
                    b.stream_subscribe(&Namespace::Default, b"a", e.clone());
                }
            })
        };
        let leaves = {
            let (b, id) = (b.clone(), e.id);
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    if i == ROUNDS / 2 {
                        halfway.wait();
                    }
                    b.stream_unsubscribe(&Namespace::Default, b"a", id);
                }
            })
        };
        joins.join().unwrap();
        leaves.join().unwrap();
        assert_eq!(b.interest(), Interest::default());
        b.stream_subscribe(&Namespace::Default, b"a", e.clone());
        assert_eq!(b.interest().streams.len(), 1);
    }

    #[test]
    fn patterns_are_matched_whatever_the_filter_before_them_skips() {
        let b = MemoryBroker::new();
        let (cache, news, all) = (Edge::new(), Edge::new(), Edge::new());
        let ns = Namespace::Default;
        b.stream_psubscribe(&ns, b"cache-*", cache.clone());
        b.stream_psubscribe(&ns, b"n[e]ws", news.clone());
        assert_eq!(b.publish(on(&ns, "orders")), 0);
        assert_eq!(b.publish(on(&ns, "news")), 1);
        assert_eq!(
            b.publish(on(&ns, "nows")),
            0,
            "the prefix passes, the glob does not"
        );
        b.stream_psubscribe(&ns, b"*", all.clone());
        assert_eq!(
            b.publish(on(&ns, "orders")),
            1,
            "a pattern with no literal prefix"
        );
        assert_eq!(b.publish(on(&ns, "cache-x")), 2);
        b.stream_punsubscribe(&ns, b"cache-*", cache.id);
        assert_eq!(b.publish(on(&ns, "cache-y")), 1);
        assert_eq!(cache.got.lock().len(), 1);
        assert_eq!(news.got.lock().len(), 1);
        assert_eq!(all.got.lock().len(), 3);
    }

    #[test]
    fn a_pattern_and_a_stream_deliver_once_to_the_same_subscriber() {
        let b = MemoryBroker::new();
        let (both, only_pattern, other_app) = (Edge::new(), Edge::new(), Edge::new());
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"cache-x", both.clone());
        b.stream_psubscribe(&ns, b"cache-*", both.clone());
        b.stream_psubscribe(&ns, b"cache-*", only_pattern.clone());
        b.stream_psubscribe(&app("2"), b"cache-*", other_app.clone());
        assert_eq!(b.publish(on(&ns, "cache-x")), 2);
        assert_eq!(b.publish(on(&ns, "cache-y")), 2, "no stream: patterns only");
        assert_eq!(b.publish(on(&ns, "news")), 0);
        assert_eq!(both.got.lock().len(), 2);
        assert_eq!(only_pattern.got.lock().len(), 2);
        assert!(other_app.got.lock().is_empty());
        assert!(
            only_pattern.got.lock()[0].offset.is_some(),
            "numbered in cache-x's stream"
        );
        assert!(
            only_pattern.got.lock()[1].offset.is_none(),
            "cache-y has no stream"
        );
    }

    const TTL: Duration = Duration::from_secs(60);

    /// A broker keeping `size` publications per channel for [`TTL`].
    fn keeping(size: usize) -> MemoryBroker {
        MemoryBroker::with_history(HistoryLimits {
            size,
            ttl: TTL,
            ..HistoryLimits::default()
        })
    }

    /// Publication `n` on `channel` of the default namespace: its payload names it.
    fn numbered(channel: &'static str, n: u64) -> Publication {
        Publication::new(
            Namespace::Default,
            Bytes::from_static(channel.as_bytes()),
            Bytes::from(format!("p{n}")),
        )
    }

    /// Let the clock move on, so that the next `Instant::now()` anywhere is strictly later
    /// than every one read before (the subject of these tests is time; nothing is waited for).
    fn clock_moves_on() {
        std::thread::sleep(Duration::from_millis(1));
    }

    fn metric(b: &MemoryBroker, name: &str) -> u64 {
        b.metrics().into_iter().find(|row| row.0 == name).unwrap().2
    }

    #[test]
    fn since_gives_exactly_what_was_missed_after_the_last_subscriber_left() {
        let b = keeping(100);
        let e = Edge::new();
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"a", e.clone());
        for n in 1..=2 {
            assert_eq!(b.publish(numbered("a", n)), 1);
        }
        let seen = e.offsets()[1];
        // The channel's only client blips: its edge unsubscribes, the app publishes on.
        b.stream_unsubscribe(&ns, b"a", e.id);
        assert!(
            b.interest().streams.is_empty(),
            "a lingering stream is no interest"
        );
        let seen_by_resp = Publication::published_as(
            Bytes::from_static(b"laravel_database_a"),
            "laravel_database_".len(),
            Bytes::from("p3"),
        );
        let published = [
            seen_by_resp,
            numbered("a", 4).from_client(),
            numbered("a", 5),
        ];
        for p in &published {
            assert_eq!(b.publish(p.clone()), 0, "delivered to nobody");
        }
        let missed = b.since(&ns, b"a", seen).unwrap();
        // Replays go to the edges only: what RESP saw the first one under is not kept.
        let replayed = [
            numbered("a", 3),
            numbered("a", 4).from_client(),
            numbered("a", 5),
        ];
        let want: Vec<Publication> = replayed
            .into_iter()
            .zip(3..)
            .map(|(mut p, seq)| {
                p.offset = Some(Offset { seq, ..seen });
                p
            })
            .collect();
        assert_eq!(
            missed, want,
            "the three, whole, in order, with their offsets"
        );
        assert_ne!(
            missed[0].payload.as_ptr(),
            published[0].payload.as_ptr(),
            "kept as a copy, not as a slice of the ingress's buffer"
        );

        let last = b.position(&ns, b"a").unwrap();
        assert_eq!(
            last,
            Offset { seq: 5, ..seen },
            "numbered in the same epoch"
        );
        assert_eq!(b.since(&ns, b"a", last), Ok(vec![]), "nothing missed");
        let from = |seq| b.since(&ns, b"a", Offset { seq, ..seen });
        assert_eq!(from(0).map(|v| v.len()), Ok(5));
        assert_eq!(from(6), Err(TooOld), "ahead of the stream");
        let elsewhere = Offset {
            epoch: Epoch::fresh(),
            seq: 2,
        };
        assert_eq!(b.since(&ns, b"a", elsewhere), Err(TooOld), "another epoch");
        assert_eq!(
            b.since(&app("2"), b"a", seen),
            Err(TooOld),
            "no such stream"
        );
        assert_eq!(metric(&b, "herald_history_channels"), 1);
    }

    #[test]
    fn history_size_bounds_the_gap_that_can_be_filled() {
        let b = keeping(3);
        let e = Edge::new();
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"a", e.clone());
        for n in 1..=5 {
            b.publish(numbered("a", n));
        }
        let at = |seq| Offset {
            seq,
            ..e.offsets()[0]
        };
        let seqs = |seq| -> Result<Vec<u64>, TooOld> {
            let missed = b.since(&ns, b"a", at(seq))?;
            Ok(missed.iter().map(|p| p.offset.unwrap().seq).collect())
        };
        assert_eq!(seqs(3), Ok(vec![4, 5]));
        assert_eq!(seqs(2), Ok(vec![3, 4, 5]));
        assert_eq!(seqs(1), Err(TooOld), "2 fell off: never a partial answer");

        let off = keeping(0);
        off.stream_subscribe(&ns, b"a", e.clone());
        off.publish(numbered("a", 1));
        let last = off.position(&ns, b"a").unwrap();
        assert_eq!(last.seq, 1, "numbered all the same");
        assert_eq!(off.since(&ns, b"a", last), Ok(vec![]));
        assert_eq!(off.since(&ns, b"a", Offset { seq: 0, ..last }), Err(TooOld));
        assert_eq!(metric(&off, "herald_history_bytes"), 0);
    }

    #[test]
    fn a_stream_resubscribed_within_the_linger_keeps_its_epoch() {
        // Even with nothing kept: a client that saw the last publication missed nothing.
        let b = keeping(0);
        let e = Edge::new();
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"a", e.clone());
        b.publish(numbered("a", 1));
        let first = e.offsets()[0];
        b.stream_unsubscribe(&ns, b"a", e.id);
        b.sweep(Instant::now());
        assert_eq!(b.since(&ns, b"a", first), Ok(vec![]), "the stream lingers");
        b.stream_subscribe(&ns, b"a", e.clone());
        b.publish(numbered("a", 2));
        assert_eq!(e.offsets()[1], Offset { seq: 2, ..first });
    }

    #[test]
    fn a_stream_dropped_and_created_again_has_a_new_epoch() {
        let b = keeping(100);
        let e = Edge::new();
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"a", e.clone());
        b.publish(numbered("a", 1));
        let first = e.offsets()[0];
        b.stream_unsubscribe(&ns, b"a", e.id);
        let left = Instant::now();
        b.sweep(left + TTL);
        assert_eq!(b.position(&ns, b"a"), None, "swept after the linger");
        assert_eq!(b.since(&ns, b"a", first), Err(TooOld));
        assert_eq!(b.publish(numbered("a", 2)), 0);
        assert_eq!(b.position(&ns, b"a"), None, "not created by a publication");
        b.stream_subscribe(&ns, b"a", e.clone());
        b.publish(numbered("a", 3));
        let again = e.offsets()[1];
        assert_ne!(again.epoch, first.epoch);
        assert_eq!(again.seq, 1);
        assert_ne!(Epoch::fresh(), again.epoch);
        assert_eq!(b.since(&ns, b"a", first), Err(TooOld), "the old epoch");
        assert_eq!(
            b.since(&ns, b"a", Offset { seq: 0, ..again })
                .map(|v| v.len()),
            Ok(1)
        );
    }

    #[test]
    fn the_linger_lasts_a_ttl_after_the_last_subscriber_and_the_last_publication() {
        let b = keeping(100);
        let e = Edge::new();
        let ns = Namespace::Default;

        // Published before the last subscriber left: the stream goes a TTL after it left.
        b.stream_subscribe(&ns, b"a", e.clone());
        b.publish(numbered("a", 1));
        let published = Instant::now();
        clock_moves_on();
        b.stream_unsubscribe(&ns, b"a", e.id);
        let left = Instant::now();
        b.sweep(published + TTL);
        let a = b.position(&ns, b"a");
        assert!(a.is_some(), "nothing held, but nobody for less than a TTL");
        let a = a.unwrap();
        assert_eq!(
            b.since(&ns, b"a", Offset { seq: 0, ..a }),
            Err(TooOld),
            "1 expired"
        );
        b.sweep(left + TTL);
        assert_eq!(b.position(&ns, b"a"), None);

        // Published after the last subscriber left: it goes a TTL after that publication.
        b.stream_subscribe(&ns, b"b", e.clone());
        b.stream_unsubscribe(&ns, b"b", e.id);
        let left = Instant::now();
        clock_moves_on();
        b.publish(numbered("b", 1));
        let published = Instant::now();
        b.sweep(left + TTL);
        let at = b.position(&ns, b"b").expect("lingers: its ring holds 1");
        assert_eq!(
            b.since(&ns, b"b", Offset { seq: 0, ..at }).map(|v| v.len()),
            Ok(1)
        );
        b.sweep(published + TTL);
        assert_eq!(b.position(&ns, b"b"), None);
        assert_eq!(
            (
                metric(&b, "herald_history_channels"),
                metric(&b, "herald_history_bytes")
            ),
            (0, 0)
        );
    }

    #[test]
    fn the_sweep_frees_expired_history_of_a_stream_with_subscribers() {
        let b = keeping(100);
        let e = Edge::new();
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"a", e.clone());
        b.publish(numbered("a", 1));
        b.publish(numbered("a", 2));
        let published = Instant::now();
        assert_eq!(metric(&b, "herald_history_channels"), 1);
        assert!(metric(&b, "herald_history_bytes") > 0);
        b.sweep(published + TTL);
        assert_eq!(
            (
                metric(&b, "herald_history_channels"),
                metric(&b, "herald_history_bytes")
            ),
            (0, 0)
        );
        let at = b
            .position(&ns, b"a")
            .expect("a stream with a subscriber stays");
        assert_eq!(at.seq, 2);
        assert_eq!(b.since(&ns, b"a", Offset { seq: 1, ..at }), Err(TooOld));
        assert_eq!(b.since(&ns, b"a", at), Ok(vec![]));
        assert_eq!(b.publish(numbered("a", 3)), 1);
        assert_eq!(e.offsets()[2], Offset { seq: 3, ..at });
    }

    #[test]
    fn a_channel_never_subscribed_gets_no_stream() {
        let b = keeping(100);
        let (e, r) = (Edge::new(), Recorder::new());
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"a", e.clone()); // another channel: the map is not empty
        b.subscribe(Bytes::from_static(b"never"), r.clone());
        assert_eq!(b.publish(resp("never", "x")), 1, "RESP hears it");
        assert_eq!(b.publish(on(&ns, "never")), 0);
        assert_eq!(b.publish(on(&app("2"), "a")), 0, "another namespace's a");
        assert_eq!(b.position(&ns, b"never"), None);
        assert_eq!(b.position(&app("2"), b"a"), None);
        let any = Offset {
            epoch: Epoch(1),
            seq: 0,
        };
        assert_eq!(b.since(&ns, b"never", any), Err(TooOld));
        assert_eq!(
            b.interest().streams,
            vec![(ns.clone(), Bytes::from_static(b"a"))]
        );
        assert_eq!(metric(&b, "herald_history_channels"), 0, "nothing kept");
    }
}
