//! The [`Broker`] of a herald node joined to others through Redis (`--cluster`): every
//! publication, whichever node it enters by, is published on Redis once, and every node
//! hands what Redis sends it to its own clients.
//!
//! Each node keeps a [`MemoryBroker`] for its own subscribers (RESP registries, streams,
//! history), exactly as a single node does; this broker sits in front of it:
//! - [`Broker::publish`] queues the publication for the publisher task, which sends it
//!   on its channel's backplane channel ([`wire`]) through the script that numbers it in
//!   the channel's history in Redis and publishes it with its offset ([`history`];
//!   `SPUBLISH`'s with a plain `PUBLISH`), pipelining what has queued up in one round trip
//!   on one connection, so the order publications entered a node is the order Redis
//!   numbers them, and every node sees them in.
//! - A few subscriber connections ([`CONNECTIONS`]) take what the node needs: the
//!   channels its edges have clients on, the stream patterns they hold, every channel
//!   of the default namespace while it has RESP subscribers ([`subscriptions`]). What
//!   arrives is decoded and published into the local broker with the offset Redis gave
//!   it, which it keeps in the node's stream and delivers. The wanted subscriptions follow the local
//!   broker's [`Broker::interest`]: every (un)subscribe wakes a planner task that
//!   recomputes them and hands each connection its share.
//!
//! So a node's own publications reach its own clients the way everybody else's do:
//! back from Redis, in Redis's order, with the same offsets on every node.
//! - [`Cluster::since`] answers from the node's history when it holds all that was
//!   missed, else from Redis's ([`history::READ`]); [`Cluster::keep`] and
//!   [`Cluster::take`] keep the edges' recovery sessions on Redis for any node, taken
//!   once ([`requests`]).
//!
//! # When Redis cannot be reached
//! A node keeps delivering what enters it to its own clients: a publication that cannot
//! be queued for Redis (the publisher is disconnected, or behind by [`QUEUE`]) is
//! delivered locally at once, numbered in an epoch of this node's own (Redis never
//! numbered it: its channel is tainted, see [`taint`]), and one whose channel's
//! subscriber connection is down is delivered locally by the publisher, with the offset
//! the script gave it. Publications made on other nodes while this node's
//! subscriber connections were down never reach its clients: each loss of a connection
//! is counted (`herald_cluster_outages_total`) and logged with that consequence,
//! `/healthz` names the backplane while any connection is down, and every connection
//! reconnects with backoff and subscribes again to what the node needs then.
//!
//! What a subscriber connection missed while it was down is read from the history when
//! the channel's next publication shows the gap ([`gaps`]).
//!
//! # A channel this node begins to hear
//! Its first client here is told it is subscribed before Redis applies the node's
//! `SUBSCRIBE` (a planner's turn and a round trip later; seconds if that subscriber
//! connection is reconnecting). At the client's subscription the node reads where the
//! channel's history in Redis stands; the subscriber connection has the new stream stand
//! there before it subscribes, and once Redis acknowledged the `SUBSCRIBE` reads the history
//! from there on and delivers it, ahead of what pub/sub brought meanwhile (a copy of the
//! same offset is dropped): each publication once, in order ([`joins`]). The window that
//! remains: publications Redis numbers after the client's subscription but before that read
//! reaches Redis (the request's one way to Redis, queued behind what the node's requests
//! connection already carries). The read is queued before the client's reply is, and a
//! publication the client causes after it saw the reply takes the reply's way to the
//! client and its own way through a node to Redis: it comes after the read unless the read
//! is held up. Where the read fails (Redis unreachable) or the join waited over a minute
//! for its connection, the channel starts from what pub/sub first brings, as before. A
//! lingering stream that already numbered something is not a join: it fills from where it
//! stood ([`gaps`]).
//!
//! `PUBLISH` and `SPUBLISH` answer as Redis Cluster does: the receivers on the node they
//! were sent to, counted when the publication is queued (this node's RESP subscriptions
//! that match it: channels, patterns, shard channels), though they are reached when Redis
//! hands it back. The edges' WebSocket connections are not counted (that takes
//! delivering); a single node counts them.
//!
//! Presence, occupancy and their webhooks across nodes are
//! [`crate::presence::ClusterPresence`]'s, on connections of its own.
//!
//! `rediss://` URLs connect with TLS (rustls), checked against the system's certificate
//! store (or `SSL_CERT_FILE`).

mod ask;
mod gaps;
mod history;
mod joins;
mod requests;
mod subscriptions;
mod taint;
mod wire;

use super::history::HistoryLimits;
use super::{
    Answerer, Answers, Asking, Broker, BrokerStats, Cluster, Epoch, Interest, Keeping,
    MemoryBroker, Namespace, Offset, Publication, Reading, StreamSubscriber, Subscriber,
    SubscriberId, ToResp, TooOld, Unreachable,
};
use crate::backoff::{self, back_off};
use crate::health::Check;
use crate::metrics::Counter;
use ask::Questions;
use bytes::Bytes;
use futures_util::StreamExt;
use joins::Joins;
use parking_lot::Mutex;
use requests::Requests;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscriptions::{changes, wanted, Wanted};
use taint::Taints;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use wire::{connection_of, Stamp, CONNECTIONS};

