//! A channel this node starts to hear: its first client here subscribed, and the node
//! has no stream of it, or one that numbered nothing, or one that lingered with nobody on
//! it (so unheard: it stood where its last client left). Redis's pub/sub gives a
//! subscriber what is published after its `SUBSCRIBE` is applied, which is a round trip
//! (and a planner's turn, and maybe a reconnect) after the client was told it is
//! subscribed; a new stream has no offset of the channel to show what it missed meanwhile.
//!
//! So at the client's subscription ([`Joins::subscribe`]) the node asks where the channel's
//! history in Redis stands (a read that writes nothing of the channel's, sent at once, on the requests
//! connection: the cluster's origin at 0 if the channel has no history). The
//! subscriber connection that carries the channel, before it sends the `SUBSCRIBE`, takes
//! that answer ([`Joins::take`]) and has the stream stand there
//! ([`MemoryBroker::rejoin_at`](super::super::MemoryBroker::rejoin_at): a lingering stream
//! moves on to it, so its new client gets nothing from before it came); once Redis acknowledged the `SUBSCRIBE`, it reads the
//! history after where the stream stands and delivers it ([`super::gaps::catch_up`]),
//! before anything that arrived on the connection meanwhile. A publication Redis numbered
//! after the position was read reaches the node by the history, or by pub/sub, or both:
//! the stream takes each offset once (a copy is dropped by its offset), in order. A
//! `SUBSCRIBE` lost with its connection leaves the join, its position known, for the next
//! connection ([`Joins::again`]).
//!
//! What remains: a publication Redis numbers after the client's subscription but before
//! the read reaches Redis (the request's way from this node to Redis, behind what the
//! requests connection already carries, and the connection's task to write it). The read
//! is queued before the client's reply is, so a publication the client causes after its
//! reply usually comes later. On a loaded 2-core machine, while the read waited for a task
//! of its own to be queued, one the test published the moment the subscription succeeded
//! was numbered before it about once in ten runs; queued at once, 45 joins missed nothing.
//! A Pusher subscription closes even that: its reply waits until its stream stands where
//! Redis's history does ([`Cluster::stand`](super::super::Cluster::stand), from the
//! Pusher edge), so what is published after its client saw the reply comes after.
//! A client recovering onto the channel here (socket.io) reads the history up to where
//! Redis stands a little later: a publication numbered between the two reads reaches it by
//! its replay and then live, and the live copy is dropped
//! ([`crate::recovery::gate::Covered`]).
//! A channel whose position could not be read
//! (Redis unreachable) starts from what pub/sub first brings, as before. A channel a
//! pattern already brings (a Pusher app's cache channels, the default namespace while a
//! RESP client subscribes) needs none of this: its publications were already arriving.

