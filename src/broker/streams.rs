//! Streams: one per channel of a namespace that some edge has clients on (or had, lately),
//! each numbering its publications and keeping the latest of them for recovery; and the
//! stream patterns edges hold whatever their clients.
//!
//! Streams live in a [`Sharded`] map by channel name (one entry holds that name's stream
//! in each namespace that uses it, usually one), so a publication finds its stream with
//! one hash of a name it already has. A publication takes its shard's write lock, takes
//! the stream's next sequence number, appends itself to the stream's history ring and
//! hands itself to the stream's subscribers and to the matching pattern holders, all
//! before releasing it: that lock is what puts one channel's deliveries, and its history,
//! in offset order for every subscriber.
//!
//! Each subscriber's entry counts its subscriptions (an edge subscribes once per client
//! that joins). The count may dip below zero when an unsubscribe overtakes the subscribe
//! it undoes (two threads, each past its edge's own lock); only a positive count
//! receives, and the entry goes when the count is back to zero.
//!
//! # Lingering: a stream outlives its last subscriber for recovery
//! A client whose connection blips may be its channel's only subscriber on this node, and
//! what is published while it is away is exactly what it will ask for. So a stream whose
//! last subscriber left stays, numbering and keeping its publications (delivering them to
//! nobody): it lingers while its ring holds anything (up to the history TTL after its last
//! publication) and at least the history TTL after its last subscriber left. A client
//! back within that keeps its stream's epoch, and `since` gives it what it missed. The
//! sweep ([`Streams::sweep`], every few seconds) drops a lingering stream once both have
//! passed; a stream created again after that starts a new epoch, so an offset of the old
//! one is answered [`TooOld`].
//!
//! A channel no edge has subscribed to on this node has no stream: its publications are
//! not numbered and cost what they did before history existed (one look at an empty map,
//! or one shard lookup).
//!
//! Patterns change at start-up only, so they are a read-mostly list that publications
//! read without a lock, and only when [`Starts`] says the channel may match one.

use super::history::{History, HistoryLimits, Ring, Weigh};
use super::offset::{Epoch, Offset};
use super::registry::Keyed;
use super::starts::Starts;
use super::{
    glob, InNamespace, Namespace, Origin, Publication, StreamSubscriber, SubscriberId, TooOld,
};
use crate::readmostly::ReadMostly;
use crate::sharded::Sharded;
use arc_swap::Guard;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const SHARDS: usize = 32;

struct Counted {
    sub: Arc<dyn StreamSubscriber>,
    count: i64,
}

/// A retained publication: what [`Streams::since`] needs to rebuild it besides its
/// stream's namespace and channel and the offset its ring gives it.
///
/// Its bytes are copies. An ingress's payload may be a slice of a connection's read
/// buffer (RESP's are), and keeping the slice for the TTL would keep the whole buffer,
/// many times what the history budget counts.
struct Kept {
    payload: Bytes,
    origin: Origin,
}

impl Kept {
    /// What a ring given nothing to keep (`--history-size 0`) is handed: never kept.
    const NOTHING: Kept = Kept {
        payload: Bytes::new(),
        origin: Origin::Server,
    };

    fn of(p: &Publication) -> Kept {
        Kept {
            payload: Bytes::copy_from_slice(&p.payload),
            origin: p.origin,
        }
    }

    /// The publication again, at `offset` of `channel` in `namespace`, for the edges
    /// that replay it (RESP has no replay, so what it saw it under is not kept).
    fn publication(&self, namespace: &Namespace, channel: &Bytes, offset: Offset) -> Publication {
        let mut p = Publication::new(namespace.clone(), channel.clone(), self.payload.clone());
        p.origin = self.origin;
        p.offset = Some(offset);
        p
    }
}

impl Weigh for Kept {
    /// The payload's bytes (the channel's name is the stream's, not repeated per entry).
    fn weight(&self) -> usize {
        self.payload.len()
    }
}

struct Stream {
    namespace: Namespace,
    /// Its epoch, its last sequence number and its latest publications.
    ring: Ring<Kept>,
    subscribers: Keyed<Counted>,
    /// When its last subscriber left, while it has none: it lingers (see the module doc).
    left: Option<Instant>,
    /// Whether its epoch was made on this node (true but in a cluster, where offsets
    /// mostly come from Redis: see [`Stream::number`]).
    minted: bool,
}

impl Stream {
    /// The offset of a publication that comes with `given` (a cluster's, from Redis) or
    /// none (numbered here). None for a copy: `given` is not past the latest. A
    /// publication numbered here after offsets from elsewhere starts an epoch of this
    /// node's, so no offset of the cluster's names a publication it never numbered.
    fn number(&mut self, given: Option<Offset>) -> Option<Offset> {
        let last = self.ring.latest();
        match given {
            Some(o) if o.epoch == last.epoch && o.seq <= last.seq => None,
            Some(o) => {
                self.minted = false;
                Some(o)
            }
            // A single node's every publication (never stood: a stream that stood is not
            // minted until the arm below).
            None if self.minted => Some(Offset {
                seq: last.seq + 1,
                ..last
            }),
            None => {
                self.minted = true;
                Some(Offset {
                    epoch: Epoch::fresh(),
                    seq: 1,
                })
            }
        }
    }