/// Publications waiting for the publisher task at most; past it, they are delivered
/// on this node only (counted, logged).
pub const QUEUE: usize = 65_536;
/// Publications sent to Redis in one round trip at most.
const BATCH: usize = 512;
/// How long a command to Redis may take before the connection counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the publisher task sends to Redis, in order.
enum Outgoing {
    /// A publication, on its backplane channel; `here`: to be delivered on this node by
    /// the publisher, with the offset Redis gave it (its channel's subscriber connection
    /// is down, so Redis will not bring it back).
    Publication {
        key: Bytes,
        publication: Publication,
        here: bool,
    },
    /// A question or an answer ([`ask`]), with where to say how many nodes took it.
    Message {
        channel: Bytes,
        message: Bytes,
        taken: Option<oneshot::Sender<usize>>,
    },
}

/// The broker of a node in a cluster. See the module doc.
pub struct RedisBroker {
    local: Arc<MemoryBroker>,
    links: Arc<Links>,
    requests: Arc<Requests>,
    /// Channels this node numbered publications of while Redis could not: see
    /// [`taint`].
    taints: Arc<Taints>,
    /// Where publications Redis will not bring back are delivered.
    here: Here,
    questions: Arc<Questions>,
    outgoing: mpsc::Sender<Outgoing>,
    /// Woken by every (un)subscribe: the planner recomputes what the node needs.
    interest_changed: Arc<Notify>,
    /// Channels this node began to hear, until their subscriber connection takes them.
    joins: Arc<Joins>,
    /// What each subscriber connection is to hold, as the planner last said.
    plans: Vec<watch::Receiver<Wanted>>,
}

/// The state of the node's connections to Redis, and what passed through them.
struct Links {
    /// Where Redis is, without any password, for logs and `/healthz`.
    address: String,
    publisher_up: AtomicBool,
    subscribers_up: [AtomicBool; CONNECTIONS],
    last_error: Mutex<String>,
    published: Counter,
    received: Counter,
    local_only: Counter,
    outages: Counter,
    malformed: Counter,
    /// Answers to this node's questions that did not come in time.
    unanswered: Counter,
    /// History reads that Redis did not answer.
    history_unread: Counter,
    /// Publications a subscriber connection missed, read from the history and delivered.
    gap_filled: Counter,
    /// Gaps in what a subscriber connection received that the history could not fill.
    gap_unfilled: Counter,
    /// Publications made while the node was subscribing to a channel it began to hear
    /// ([`joins`]), read from the history and delivered.
    join_filled: Counter,
    /// Set once the current outage's local-only delivery was logged.
    local_only_said: AtomicBool,
}

impl Links {
    fn all_up(&self) -> bool {
        self.publisher_up.load(Ordering::Relaxed)
            && self
                .subscribers_up
                .iter()
                .all(|u| u.load(Ordering::Relaxed))
    }

    /// A connection (`what`) went down, or could not be made. Said once per loss, and for
    /// the publisher at every failed attempt to connect (at most one per backoff period),
    /// so a node that never reached Redis says so too.
    fn down(&self, up: &AtomicBool, what: &str, error: &str) {
        *self.last_error.lock() = error.to_string();
        if up.swap(false, Ordering::Relaxed) {
            self.outages.inc();
            tracing::warn!(
                redis = %self.address, error, connection = what,
                "backplane connection lost: publications made on other nodes do not reach this \
                 node's clients until it is back; this node's own are delivered here meanwhile"
            );
        } else if std::ptr::eq(up, &self.publisher_up) {
            tracing::warn!(
                redis = %self.address, error,
                "cannot reach the backplane (retrying): this node delivers only its own publications"
            );
        }
    }

    fn up(&self, up: &AtomicBool, what: &str) {
        up.store(true, Ordering::Relaxed);
        if self.all_up() {
            self.local_only_said.store(false, Ordering::Relaxed);
        }
        tracing::info!(redis = %self.address, connection = what, "backplane connected");
    }

    /// Count (and log) what filling a gap came to.
    fn filled(&self, filled: gaps::Filled) {
        self.filled_into(&self.gap_filled, filled)
    }

    /// Count in `whole` (and log) what filling a gap came to.
    fn filled_into(&self, whole: &Counter, filled: gaps::Filled) {
        match filled {
            gaps::Filled::Whole(n) => whole.add(n),
            gaps::Filled::Not(why) => {
                self.gap_unfilled.inc();
                tracing::warn!(
                    redis = %self.address, why,
                    "publications this node did not hear from Redis could not be read from the \
                     history: its clients of that channel missed them (one that reconnects \
                     recovers them where the history still covers them, or is told it is not)"
                );
            }
        }
    }

    fn delivered_locally_only(&self) {
        self.local_only.inc();
        if !self.local_only_said.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.address,
                "publications are delivered on this node only: the backplane is unreachable \
                 or behind (herald_cluster_local_only_total counts them)"
            );
        }
    }
}

impl Check for Links {
    fn problem(&self) -> Option<String> {
        (!self.all_up()).then(|| {
            format!(
                "unreachable at {}: {}",
                self.address,
                self.last_error.lock()
            )
        })
    }
}