use super::super::{Epoch, Namespace, Offset};
use super::requests::Requests;
use super::subscriptions::Wanted;
use super::wire;
use crate::sharded::Sharded;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How long a join waits for its subscriber connection (down, or the channel came by a
/// pattern after all) before it is forgotten: the stream then starts from what pub/sub
/// brings first.
const KEPT: Duration = Duration::from_secs(60);

/// A channel the node began to hear, waiting for its `SUBSCRIBE`.
pub struct Join {
    pub namespace: Namespace,
    pub channel: Bytes,
    /// Where the channel's history stood, read by [`Requests::stand`] (None inside: it
    /// could not be read): what follows it is the stream's (all of the channel's first
    /// epoch, when it stood at the cluster's origin).
    stand: oneshot::Receiver<Option<Offset>>,
    /// Dropped once the stream stands where the join read (or the join is given up):
    /// what [`Joins::standing`] waits for.
    stood: Option<watch::Sender<()>>,
    made: Instant,
}

impl Join {
    fn key(&self) -> Bytes {
        wire::stream_key(&self.namespace, &self.channel)
    }

    /// Where the history stood, once read (None: it could not be, by `deadline`).
    pub async fn stand(&mut self, deadline: tokio::time::Instant) -> Option<Offset> {
        let read = tokio::time::timeout_at(deadline, &mut self.stand).await;
        read.ok().and_then(Result::ok).flatten()
    }
}

/// The joins waiting for their subscriber connections, by the channel's backplane key.
pub struct Joins {
    pending: Sharded<Bytes, Join>,
    /// Each join's end, from its making until its stream stood (also after it was taken).
    standing: Sharded<Bytes, watch::Receiver<()>>,
}

impl Default for Joins {
    fn default() -> Self {
        Joins {
            pending: Sharded::new(16),
            standing: Sharded::new(16),
        }
    }
}

impl Joins {
    /// One more client of `channel` in `namespace`: `subscribe` counts it in the local
    /// broker and says whether the node thereby began to hear the channel; if so, read
    /// where its history stands. The join is recorded under the same lock as the
    /// subscription is made, so no plan can carry the channel to its subscriber
    /// connection before the join is there to take.
    pub fn subscribe(
        &self,
        requests: &Arc<Requests>,
        namespace: &Namespace,
        channel: &[u8],
        subscribe: impl FnOnce() -> bool,
    ) {
        let key = wire::stream_key(namespace, channel);
        let mut pending = self.pending.write(&key);
        if !subscribe() || pending.contains_key(&key) {
            return;
        }
        let (tell, stand) = oneshot::channel();
        let (stood, standing) = watch::channel(());
        let (namespace, channel) = (namespace.clone(), Bytes::copy_from_slice(channel));
        let join = Join {
            namespace: namespace.clone(),
            channel: channel.clone(),
            stand,
            stood: Some(stood),
            made: Instant::now(),
        };
        pending.insert(key.clone(), join);
        drop(pending);
        self.standing.write(&key).insert(key, standing);
        let requests = requests.clone();
        let mut read = Box::pin(async move {
            let read = requests.stand(&namespace, &channel, Epoch::fresh()).await;
            let _ = tell.send(read.ok().flatten());
        });
        // Polled once here, so the request is queued for the connection before the client's
        // reply is (a spawned task would queue it a scheduling turn later); the task
        // carries it on from there.
        let mut here = Context::from_waker(futures_util::task::noop_waker_ref());
        if read.as_mut().poll(&mut here).is_pending() {
            tokio::spawn(read);
        }
    }

    /// The joins of `keys` (channels about to be subscribed), taken.
    /// (No shortcut on an empty map: its count is published as a join's lock is released,
    /// after the plan may already carry the channel here.)
    pub fn take<'a>(&self, keys: impl Iterator<Item = &'a Bytes>) -> Vec<Join> {
        keys.filter_map(|k| self.pending.write(k).remove(k))
            .collect()
    }

    /// Drop the joins of channels a pattern of `plan` (a subscriber connection's) brings:
    /// the pattern already carries their publications, nothing is to stand or catch up,
    /// and nobody is to wait for them ([`Joins::standing`]).
    pub fn covered(&self, plan: &Wanted) {
        if plan.patterns.is_empty() {
            return;
        }
        let mut dropped = Vec::new();
        for mut shard in self.pending.write_each() {
            shard.retain(|key, _| {
                let brought = plan.brings(key);
                if brought {
                    dropped.push(key.clone());
                }
                !brought
            });
        }
        for key in &dropped {
            self.forget(key);
        }
    }

    /// `join`'s stream stands where it read, or the join is given up (its stand could not
    /// be read): whoever waits for it goes on.
    pub fn stood(&self, join: &mut Join) {
        join.stood = None;
        self.forget(&join.key());
    }

    /// Stop keeping what waiters of `key`'s join need once it stood (a newer join of the
    /// channel's is kept).
    fn forget(&self, key: &Bytes) {
        let mut standing = self.standing.write(key);
        if standing.get(key).is_some_and(|s| s.has_changed().is_err()) {
            standing.remove(key);
        }
    }

    /// Joins taken, their stands read, whose `SUBSCRIBE` did not go through (the
    /// connection was lost): back for the connection's next try.
    pub fn again(&self, joined: Vec<(Join, Offset)>) {
        for (mut join, stand) in joined {
            let (tell, read) = oneshot::channel();
            let _ = tell.send(Some(stand));
            join.stand = read;
            let key = join.key();
            self.pending.write(&key).entry(key).or_insert(join);
        }
    }

    /// Until the stream of the channel whose backplane key is `key` stands where its join
    /// read, if the node is joining it: a client that subscribed meanwhile (the one whose
    /// subscription began the join, too) learns where it starts only then, for a stream
    /// that lingered unheard moves on to it.
    pub async fn standing(&self, key: &Bytes) {
        let standing = self.standing.read(key).get(key).cloned();
        if let Some(mut standing) = standing {
            while standing.changed().await.is_ok() {}
        }
    }

    /// Forget the joins no subscriber connection took in time, and those that stood.
    pub fn sweep(&self, now: Instant) {
        for mut shard in self.pending.write_each() {
            shard.retain(|_, j| now.saturating_duration_since(j.made) < KEPT);
        }
        for mut shard in self.standing.write_each() {
            shard.retain(|_, s| s.has_changed().is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_join_that_stood_releases_its_waiters_and_is_forgotten() {
        let joins = Joins::default();
        let (namespace, channel) = (Namespace::Default, Bytes::from_static(b"a"));
        let key = wire::stream_key(&namespace, &channel);
        let (tx, rx) = watch::channel(());
        joins.standing.write(&key).insert(key.clone(), rx);
        let mut join = Join {
            namespace,
            channel,
            stand: oneshot::channel().1,
            stood: Some(tx),
            made: Instant::now(),
        };
        let waiting = joins.standing(&key);
        joins.stood(&mut join);
        let waited = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(waited.is_ok(), "its waiter goes on");
        assert!(
            joins.standing.read(&key).get(&key).is_none(),
            "nothing kept of it"
        );
    }

    #[tokio::test]
    async fn a_join_is_taken_once_given_back_with_its_stand_and_forgotten_when_old() {
        let joins = Joins::default();
        let (ns, channel) = (Namespace::Default, Bytes::from_static(b"a"));
        let key = wire::stream_key(&ns, &channel);
        let (tell, stand) = oneshot::channel();
        let origin = Offset {
            epoch: Epoch(5),
            seq: 0,
        };
        tell.send(Some(origin)).unwrap();
        let join = Join {
            namespace: ns,
            channel,
            stand,
            stood: None,
            made: Instant::now(),
        };
        joins.pending.write(&key).insert(key.clone(), join);
        let keys = [key.clone(), Bytes::from_static(b"other")];
        let mut taken = joins.take(keys.iter());
        assert_eq!(taken.len(), 1);
        assert!(joins.take(keys.iter()).is_empty(), "taken once");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(taken[0].stand(deadline).await, Some(origin));
        let at = Offset {
            epoch: Epoch(7),
            seq: 3,
        };
        joins.again(vec![(taken.pop().unwrap(), at)]);
        let mut back = joins.take(keys.iter());
        assert_eq!(
            back[0].stand(deadline).await,
            Some(at),
            "its stand, as read"
        );
        joins.again(vec![(back.pop().unwrap(), at)]);
        joins.sweep(Instant::now() + KEPT);
        assert!(joins.take(keys.iter()).is_empty(), "forgotten");
    }
}
