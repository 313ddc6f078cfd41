//! The pub/sub engine: every publication, whichever door it enters by, passes here.
//!
//! The broker knows nothing of Laravel, Pusher or socket.io. An ingress (RESP `PUBLISH`,
//! `SPUBLISH` and Laravel's `EVAL`, the Pusher HTTP API, Pusher client events, socket.io
//! whispers) makes one [`Publication`] and hands it to [`Broker::publish`], which
//! numbers it in its channel's stream and gives it to two kinds of subscribers:
//! - [`Subscriber`]s with Redis's semantics (RESP clients): exact channels, glob
//!   patterns and shard channels matched against the name it was published under,
//!   each matching subscription counted, as Redis counts them;
//! - [`StreamSubscriber`]s (the WebSocket edges, one per edge or Pusher app): a stream
//!   is one channel of one [`Namespace`]; a subscriber gets each publication of its
//!   streams once, with its [`Offset`], in offset order. An edge subscribes to a stream
//!   for each client that joins the channel and unsubscribes for each that leaves; the
//!   broker counts them, so it knows the channels this node has clients on
//!   ([`Broker::interest`]: what a Redis backplane subscribes to). An edge may also
//!   hold a stream pattern for good (each Pusher app its cache channels, whose last
//!   event must be kept even when nobody is subscribed).
//!
//! Each stream keeps its latest publications ([`history`]), so a client that lost its
//! connection can be given everything after the last offset it saw ([`Broker::since`]),
//! or be told that this is no longer possible. A stream outlives its last subscriber
//! for one history TTL (and as long as it still holds publications), numbering and
//! keeping what is published meanwhile: that client may have been the channel's only
//! one (`streams.rs` says exactly when a stream goes). [`Broker::sweep`], run every few
//! seconds by the server, frees what expired.
//!
//! [`MemoryBroker`] is the in-process implementation; [`RedisBroker`] (`--cluster`) sits
//! in front of one to join several herald nodes through Redis, as centrifuge keeps
//! `broker_memory.go` beside `broker_redis.go`.
//!
//! Locks: a stream's publications are numbered, appended to its history and handed to
//! its subscribers under its registry shard's write lock, so one channel's deliveries
//! (and its history) are in offset order. A
//! stream subscriber's `deliver` runs under that lock and takes its own locks inside it
//! (lock order: broker stream shard → edge room/channel shard); an edge therefore
//! never calls the broker while it holds one of its own shard locks. Nothing under a
//! broker lock does I/O, awaits, or calls back into the broker.

pub mod glob;
pub mod history;
mod memory;
pub mod offset;
mod redis;
mod registry;
mod starts;
mod streams;

pub use memory::MemoryBroker;
pub use offset::{Epoch, Offset};
pub use redis::RedisBroker;

use crate::metrics::Counter;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Identifies one subscribing connection (or edge); unique for the life of the process.
pub type SubscriberId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh subscriber (client) id. RESP's `CLIENT ID` reports it.
pub fn next_subscriber_id() -> SubscriberId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whose channels a publication belongs to: one app's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// The Laravel app's: RESP, socket.io and the default Pusher app share it.
    Default,
    /// Another Pusher app's, by its id.
    App(Arc<str>),
}

/// Whether RESP subscribers see a publication, and which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToResp {
    /// Not for RESP: client events, other Pusher apps' events.
    Hidden,
    /// For `SUBSCRIBE` and `PSUBSCRIBE` subscribers of its name as published.
    Channel,
    /// `SPUBLISH`: for `SSUBSCRIBE` subscribers of that shard channel only. Redis keeps
    /// shard channels apart from everything else, so no stream sees it either.
    Shard,
}

/// Who made a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The application (RESP, the Pusher HTTP API).
    Server,
    /// A WebSocket client (Pusher client event, socket.io whisper): relayed to the
    /// channel's other clients, never kept as a channel's last event.
    Client,
}