impl RedisBroker {
    /// Join the cluster on the Redis at `url` (checked by the configuration), with
    /// `local` for this node's subscribers, its clients recovered within `window` of
    /// leaving; its tasks run until `stop`.
    pub fn start(
        url: &str,
        local: MemoryBroker,
        window: Duration,
        stop: CancellationToken,
    ) -> Arc<RedisBroker> {
        let client = redis::Client::open(url).expect("the configuration checked the URL");
        let links = Arc::new(Links {
            address: crate::config::without_credentials(url),
            publisher_up: AtomicBool::new(false),
            subscribers_up: Default::default(),
            last_error: Mutex::new("not connected yet".into()),
            published: Counter::new(),
            received: Counter::new(),
            local_only: Counter::new(),
            outages: Counter::new(),
            malformed: Counter::new(),
            unanswered: Counter::new(),
            history_unread: Counter::new(),
            gap_filled: Counter::new(),
            gap_unfilled: Counter::new(),
            join_filled: Counter::new(),
            local_only_said: AtomicBool::new(false),
        });
        let limits = local.history_limits();
        let local = Arc::new(local);
        let taints = Arc::new(Taints::new(limits.ttl));
        let requests = Arc::new(Requests::new(client.clone(), RESPONSE_TIMEOUT));
        let here = Here {
            local: local.clone(),
            taints: taints.clone(),
            requests: requests.clone(),
        };
        let (outgoing, queue) = mpsc::channel(QUEUE);
        let interest_changed = Arc::new(Notify::new());
        let joins = Arc::new(Joins::default());
        let node = rand::random::<u64>();
        let questions = Arc::new(Questions::new(node));
        tokio::spawn(publisher(
            client.clone(),
            queue,
            here.clone(),
            links.clone(),
            Numbering {
                node,
                limits,
                epoch_ttl: limits.ttl + window,
            },
            stop.clone(),
        ));
        let mut shares = Vec::with_capacity(CONNECTIONS);
        let mut plans = Vec::with_capacity(CONNECTIONS);
        for i in 0..CONNECTIONS {
            let (share, wanted) = watch::channel(Wanted::default());
            shares.push(share);
            plans.push(wanted.clone());
            tokio::spawn(subscriber(
                i,
                client.clone(),
                wanted,
                Receiver {
                    local: local.clone(),
                    links: links.clone(),
                    questions: questions.clone(),
                    outgoing: outgoing.clone(),
                    requests: requests.clone(),
                    joins: joins.clone(),
                },
                stop.clone(),
            ));
        }
        tokio::spawn(planner(
            local.clone(),
            questions.channels(),
            interest_changed.clone(),
            shares,
            stop,
        ));
        // The first plan holds the question channels, whatever the interest.
        interest_changed.notify_one();
        // The requests connection made now, so that the first channel a client joins
        // has its history's position read at once ([`joins`]).
        let warm = requests.clone();
        tokio::spawn(async move { warm.connection().await.map(drop) });
        Arc::new(RedisBroker {
            local,
            links,
            requests,
            taints,
            here,
            questions,
            outgoing,
            interest_changed,
            joins,
            plans,
        })
    }

    /// Whether a pattern of the plan already brings the channel whose backplane key is
    /// `key` (then it has no join to wait for: [`joins`]).
    fn brought_by_pattern(&self, key: &[u8]) -> bool {
        self.plans[wire::connection_of(key)].borrow().brings(key)
    }

    /// What `/healthz` asks: whether every backplane connection is up.
    pub fn health(&self) -> Arc<dyn Check> {
        self.links.clone()
    }

    /// What the node needs may have changed: wake the planner.
    fn changed(&self) {
        self.interest_changed.notify_one();
    }
}