    fn receives(&self, id: SubscriberId) -> bool {
        self.subscribers.get(id).is_some_and(|c| c.count > 0)
    }

    /// Whether the sweep at `now` may drop it: nobody subscribed for a TTL and nothing
    /// left to recover (after dropping what expired).
    fn done(&mut self, now: Instant, ttl: std::time::Duration) -> bool {
        let empty = self.ring.expire(now);
        empty
            && self
                .left
                .is_some_and(|left| now.saturating_duration_since(left) >= ttl)
    }
}

/// A pattern an edge holds in one namespace.
struct StreamPattern {
    namespace: Namespace,
    pattern: Bytes,
    /// The length of its literal prefix ([`glob::literal_prefix`]), compared before
    /// the glob.
    literal: usize,
    sub: Arc<dyn StreamSubscriber>,
}

pub struct Streams {
    map: Sharded<Bytes, Vec<Stream>>,
    patterns: ReadMostly<StreamPattern>,
    /// How many patterns are held.
    held: AtomicUsize,
    /// How the names they match can start: a publication loads the list only when its
    /// channel may match.
    starts: Starts,
    history: Arc<History>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams::new(HistoryLimits::default())
    }
}

impl Streams {
    pub fn new(limits: HistoryLimits) -> Self {
        Streams {
            map: Sharded::new(SHARDS),
            patterns: ReadMostly::default(),
            held: AtomicUsize::new(0),
            starts: Starts::default(),
            history: History::new(limits),
        }
    }