/// One publication, as every subscriber receives it.
///
/// The payload is opaque to the broker; herald's ingresses all put a Laravel broadcast
/// envelope `{"event","data","socket"}` there, whose `socket` names the connection to
/// leave out (`toOthers()`, a client event's sender).
///
/// The name it was published under is kept whole (what RESP subscribers match); the
/// channel is that name without its Redis key prefix. Small on purpose: a publication
/// is moved into [`Broker::publish`] by value, and up to 128 bytes that move is a few
/// register copies instead of a call to `memcpy` (measured: the difference was most of
/// the cost of publishing to one subscriber).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    pub namespace: Namespace,
    name: Bytes,
    /// Where the channel's name starts in `name`.
    channel_at: u32,
    pub resp: ToResp,
    pub origin: Origin,
    pub payload: Bytes,
    /// Its place in the channel's stream, set by the broker when it numbers it: None
    /// while no stream of that channel exists on this node (no edge has a client on it).
    pub offset: Option<Offset>,
}

impl Publication {
    /// An application's publication on `channel` of `namespace`, not shown to RESP.
    #[inline]
    pub fn new(namespace: Namespace, channel: Bytes, payload: Bytes) -> Self {
        Publication {
            namespace,
            name: channel,
            channel_at: 0,
            resp: ToResp::Hidden,
            origin: Origin::Server,
            payload,
            offset: None,
        }
    }

    /// Published over RESP as `name`, whose first `prefix` bytes are a Redis key prefix:
    /// RESP subscribers see it under `name`, the default namespace's streams under the
    /// rest.
    #[inline]
    pub fn published_as(name: Bytes, prefix: usize, payload: Bytes) -> Self {
        assert!(prefix <= name.len(), "the prefix is part of the name");
        Publication {
            channel_at: prefix as u32,
            resp: ToResp::Channel,
            ..Publication::new(Namespace::Default, name, payload)
        }
    }

    /// `SPUBLISH channel payload`.
    #[inline]
    pub fn shard(channel: Bytes, payload: Bytes) -> Self {
        Publication {
            resp: ToResp::Shard,
            ..Publication::new(Namespace::Default, channel, payload)
        }
    }

    /// Shown to RESP subscribers of its channel's name (and of patterns matching it).
    #[inline]
    pub fn seen_by_resp(mut self) -> Self {
        self.resp = ToResp::Channel;
        self
    }

    /// Made by a WebSocket client.
    #[inline]
    pub fn from_client(mut self) -> Self {
        self.origin = Origin::Client;
        self
    }

    /// The channel's name in its namespace.
    #[inline]
    pub fn channel(&self) -> &[u8] {
        &self.name[self.channel_at as usize..]
    }

    /// The name it was published under, prefix and all.
    #[inline]
    pub fn name(&self) -> &Bytes {
        &self.name
    }
}

/// How a RESP delivery matched its subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via<'a> {
    /// SUBSCRIBE to this exact channel.
    Channel,
    /// PSUBSCRIBE with this pattern.
    Pattern(&'a [u8]),
    /// SSUBSCRIBE to this shard channel.
    Shard,
}

/// A RESP connection's view of the broker: Redis's pub/sub semantics.
pub trait Subscriber: Send + Sync {
    fn id(&self) -> SubscriberId;
    /// Called on the publisher's task: queue and return, never block.
    fn deliver(&self, via: Via<'_>, channel: &Bytes, payload: &Bytes);
}

/// An edge's view of the broker: whole publications of the streams it subscribed to.
pub trait StreamSubscriber: Send + Sync {
    fn id(&self) -> SubscriberId;
    /// Called on the publisher's task, under the stream's lock, once per publication
    /// however many of this subscriber's subscriptions match it: queue and return,
    /// never block, never call the broker. Returns how many connections it reached.
    fn deliver(&self, publication: &Publication) -> usize;
}

/// A stream's name, or a stream pattern: a channel name or glob in a namespace.
pub type InNamespace = (Namespace, Bytes);

/// What this node needs to hear: what a Redis backplane subscribes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Streams some edge has clients on, sorted.
    ///
    /// Not the streams lingering after their last subscriber left. A lingering stream
    /// records what is published for the client that may come back, but this node
    /// needs no backplane subscription for that: in a cluster a channel's history is
    /// written where it is published (the Redis broker's script appends it to the
    /// channel's Redis stream), and a recovering client whose node no longer holds what
    /// it missed reads it from there ([`Cluster::since`]). The memory broker records what
    /// passes through this node, which alone is every publication.
    pub streams: Vec<InNamespace>,
    /// Stream patterns edges hold whatever their clients (the Pusher apps' cache
    /// channels, socket.io's broadcast-to-all), sorted, each once.
    pub stream_patterns: Vec<InNamespace>,
    /// RESP `SUBSCRIBE`d channels, `PSUBSCRIBE`d patterns and `SSUBSCRIBE`d shard
    /// channels (names as RESP sees them), sorted.
    pub channels: Vec<Bytes>,
    pub patterns: Vec<Bytes>,
    pub shard_channels: Vec<Bytes>,
}