impl Cluster for RedisBroker {
    fn ask(&self, question: Bytes) -> Asking<'_> {
        Box::pin(async move {
            let (id, message, mut answers) = self.questions.open(&question);
            let (taken, nodes) = oneshot::channel();
            let sent = self.outgoing.try_send(Outgoing::Message {
                channel: Bytes::from_static(ask::ASK.as_bytes()),
                message,
                taken: Some(taken),
            });
            let asked = async {
                sent.map_err(|_| Unreachable)?;
                let nodes = nodes.await.map_err(|_| Unreachable)?;
                let mut by_node = std::collections::HashMap::new();
                let collect = async {
                    while by_node.len() < nodes {
                        match answers.recv().await {
                            Some((node, answer)) => {
                                by_node.insert(node, answer);
                            }
                            None => break,
                        }
                    }
                };
                let _ = tokio::time::timeout(ask::DEADLINE, collect).await;
                Ok(Answers {
                    missing: nodes.saturating_sub(by_node.len()),
                    answers: by_node.into_values().collect(),
                })
            };
            let got = tokio::time::timeout(ask::DEADLINE * 2, asked)
                .await
                .unwrap_or(Err(Unreachable));
            self.questions.close(id);
            if let Ok(Answers { missing, .. }) = &got {
                if *missing > 0 {
                    self.links.unanswered.add(*missing as u64);
                    tracing::warn!(missing, "nodes that took a question did not answer in time");
                }
            }
            got
        })
    }

    fn answer_with(&self, answerer: Arc<dyn Answerer>) {
        self.questions.answer_with(answerer);
    }

    fn answer_topic(&self, topic: &'static [u8], answerer: Arc<dyn Answerer>) {
        self.questions.answer_topic(topic, answerer);
    }

    /// This node's history answers only if it reaches where Redis's stands: a stream with
    /// nobody on it here (lingering for a client that may come back) no longer hears its
    /// channel from Redis, and what it holds stops short. Redis unreachable: nothing can
    /// say what was missed, so nothing is answered.
    fn since(&self, namespace: Namespace, channel: Bytes, offset: Offset) -> Reading<'_> {
        Box::pin(async move {
            let here = self.local.since(&namespace, &channel, offset);
            let read = async {
                let there = self.requests.position(&namespace, &channel).await?;
                if there.is_none() && offset.seq == 0 {
                    // The client stood before anything of an epoch (a stream that had
                    // numbered nothing when it joined, or the cluster's origin), and the
                    // cluster holds no history of the channel: nothing was published
                    // within a history TTL. What this node numbered itself meanwhile, its
                    // own stream answers (in the client's epoch: read again, as the stream
                    // may have come to stand there meanwhile), or refuses (in another).
                    let answer = match self.local.position(&namespace, &channel) {
                        Some(at) if at.epoch == offset.epoch => {
                            self.local.since(&namespace, &channel, offset)
                        }
                        Some(at) if at.seq > 0 => Err(TooOld),
                        _ => Ok(Vec::new()),
                    };
                    return Ok(history::Read::Found(answer));
                }
                let reached = (here.as_ref().ok())
                    .map(|here| here.last().and_then(|p| p.offset).unwrap_or(offset));
                if reached.is_some() && reached == there {
                    return Ok(history::Read::Found(here));
                }
                if self.taints.covers(&namespace, &channel, offset) {
                    return Ok(history::Read::Found(Err(TooOld)));
                }
                let mut con = self.requests.connection().await?;
                let read = history::since(&mut con, &namespace, &channel, offset).await;
                read.inspect_err(|e| self.requests.failed(e))
            };
            match read.await {
                Ok(history::Read::Found(Ok(missed))) => {
                    // A stream made here for the client (a recovery on this node) stands
                    // where Redis's did: what it then misses before its subscription to
                    // Redis is in place shows as a gap, and is filled ([`gaps`]).
                    let reached = missed.last().and_then(|p| p.offset).unwrap_or(offset);
                    self.local.stand_at(&namespace, &channel, reached);
                    Ok(missed)
                }
                Ok(history::Read::Found(Err(TooOld))) => Err(TooOld),
                Ok(history::Read::Malformed) => {
                    self.malformed("an entry of a channel's history (its client is not recovered)");
                    Err(TooOld)
                }
                Err(e) => {
                    self.links.history_unread.inc();
                    tracing::warn!(
                        redis = %self.links.address, error = %e,
                        "cannot read a channel's history from the backplane: its client is \
                         not recovered"
                    );
                    Err(TooOld)
                }
            }
        })
    }

    fn keep(&self, key: String, value: Bytes, ttl: Duration) -> Keeping<'_, ()> {
        Box::pin(async move {
            (self.requests.keep(&key, &value, ttl).await).map_err(|e| {
                tracing::warn!(
                    redis = %self.links.address, error = %e,
                    "a recovery session could not be kept on the backplane: only this node \
                     can recover it"
                );
                Unreachable
            })
        })
    }

    fn prolong(&self, keys: Vec<String>, ttl: Duration) -> Keeping<'_, ()> {
        Box::pin(async move {
            (self.requests.prolong(&keys, ttl).await).map_err(|e| {
                tracing::warn!(
                    redis = %self.links.address, error = %e,
                    "recovery sessions could not be kept longer on the backplane"
                );
                Unreachable
            })
        })
    }

    fn position(&self, namespace: Namespace, channel: Bytes) -> Keeping<'_, Option<Offset>> {
        Box::pin(async move {
            let found = self.requests.position(&namespace, &channel).await;
            found.map_err(|_| Unreachable)
        })
    }

    fn stand(&self, namespace: Namespace, channel: Bytes) -> Keeping<'_, Offset> {
        Box::pin(async move {
            let stood = (self.requests).stand(&namespace, &channel, Epoch::fresh());
            match stood.await {
                Ok(Some(at)) => {
                    self.local.stand_at(&namespace, &channel, at);
                    Ok(at)
                }
                Ok(None) => {
                    self.malformed("where a channel's history stands");
                    Err(Unreachable)
                }
                Err(_) => Err(Unreachable),
            }
        })
    }

    fn joined(&self, namespace: Namespace, channel: Bytes) -> Keeping<'_, ()> {
        Box::pin(async move {
            let key = wire::stream_key(&namespace, &channel);
            if !self.brought_by_pattern(&key) {
                self.joins.standing(&key).await;
            }
            Ok(())
        })
    }

    fn malformed(&self, what: &str) {
        self.links.malformed.inc();
        tracing::warn!(
            redis = %self.links.address,
            "read from the backplane, herald cannot read {what} (another herald version?)"
        );
    }

    fn take(&self, keys: Vec<String>) -> Keeping<'_, Vec<Option<Bytes>>> {
        Box::pin(async move {
            match self.requests.take(&keys).await {
                Ok(taken) => Ok(taken.into_iter().map(|t| t.map(Bytes::from)).collect()),
                Err(e) => {
                    tracing::warn!(
                        redis = %self.links.address, error = %e,
                        "cannot take a recovery session from the backplane"
                    );
                    Err(Unreachable)
                }
            }
        })
    }
}

