//! Streams: one per channel of a namespace that some edge has clients on, each numbering
//! its publications; and the stream patterns edges hold whatever their clients.
//!
//! Streams live in a [`Sharded`] map by channel name (one entry holds that name's stream
//! in each namespace that uses it, usually one), so a publication finds its stream with
//! one hash of a name it already has. A publication takes its shard's write lock,
//! takes the stream's next sequence number and hands itself to the stream's subscribers
//! and to the matching pattern holders, all before releasing it: that lock is what puts
//! one channel's deliveries in offset order for every subscriber.
//!
//! Each subscriber's entry counts its subscriptions (an edge subscribes once per client
//! that joins). The count may dip below zero when an unsubscribe overtakes the subscribe
//! it undoes (two threads, each past its edge's own lock); only a positive count
//! receives, and the entry goes when the count is back to zero. A stream goes with its
//! last subscriber; one created again starts a new epoch.
//!
//! Patterns change at start-up only, so they are a read-mostly list that publications
//! read without a lock.

use super::offset::{Epoch, Offset};
use super::registry::Keyed;
use super::{glob, InNamespace, Namespace, Publication, StreamSubscriber, SubscriberId, TooOld};
use crate::readmostly::ReadMostly;
use crate::sharded::Sharded;
use bytes::Bytes;
use std::sync::Arc;

const SHARDS: usize = 32;

struct Counted {
    sub: Arc<dyn StreamSubscriber>,
    count: i64,
}

struct Stream {
    namespace: Namespace,
    epoch: Epoch,
    /// The sequence number of the last publication (0 before the first).
    last: u64,
    subscribers: Keyed<Counted>,
}

impl Stream {
    fn position(&self) -> Offset {
        Offset {
            epoch: self.epoch,
            seq: self.last,
        }
    }

    fn receives(&self, id: SubscriberId) -> bool {
        self.subscribers.get(id).is_some_and(|c| c.count > 0)
    }
}

/// A pattern an edge holds in one namespace.
struct StreamPattern {
    namespace: Namespace,
    pattern: Bytes,
    sub: Arc<dyn StreamSubscriber>,
}

pub struct Streams {
    map: Sharded<Bytes, Vec<Stream>>,
    patterns: ReadMostly<StreamPattern>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            map: Sharded::new(SHARDS),
            patterns: ReadMostly::default(),
        }
    }
}

impl Streams {
    /// Count one subscription of `sub` to the stream, creating it if need be.
    pub fn subscribe(&self, namespace: &Namespace, channel: &[u8], sub: Arc<dyn StreamSubscriber>) {
        self.change(namespace, channel, sub.id(), 1, Some(sub));
    }

    pub fn unsubscribe(&self, namespace: &Namespace, channel: &[u8], id: SubscriberId) {
        self.change(namespace, channel, id, -1, None);
    }

    fn change(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        id: SubscriberId,
        by: i64,
        sub: Option<Arc<dyn StreamSubscriber>>,
    ) {
        let mut shard = self.map.write(channel);
        if !shard.contains_key(channel) {
            shard.insert(Bytes::copy_from_slice(channel), Vec::new());
        }
        let streams = shard.get_mut(channel).expect("just made sure");
        let at = match streams.iter().position(|s| s.namespace == *namespace) {
            Some(at) => at,
            None => {
                streams.push(Stream {
                    namespace: namespace.clone(),
                    epoch: Epoch::fresh(),
                    last: 0,
                    subscribers: Keyed::default(),
                });
                streams.len() - 1
            }
        };
        let stream = &mut streams[at];
        match stream.subscribers.get_mut(id) {
            Some(c) => {
                c.count += by;
                if let Some(sub) = sub {
                    c.sub = sub;
                }
                if c.count == 0 {
                    stream.subscribers.remove(id);
                }
            }
            None => {
                // An unsubscribe that overtook its subscribe needs the subscriber it
                // stands for only once that subscribe arrives and brings it.
                let sub = sub.unwrap_or_else(|| Arc::new(Absent(id)));
                stream.subscribers.insert(id, Counted { sub, count: by });
            }
        }
        if stream.subscribers.is_empty() {
            streams.swap_remove(at);
            if streams.is_empty() {
                shard.remove(channel);
            }
        }
    }