    /// The history budgets all streams share.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Count one subscription of `sub` to the stream, creating it if need be. True if
    /// the stream had no subscriber and has numbered nothing yet (new here, or lingering
    /// untouched): in a cluster, a channel this node starts to hear from nothing.
    pub fn subscribe(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) -> bool {
        self.change(namespace, channel, sub.id(), 1, Some(sub))
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
    ) -> bool {
        let now = Instant::now();
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
                    ring: self.history.ring(Epoch::fresh()),
                    subscribers: Keyed::default(),
                    left: None,
                    minted: true,
                });
                streams.len() - 1
            }
        };
        let stream = &mut streams[at];
        // A stream's subscribers are its edges (a few): this walk is short.
        let had = stream.subscribers.values().any(|c| c.count > 0);
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
        // The last subscriber gone: the stream lingers for recovery (the sweep drops it).
        stream.left = stream.subscribers.is_empty().then_some(now);
        !had && stream.subscribers.values().any(|c| c.count > 0)
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
            literal: glob::literal_prefix(pattern).len(),
            sub,
        });
        let before = self.patterns.update(|held| {
            let mut now = held.to_vec();
            if !held.iter().any(|p| p.is(namespace, pattern, id)) {
                now.push(added.clone());
            }
            now
        });
        let added = !before.iter().any(|p| p.is(namespace, pattern, id));
        if added {
            self.starts.add(glob::literal_prefix(pattern));
            self.held.fetch_add(1, Ordering::Release);
        }
        added
    }

    pub fn punsubscribe(&self, namespace: &Namespace, pattern: &[u8], id: SubscriberId) -> bool {
        let before = self.patterns.update(|held| {
            held.iter()
                .filter(|p| !p.is(namespace, pattern, id))
                .cloned()
                .collect()
        });
        let removed = before.iter().any(|p| p.is(namespace, pattern, id));
        if removed {
            self.held.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    /// Number `p` in its stream, if it has one (a cluster's publication comes numbered by
    /// Redis, and a copy of one already here is dropped), keep it in the stream's
    /// history, and deliver it to the stream's subscribers and the matching patterns'
    /// holders, each once. Inlined, so that a publication no stream or pattern can take costs a few
    /// loads.
    #[inline]
    pub fn publish(&self, p: &mut Publication) -> usize {
        let patterns = self.patterns_for(p.channel());
        if self.map.is_empty() && patterns.is_none() {
            return 0;
        }
        self.deliver(p, patterns.as_deref().map_or(&[], |held| held.as_slice()))
    }

    /// The held patterns, unless none can match `channel`.
    #[inline]
    fn patterns_for(&self, channel: &[u8]) -> Option<Guard<Arc<Vec<Arc<StreamPattern>>>>> {
        let may = self.held.load(Ordering::Acquire) > 0 && self.starts.may_match(channel);
        may.then(|| self.patterns.load())
    }

    fn deliver(&self, p: &mut Publication, patterns: &[Arc<StreamPattern>]) -> usize {
        if !self.map.is_empty() {
            let mut shard = self.map.write(p.channel());
            let stream = shard
                .get_mut(p.channel())
                .and_then(|streams| streams.iter_mut().find(|s| s.namespace == p.namespace));
            if let Some(stream) = stream {
                let Some(offset) = stream.number(p.offset) else {
                    return 0;
                };
                p.offset = Some(offset);
                let kept = match self.history.limits().size {
                    0 => Kept::NOTHING,
                    _ => Kept::of(p),
                };
                stream.ring.push(offset, kept, Instant::now());
                let p = &*p;
                let mut n = 0;
                for c in stream.subscribers.values() {
                    if c.count > 0 {
                        n += c.sub.deliver(p);
                    }
                }
                for sp in patterns {
                    if sp.matches(p) && !stream.receives(sp.sub.id()) {
                        n += sp.sub.deliver(p);
                    }
                }
                return n;
            }
        }
        let mut n = 0;
        for sp in patterns {
            if sp.matches(p) {
                n += sp.sub.deliver(p);
            }
        }
        n
    }

    /// The stream, if it has numbered nothing since it was made here, stands at `offset`
    /// (where the cluster's history of its channel stands): what follows `offset` and
    /// does not reach this node then shows as a gap. True if it did. Once it stood it
    /// does not move on its own: a later offset would skip what its clients are owed
    /// (what a first client's join will catch up, or a subscriber connection that is
    /// down will fill).
    pub fn stand_at(&self, namespace: &Namespace, channel: &[u8], offset: Offset) -> bool {
        self.stand(namespace, channel, offset, false)
    }

    /// As [`Streams::stand_at`], and a stream that numbered publications before (it
    /// lingered, unheard, with no subscriber until the one it just gained) restarts at
    /// `offset` if that is further on, forgetting what it held (the cluster's history
    /// holds it): its new subscriber is owed nothing from before it came. True if it
    /// stood or moved.
    pub fn rejoin_at(&self, namespace: &Namespace, channel: &[u8], offset: Offset) -> bool {
        self.stand(namespace, channel, offset, true)
    }

    fn stand(&self, namespace: &Namespace, channel: &[u8], offset: Offset, onward: bool) -> bool {
        let mut shard = self.map.write(channel);
        let stream = shard
            .get_mut(channel)
            .and_then(|streams| streams.iter_mut().find(|s| s.namespace == *namespace));
        match stream {
            Some(s) if s.minted && s.ring.latest().seq == 0 => {
                s.ring.restart_at(offset);
                s.minted = false;
                true
            }
            Some(s) if onward && s.ring.latest().epoch != offset.epoch => {
                s.ring.restart_at(offset);
                s.minted = false;
                true
            }
            Some(s) if onward && s.ring.latest().seq < offset.seq => {
                s.ring.restart_at(offset);
                true
            }
            _ => false,
        }
    }

    pub fn position(&self, namespace: &Namespace, channel: &[u8]) -> Option<Offset> {
        self.map.with(channel, |streams| {
            streams?
                .iter()
                .find(|s| s.namespace == *namespace)
                .map(|s| s.ring.latest())
        })
    }

    /// The stream's publications after `offset`, from its history: all of them or
    /// [`TooOld`], never some.
    pub fn since(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        offset: Offset,
    ) -> Result<Vec<Publication>, TooOld> {
        let now = Instant::now();
        let name = Bytes::copy_from_slice(channel);
        self.map.with(channel, |streams| {
            let stream = streams
                .and_then(|streams| streams.iter().find(|s| s.namespace == *namespace))
                .ok_or(TooOld)?;
            let missed = stream.ring.since(offset, now)?;
            Ok(missed
                .map(|(offset, kept)| kept.publication(namespace, &name, offset))
                .collect())
        })
    }

    /// Drop what expired at `now` from every stream's history, and the lingering streams
    /// that have nothing left to give and no subscriber for a TTL. One shard at a time,
    /// each write-locked for one pass over its streams (each ring's expiry is O(1) when
    /// nothing expired). Returns how many streams it dropped.
    pub fn sweep(&self, now: Instant) -> usize {
        let ttl = self.history.limits().ttl;
        let mut dropped = 0;
        for mut shard in self.map.write_each() {
            shard.retain(|_, streams| {
                let before = streams.len();
                streams.retain_mut(|s| !s.done(now, ttl));
                dropped += before - streams.len();
                !streams.is_empty()
            });
        }
        dropped
    }

    /// Streams with a subscriber, and the patterns held, each sorted. A lingering stream
    /// is not listed: see [`Broker::interest`](super::Broker::interest).
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

    #[inline]
    fn matches(&self, p: &Publication) -> bool {
        let (channel, literal) = (p.channel(), &self.pattern[..self.literal]);
        // The first byte alone turns most channels away, without a call to memcmp.
        literal.first().is_none_or(|b| channel.first() == Some(b))
            && channel.starts_with(literal)
            && self.namespace == p.namespace
            && glob::matches(&self.pattern, channel)
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