impl Broker for RedisBroker {
    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }

    /// Redis Cluster's answer: the receivers on this node (its RESP subscriptions that
    /// match, counted as Redis counts them), reached when Redis hands the publication
    /// back; the edges' connections are not counted (that takes delivering).
    fn publish(&self, p: Publication) -> usize {
        let receivers = self.local.resp_receivers(&p);
        let key = wire::key_of(&p);
        let carried = self.links.subscribers_up[connection_of(&key)].load(Ordering::Relaxed);
        let sent = self.links.publisher_up.load(Ordering::Relaxed)
            && self
                .outgoing
                .try_send(Outgoing::Publication {
                    key,
                    publication: p.clone(),
                    here: !carried,
                })
                .is_ok();
        if sent {
            return receivers;
        }
        self.links.delivered_locally_only();
        self.here.unnumbered(p)
    }

    fn stream_subscribe(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) {
        let local = &self.local;
        let subscribe = || local.stream_join(namespace, channel, sub);
        (self.joins).subscribe(&self.requests, namespace, channel, subscribe);
        self.changed()
    }

    fn stream_unsubscribe(&self, namespace: &Namespace, channel: &[u8], id: SubscriberId) {
        self.local.stream_unsubscribe(namespace, channel, id);
        self.changed()
    }

    fn stream_psubscribe(
        &self,
        namespace: &Namespace,
        pattern: &[u8],
        sub: Arc<dyn StreamSubscriber>,
    ) -> bool {
        let changed = self.local.stream_psubscribe(namespace, pattern, sub);
        self.changed();
        changed
    }

    fn stream_punsubscribe(&self, namespace: &Namespace, pattern: &[u8], id: SubscriberId) -> bool {
        let changed = self.local.stream_punsubscribe(namespace, pattern, id);
        self.changed();
        changed
    }

    fn since(
        &self,
        namespace: &Namespace,
        channel: &[u8],
        offset: Offset,
    ) -> Result<Vec<Publication>, TooOld> {
        self.local.since(namespace, channel, offset)
    }

    fn position(&self, namespace: &Namespace, channel: &[u8]) -> Option<Offset> {
        self.local.position(namespace, channel)
    }

    fn interest(&self) -> Interest {
        self.local.interest()
    }

    fn sweep(&self, now: Instant) {
        self.local.sweep(now);
        self.taints.sweep(now);
        self.joins.sweep(now);
    }

    fn subscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        let changed = self.local.subscribe(channel, sub);
        self.changed();
        changed
    }

    fn unsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool {
        let changed = self.local.unsubscribe(channel, id);
        self.changed();
        changed
    }

    fn psubscribe(&self, pattern: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        let changed = self.local.psubscribe(pattern, sub);
        self.changed();
        changed
    }

    fn punsubscribe(&self, pattern: &[u8], id: SubscriberId) -> bool {
        let changed = self.local.punsubscribe(pattern, id);
        self.changed();
        changed
    }

    fn ssubscribe(&self, channel: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        let changed = self.local.ssubscribe(channel, sub);
        self.changed();
        changed
    }

    fn sunsubscribe(&self, channel: &[u8], id: SubscriberId) -> bool {
        let changed = self.local.sunsubscribe(channel, id);
        self.changed();
        changed
    }

    fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.local.channels(pattern)
    }

    fn shard_channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.local.shard_channels(pattern)
    }

    fn numsub(&self, channel: &[u8]) -> usize {
        self.local.numsub(channel)
    }

    fn shard_numsub(&self, channel: &[u8]) -> usize {
        self.local.shard_numsub(channel)
    }

    fn numpat(&self) -> usize {
        self.local.numpat()
    }

    fn sizes(&self) -> (usize, usize, usize) {
        self.local.sizes()
    }

    fn stats(&self) -> &BrokerStats {
        self.local.stats()
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let l = &self.links;
        let mut rows = self.local.metrics();
        rows.extend([
            (
                "herald_cluster_published_total",
                "counter",
                l.published.get(),
            ),
            ("herald_cluster_received_total", "counter", l.received.get()),
            (
                "herald_cluster_local_only_total",
                "counter",
                l.local_only.get(),
            ),
            ("herald_cluster_outages_total", "counter", l.outages.get()),
            (
                "herald_cluster_malformed_total",
                "counter",
                l.malformed.get(),
            ),
            (
                "herald_cluster_unanswered_total",
                "counter",
                l.unanswered.get(),
            ),
            (
                "herald_cluster_history_unread_total",
                "counter",
                l.history_unread.get(),
            ),
            (
                "herald_cluster_gap_filled_total",
                "counter",
                l.gap_filled.get(),
            ),
            (
                "herald_cluster_gap_unfilled_total",
                "counter",
                l.gap_unfilled.get(),
            ),
            (
                "herald_cluster_join_filled_total",
                "counter",
                l.join_filled.get(),
            ),
            ("herald_cluster_up", "gauge", l.all_up() as u64),
        ]);
        rows
    }
}