/// The broker no longer holds every publication after the offset asked for: it is of
/// another epoch, or history past it was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooOld;

/// Counters that INFO (`total_published`, `total_delivered`) and /metrics
/// (`herald_publications_total`, `herald_deliveries_total`) report: every publication,
/// whatever its ingress, and the receivers it reached (RESP subscriptions and
/// WebSocket connections).
#[derive(Default)]
pub struct BrokerStats {
    pub published: Counter,
    pub delivered: Counter,
}

/// Answers, on this node, the questions any node asks the cluster ([`Cluster::ask`]).
pub trait Answerer: Send + Sync {
    /// The answer to `question`, from this node's own clients: quick, never waiting.
    fn answer(&self, question: &[u8]) -> Bytes;
}

/// What every node of a cluster answered to one question.
#[derive(Debug, Default)]
pub struct Answers {
    /// One per node that answered in time, this node's included.
    pub answers: Vec<Bytes>,
    /// Nodes that took the question but did not answer in time.
    pub missing: usize,
}

/// The question could not be asked: the backplane is unreachable.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreachable;

/// A future [`Cluster::ask`] returns.
pub type Asking<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answers, Unreachable>> + Send + 'a>>;

/// A future [`Cluster::since`] returns.
pub type Reading<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Publication>, TooOld>> + Send + 'a>,
>;

/// A future [`Cluster::keep`] and [`Cluster::take`] return.
pub type Keeping<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, Unreachable>> + Send + 'a>>;

/// What the nodes of a cluster ask one another (questions about their clients), and
/// what they share: channels' history and the sessions kept for recovery.
pub trait Cluster: Send + Sync {
    /// Ask every node (this one included) `question`, and wait (boundedly) for the answers.
    fn ask(&self, question: Bytes) -> Asking<'_>;
    /// Who answers the questions on this node (the first call wins).
    fn answer_with(&self, answerer: Arc<dyn Answerer>);
    /// Who answers, instead, the questions whose body begins with `topic` (the
    /// dashboard's); the first call per topic wins.
    fn answer_topic(&self, topic: &'static [u8], answerer: Arc<dyn Answerer>);
    /// [`Broker::since`], from this node's history if it holds it all, else from the
    /// cluster's: what a client back on any node missed.
    fn since(&self, namespace: Namespace, channel: Bytes, offset: Offset) -> Reading<'_>;
    /// Keep `value` under `key` (an edge's recovery session) for `ttl`, for any node.
    fn keep(&self, key: String, value: Bytes, ttl: std::time::Duration) -> Keeping<'_, ()>;
    /// Take what is kept under `keys`, all at once: once, on one node.
    fn take(&self, keys: Vec<String>) -> Keeping<'_, Vec<Option<Bytes>>>;
    /// Keep what is kept under `keys` for `ttl` from now.
    fn prolong(&self, keys: Vec<String>, ttl: std::time::Duration) -> Keeping<'_, ()>;
    /// Where the cluster's history of a channel stands (None: it has none).
    fn position(&self, namespace: Namespace, channel: Bytes) -> Keeping<'_, Option<Offset>>;
    /// Where the cluster's history of a channel stands, or the cluster's origin at 0 if
    /// it has none (nothing of the channel is written): an offset a subscription starts
    /// from that means the same on every node, also before anything was published.
    fn stand(&self, namespace: Namespace, channel: Bytes) -> Keeping<'_, Offset>;
    /// Until the node's join of a channel (it began to hear it: `broker/redis/joins.rs`)
    /// has its stream stand where the join read; at once if it is not joining it.
    fn joined(&self, namespace: Namespace, channel: Bytes) -> Keeping<'_, ()>;
    /// Something read from the cluster (`what`) cannot be read: counted and logged.
    fn malformed(&self, what: &str);
}

/// Where a stream stands, as [`Broker::position`] answers it, in the whole cluster's
/// history when this node is part of one (None there: no history, or Redis unreachable).
pub async fn position(
    broker: &dyn Broker,
    namespace: &Namespace,
    channel: &[u8],
) -> Option<Offset> {
    match broker.cluster() {
        Some(c) => {
            let channel = Bytes::copy_from_slice(channel);
            c.position(namespace.clone(), channel).await.ok().flatten()
        }
        None => broker.position(namespace, channel),
    }
}

/// The publications of a stream after `offset`, as [`Broker::since`] answers them, from
/// the whole cluster's history when this node is part of one.
pub async fn missed(
    broker: &dyn Broker,
    namespace: &Namespace,
    channel: &[u8],
    offset: Offset,
) -> Result<Vec<Publication>, TooOld> {
    match broker.cluster() {
        Some(c) => {
            let channel = Bytes::copy_from_slice(channel);
            c.since(namespace.clone(), channel, offset).await
        }
        None => broker.since(namespace, channel, offset),
    }
}

/// The broker: publish, subscribe and unsubscribe interest, read history.
pub trait Broker: Send + Sync {
    /// The cluster this node belongs to, if any: a single node answers for itself.
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }

    /// Number `publication` in its stream and deliver it. Returns the receivers it
    /// reached (RESP subscriptions as Redis counts them, plus WebSocket connections).
    fn publish(&self, publication: Publication) -> usize;

    /// One more of `sub`'s clients joined `channel` of `namespace`. Counted: the
    /// subscription lasts until as many [`stream_unsubscribe`](Self::stream_unsubscribe)s,
    /// in either order (an unsubscribe that overtakes its subscribe cancels it).
    fn stream_subscribe(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    );
    fn stream_unsubscribe(&self, namespace: &Namespace, channel: &[u8], id: SubscriberId);
    /// Every publication of `namespace` whose channel matches the glob `pattern`,
    /// whether or not a stream of it exists (false if `sub` already holds it).
    fn stream_psubscribe(
        &self,
        namespace: &Namespace,
        pattern: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) -> bool;
    fn stream_punsubscribe(&self, namespace: &Namespace, pattern: &[u8], id: SubscriberId) -> bool;

    /// The publications of a stream after `offset`, oldest first, each with its
    /// offset: none when `offset` is the stream's last (nothing was missed); [`TooOld`]
    /// when the broker cannot give all of them (another epoch, ahead of the stream, or
    /// history after it expired or evicted; no such stream). Never some of them. This
    /// node's history only: an edge asks [`missed`], which in a cluster reads the whole
    /// cluster's.
    fn since(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        offset: Offset,
    ) -> Result<Vec<Publication>, TooOld>;
    /// Where a stream stands: its last publication's offset (seq 0 before the first);
    /// None when this node has no such stream.
    fn position(&self, namespace: &Namespace, channel: &[u8]) -> Option<Offset>;

    /// The streams, stream patterns and RESP subscriptions this node holds.
    fn interest(&self) -> Interest;

    /// Free the history expired at `now`, drop the streams that lingered for it (and
    /// log what the history budgets evicted). The server calls it every few seconds;
    /// it takes one stream lock at a time, briefly. A Redis broker leaves expiry to Redis.
    fn sweep(&self, now: Instant);

    /// RESP `SUBSCRIBE` to an exact channel. False if this subscriber already was.
    fn subscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool;
    fn unsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool;
    fn psubscribe(&self, pattern: Bytes, sub: Arc<dyn Subscriber>) -> bool;
    fn punsubscribe(&self, pattern: &[u8], id: SubscriberId) -> bool;
    fn ssubscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool;
    fn sunsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool;

    /// PUBSUB CHANNELS \[pattern\]: active RESP channels, optionally filtered.
    fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes>;
    fn shard_channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes>;
    /// PUBSUB NUMSUB: RESP subscribers of one exact channel.
    fn numsub(&self, channel: &[u8]) -> usize;
    fn shard_numsub(&self, channel: &[u8]) -> usize;
    /// PUBSUB NUMPAT: distinct RESP patterns subscribed to (Redis 7 semantics).
    fn numpat(&self) -> usize;
    /// Totals for INFO: (RESP channels, patterns, shard channels).
    fn sizes(&self) -> (usize, usize, usize);

    fn stats(&self) -> &BrokerStats;
    /// Rows this broker adds to /metrics, as `metrics::render` takes them: the history
    /// store's (`herald_history_*`).
    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)>;
}