    pub fn psubscribe(
        &self,
        namespace: &Namespace,
        pattern: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) -> bool {
        let id = sub.id();
        let added = Arc::new(StreamPattern {
            namespace: namespace.clone(),
            pattern: Bytes::copy_from_slice(pattern),
            sub,
        });
        let before = self.patterns.update(|held| {
            let mut now = held.to_vec();
            if !held.iter().any(|p| p.is(namespace, pattern, id)) {
                now.push(added.clone());
            }
            now
        });
        !before.iter().any(|p| p.is(namespace, pattern, id))
    }

    pub fn punsubscribe(&self, namespace: &Namespace, pattern: &[u8], id: SubscriberId) -> bool {
        let before = self.patterns.update(|held| {
            held.iter()
                .filter(|p| !p.is(namespace, pattern, id))
                .cloned()
                .collect()
        });
        before.iter().any(|p| p.is(namespace, pattern, id))
    }

    /// Number `p` in its stream, if it has one, and deliver it to the stream's
    /// subscribers and the matching patterns' holders, each once.
    pub fn publish(&self, p: &mut Publication) -> usize {
        let patterns = self.patterns.load();
        if !self.map.is_empty() {
            let mut shard = self.map.write(p.channel());
            let stream = shard
                .get_mut(p.channel())
                .and_then(|streams| streams.iter_mut().find(|s| s.namespace == p.namespace));
            if let Some(stream) = stream {
                stream.last += 1;
                p.offset = Some(stream.position());
                // History hook: history.rs appends a clone of `p` to this stream's ring
                // here, under the lock, so that history is in offset order too.
                let p = &*p;
                let mut n = 0;
                for c in stream.subscribers.values() {
                    if c.count > 0 {
                        n += c.sub.deliver(p);
                    }
                }
                for sp in patterns.iter() {
                    if sp.matches(p) && !stream.receives(sp.sub.id()) {
                        n += sp.sub.deliver(p);
                    }
                }
                return n;
            }
        }
        let mut n = 0;
        for sp in patterns.iter() {
            if sp.matches(p) {
                n += sp.sub.deliver(p);
            }
        }
        n
    }

    pub fn position(&self, namespace: &Namespace, channel: &[u8]) -> Option<Offset> {
        self.map.with(channel, |streams| {
            streams?
                .iter()
                .find(|s| s.namespace == *namespace)
                .map(Stream::position)
        })
    }

    /// History hook: until history.rs is merged the broker keeps no publications, so
    /// the only gap it can vouch for is none at all: `offset` is the stream's last.
    pub fn since(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        offset: Offset,
    ) -> Result<Vec<Publication>, TooOld> {
        match self.position(namespace, channel) {
            Some(now) if now == offset => Ok(Vec::new()),
            _ => Err(TooOld),
        }
    }

    /// Streams with a subscriber, and the patterns held, each sorted.
    pub fn interest(&self) -> (Vec<InNamespace>, Vec<InNamespace>) {
        let mut streams = Vec::new();
        for shard in self.map.shards() {
            for (name, in_namespaces) in shard.iter() {
                for s in in_namespaces {
                    if s.subscribers.values().any(|c| c.count > 0) {
                        streams.push((s.namespace.clone(), name.clone()));
                    }
                }
            }
        }
        streams.sort();
        let mut patterns: Vec<InNamespace> = self
            .patterns
            .load()
            .iter()
            .map(|p| (p.namespace.clone(), p.pattern.clone()))
            .collect();
        patterns.sort();
        patterns.dedup();
        (streams, patterns)
    }
}

impl StreamPattern {
    fn is(&self, namespace: &Namespace, pattern: &[u8], id: SubscriberId) -> bool {
        self.namespace == *namespace && self.pattern == pattern && self.sub.id() == id
    }

    fn matches(&self, p: &Publication) -> bool {
        self.namespace == p.namespace && glob::matches(&self.pattern, p.channel())
    }
}

/// Stands in for a subscriber whose unsubscribe arrived before its subscribe.
struct Absent(SubscriberId);

impl StreamSubscriber for Absent {
    fn id(&self) -> SubscriberId {
        self.0
    }
    fn deliver(&self, _: &Publication) -> usize {
        0
    }
}