/// Where the publications Redis will not bring back to this node are delivered.
#[derive(Clone)]
struct Here {
    local: Arc<MemoryBroker>,
    taints: Arc<Taints>,
    /// Where a gap before it is read from ([`gaps`]).
    requests: Arc<Requests>,
}

impl Here {
    /// Delivered here with the offset Redis gave it (None: unknown, numbered here),
    /// after what this node missed before it, if anything ([`gaps`]).
    async fn numbered(&self, mut p: Publication, offset: Option<Offset>, links: &Links) {
        if offset.is_none() {
            self.unnumbered(p);
            return;
        }
        p.offset = offset;
        match gaps::after_gap(&self.local, p) {
            Ok(gap) => links.filled(gaps::fill(&self.local, &self.requests, gap).await),
            Err(p) => {
                self.local.publish(p);
            }
        }
    }

    /// Delivered here only, numbered by this node: its channel is tainted ([`taint`]).
    fn unnumbered(&self, p: Publication) -> usize {
        if p.resp != ToResp::Shard {
            let position = self.local.position(&p.namespace, p.channel());
            self.taints.add(&p.namespace, p.channel(), position);
        }
        self.local.publish(p)
    }
}

/// How the publisher numbers publications: its stamps, and the history Redis keeps.
struct Numbering {
    node: u64,
    limits: HistoryLimits,
    /// How long a channel's epoch hash is kept after its last publication: its stream's
    /// TTL and the recovery window (see [`history`]).
    epoch_ttl: Duration,
}

/// A connection for the publisher, with the numbering script loaded, and the `run_id`
/// of the Redis it reached (what the script numbers under: [`history`]).
async fn publishing(
    client: &redis::Client,
    config: &redis::AsyncConnectionConfig,
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, String)> {
    let mut con = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(history::NUMBER_CODE)
        .exec_async(&mut con)
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await?;
    let run_id = history::run_id(&info).ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::ResponseError, "no run_id in INFO server"))
    })?;
    Ok((con, run_id.to_owned()))
}

/// The pipeline that sends `batch` in order, its publications stamped `first`, `first +
/// 1`, … (the same stamps however often it is built, so Redis takes a batch sent again
/// once) and numbered under `run_id`.
fn pipeline(
    batch: &[Outgoing],
    first: u64,
    numbering: &Numbering,
    run_id: &str,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let mut seq = first;
    for out in batch {
        match out {
            Outgoing::Publication {
                key, publication, ..
            } => {
                let stamp = Stamp {
                    node: numbering.node,
                    seq,
                };
                seq += 1;
                let message = wire::encode(publication, stamp);
                if publication.resp == ToResp::Shard {
                    pipe.cmd("PUBLISH").arg(&key[..]).arg(&message[..]);
                } else {
                    history::number(
                        &mut pipe,
                        key,
                        publication,
                        &message,
                        stamp,
                        numbering,
                        run_id,
                    );
                }
            }
            Outgoing::Message {
                channel, message, ..
            } => {
                pipe.cmd("PUBLISH").arg(&channel[..]).arg(&message[..]);
            }
        }
    }
    pipe
}

/// Whether a pipeline failed because Redis refused a command (not the connection, nor a
/// script it lost): sending it again would fail again.
fn refused(e: &redis::RedisError) -> bool {
    !(e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.kind() == redis::ErrorKind::NoScriptError)
}

/// Send queued publications to Redis, in the order they were queued, stamped with this
/// node and their number: those of a stream's channel through the numbering script
/// ([`history`]), `SPUBLISH`'s with `PUBLISH`. `stop` ends only its waits to connect.
async fn publisher(
    client: redis::Client,
    mut queue: mpsc::Receiver<Outgoing>,
    here: Here,
    links: Arc<Links>,
    numbering: Numbering,
    stop: CancellationToken,
) {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(RESPONSE_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    let mut seq = 0u64;
    let mut backoff = backoff::FIRST;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let (mut con, mut run_id) = tokio::select! {
            _ = stop.cancelled() => return,
            con = publishing(&client, &config) => match con {
                Ok(con) => con,
                Err(e) => {
                    links.down(&links.publisher_up, "publisher", &e.to_string());
                    if !back_off(&mut backoff, &stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        links.up(&links.publisher_up, "publisher");
        backoff = backoff::FIRST;
        loop {
            // Not stopped by shutdown while connected: what RESP connections still publish
            // in the grace period (replies in flight) goes out too. The task ends with the
            // runtime, or when the broker is gone.
            let n = queue.recv_many(&mut batch, BATCH).await;
            if n == 0 {
                return;
            }
            let first = seq + 1;
            let publications = batch
                .iter()
                .filter(|out| matches!(out, Outgoing::Publication { .. }))
                .count() as u64;
            seq += publications;
            let pipe = pipeline(&batch, first, &numbering, &run_id);
            let mut sent = pipe.query_async::<Vec<redis::Value>>(&mut con).await;
            if sent.as_ref().is_err_and(|e| !refused(e)) {
                // The connection may have died while it was idle (Redis restarted, and lost
                // the script with it): the batch gets one more try on a new one before it
                // is given up. Should Redis have taken it the first time, the script finds
                // the stamps numbered already, and receivers drop a plain copy by its stamp.
                let again = publishing(&client, &config);
                if let Ok(Ok(fresh)) = tokio::time::timeout(RESPONSE_TIMEOUT, again).await {
                    // Built again: the Redis reached may be another run of it.
                    (con, run_id) = fresh;
                    let pipe = pipeline(&batch, first, &numbering, &run_id);
                    sent = pipe.query_async::<Vec<redis::Value>>(&mut con).await;
                }
            }
            match sent {
                Ok(replies) => {
                    links.published.add(publications);
                    for (out, reply) in batch.drain(..).zip(replies) {
                        match out {
                            Outgoing::Message {
                                taken: Some(tell), ..
                            } => {
                                let taken = redis::from_redis_value(&reply).unwrap_or(0);
                                let _ = tell.send(taken);
                            }
                            Outgoing::Publication {
                                publication,
                                here: true,
                                ..
                            } => {
                                let offset = history::numbered(&reply);
                                here.numbered(publication, offset, &links).await;
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) if refused(&e) => {
                    // Some of the batch may have gone out (they come back as any other);
                    // which, Redis did not say. Those Redis would not bring back are
                    // delivered here, numbered here.
                    links.malformed.inc();
                    tracing::warn!(
                        redis = %links.address, error = %e,
                        "Redis refused a command of the publisher's batch (a key of herald's \
                         taken by something else?): its publications may not have reached \
                         other nodes"
                    );
                    deliver_here(&mut batch, &here, &links, |here| here);
                }
                Err(e) => {
                    links.down(&links.publisher_up, "publisher", &e.to_string());
                    // Whether Redis took any of them is unknown: this node's clients get
                    // each once, here. Questions and answers are dropped (the asker
                    // counts the answers missing, or the question unasked).
                    deliver_here(&mut batch, &here, &links, |_| true);
                    break;
                }
            }
        }
    }
}

/// Deliver here, numbered here, the batch's publications `which` says (given whether
/// each was to be delivered here), and empty the batch.
fn deliver_here(
    batch: &mut Vec<Outgoing>,
    here: &Here,
    links: &Links,
    which: impl Fn(bool) -> bool,
) {
    for out in batch.drain(..) {
        if let Outgoing::Publication {
            publication,
            here: to_here,
            ..
        } = out
        {
            if which(to_here) {
                links.delivered_locally_only();
                here.unnumbered(publication);
            }
        }
    }
}

/// Recompute what the node needs from Redis whenever its interest changes, and hand
/// each subscriber connection its share.
async fn planner(
    local: Arc<MemoryBroker>,
    questions: [Bytes; 2],
    changed: Arc<Notify>,
    shares: Vec<watch::Sender<Wanted>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => {}
        }
        let mut plan = wanted(&local.interest());
        plan[0].channels.extend(questions.iter().cloned());
        for (share, now) in shares.iter().zip(plan) {
            share.send_if_modified(|held| {
                let modified = *held != now;
                *held = now;
                modified
            });
        }
    }
}

/// Subscriber connection `i`: subscribe to its share of what the node needs, publish
/// what arrives into the local broker.
async fn subscriber(
    i: usize,
    client: redis::Client,
    mut wanted: watch::Receiver<Wanted>,
    receiver: Receiver,
    stop: CancellationToken,
) {
    let what = format!("subscriber {i}");
    let links = receiver.links.clone();
    let up = &links.subscribers_up[i];
    let mut backoff = backoff::FIRST;
    loop {
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            pubsub = client.get_async_pubsub() => pubsub,
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(e) => {
                links.down(up, &what, &e.to_string());
                if !back_off(&mut backoff, &stop).await {
                    return;
                }
                continue;
            }
        };
        let mut held = Wanted::default();
        let mut last = Latest::default();
        let lost = loop {
            let now = wanted.borrow_and_update().clone();
            let joined = receiver.stand(&held, &now).await;
            if let Err(e) = apply(&mut sink, &held, &now).await {
                receiver.joins.again(joined);
                break e.to_string();
            }
            held = now;
            if !up.load(Ordering::Relaxed) {
                links.up(up, &what);
                backoff = backoff::FIRST;
            }
            receiver.catch_up(joined).await;
            let lost = loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = wanted.changed() => match changed {
                        Ok(()) => break None,
                        Err(_) => return,
                    },
                    message = stream.next() => match message {
                        Some(message) => {
                            if let Some(gap) = receiver.receive(message, &mut last) {
                                receiver.fill(gap).await;
                            }
                        }
                        None => break Some("connection closed".to_string()),
                    },
                }
            };
            if let Some(lost) = lost {
                break lost;
            }
        };
        links.down(up, &what, &lost);
        if !back_off(&mut backoff, &stop).await {
            return;
        }
    }
}

/// Subscribe and unsubscribe what turns `from` into `to`.
async fn apply(
    sink: &mut redis::aio::PubSubSink,
    from: &Wanted,
    to: &Wanted,
) -> redis::RedisResult<()> {
    let [subscribe, unsubscribe, psubscribe, punsubscribe] = changes(from, to);
    let args = |keys: &[Bytes]| keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    if !subscribe.is_empty() {
        sink.subscribe(args(&subscribe)).await?;
    }
    if !psubscribe.is_empty() {
        sink.psubscribe(args(&psubscribe)).await?;
    }
    if !unsubscribe.is_empty() {
        sink.unsubscribe(args(&unsubscribe)).await?;
    }
    if !punsubscribe.is_empty() {
        sink.punsubscribe(args(&punsubscribe)).await?;
    }
    Ok(())
}

/// The latest stamp a subscriber connection delivered, per publishing node. A node
/// numbers its publications in the order it sends them and Redis keeps that order on
/// each connection, so a stamp not past its node's latest is a copy.
#[derive(Default)]
struct Latest(std::collections::HashMap<u64, u64>);

impl Latest {
    /// Whether `stamp` is past its node's latest (then it becomes the latest).
    fn newer(&mut self, stamp: Stamp) -> bool {
        let seen = self.0.entry(stamp.node).or_insert(0);
        let newer = stamp.seq > *seen;
        *seen = (*seen).max(stamp.seq);
        newer
    }
}

/// What a subscriber connection hands what arrives to.
struct Receiver {
    local: Arc<MemoryBroker>,
    links: Arc<Links>,
    questions: Arc<Questions>,
    /// Where answers to other nodes' questions go out.
    outgoing: mpsc::Sender<Outgoing>,
    /// Where a gap in what arrives is read from ([`gaps`]).
    requests: Arc<Requests>,
    /// Channels the node began to hear, waiting for this connection's `SUBSCRIBE`.
    joins: Arc<Joins>,
}

impl Receiver {
    /// One message from Redis: a question (answered) or an answer to one of this
    /// node's, or a publication, published into the local broker unless this connection
    /// already had it (two patterns of a connection that match one channel each bring a
    /// copy; a batch sent again after a lost reply brings another).
    fn receive(&self, message: redis::Msg, last: &mut Latest) -> Option<gaps::Gap> {
        let asked = (!message.from_pattern())
            .then(|| {
                self.questions
                    .receive(message.get_channel_name(), message.get_payload_bytes())
            })
            .flatten();
        if let Some(answer) = asked {
            if let Some((channel, message)) = answer {
                let out = Outgoing::Message {
                    channel,
                    message,
                    taken: None,
                };
                if self.outgoing.try_send(out).is_err() {
                    tracing::warn!(
                        "an answer to another node's question was dropped: the backplane is behind or away"
                    );
                }
            }
            return None;
        }
        match wire::decode(Bytes::copy_from_slice(message.get_payload_bytes())) {
            Ok((stamp, publication)) => {
                if !last.newer(stamp) {
                    return None;
                }
                self.links.received.inc();
                match gaps::after_gap(&self.local, publication) {
                    Ok(gap) => return Some(gap),
                    Err(publication) => {
                        self.local.publish(publication);
                    }
                }
            }
            Err(wire::Malformed) => {
                self.links.malformed.inc();
                tracing::warn!(
                    channel = message.get_channel_name(),
                    "a backplane message herald cannot read (another herald version?): dropped"
                );
            }
        }
        None
    }

    /// Deliver what this connection missed before the publication of `gap`, then it.
    async fn fill(&self, gap: gaps::Gap) {
        (self.links).filled(gaps::fill(&self.local, &self.requests, gap).await);
    }

    /// Before `to`'s new channels are subscribed: have the streams of those the node
    /// began to hear stand where their history stood then ([`joins`]). Returns them,
    /// with that, to catch up once subscribed.
    async fn stand(&self, from: &Wanted, to: &Wanted) -> Vec<(joins::Join, Offset)> {
        self.joins.covered(to);
        let new = to.channels.difference(&from.channels);
        let taken = self.joins.take(new);
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        let mut stood = Vec::with_capacity(taken.len());
        for mut join in taken {
            // Unread by the deadline (Redis unreachable): the stream starts from what
            // pub/sub brings first.
            let at = join.stand(deadline).await;
            if let Some(at) = at {
                self.local.rejoin_at(&join.namespace, &join.channel, at);
            }
            self.joins.stood(&mut join);
            if let Some(at) = at {
                stood.push((join, at));
            }
        }
        stood
    }

    /// The channels of `joined` are subscribed: deliver what their history holds past
    /// where their streams stand, before anything that arrived meanwhile.
    async fn catch_up(&self, joined: Vec<(joins::Join, Offset)>) {
        let (local, requests) = (&self.local, &self.requests);
        let each = joined.iter().map(|(join, stand)| {
            gaps::catch_up(local, requests, &join.namespace, &join.channel, *stand)
        });
        for filled in futures_util::future::join_all(each).await {
            self.links.filled_into(&self.links.join_filled, filled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_dropped_by_its_stamp_whichever_copy_and_whenever() {
        let mut latest = Latest::default();
        let s = |node, seq| Stamp { node, seq };
        assert!(latest.newer(s(1, 1)));
        assert!(!latest.newer(s(1, 1)), "the second copy, right after");
        assert!(latest.newer(s(2, 1)), "another node counts for itself");
        assert!(latest.newer(s(1, 2)));
        assert!(!latest.newer(s(1, 1)), "a batch sent again, later");
        assert!(latest.newer(s(1, 3)));
    }
}
