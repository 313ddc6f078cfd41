//! The presence of a node in a cluster (`--cluster`): who is present anywhere, answered
//! from memory, so that the [`Presence`] trait stays synchronous.
//!
//! Each node keeps its own connections in a [`MemoryPresence`] and a view of every other
//! node's users, which the Redis link ([`super::redis_link`]) keeps current: a snapshot of
//! each node's entries when it connects, then every node's joins and leaves as they are
//! published. A user counts once however many nodes it is on:
//! - a join is announced to this node's clients (`first`) when the user is on no node
//!   yet as far as this node knows; a leave when it was the user's last connection here
//!   and no other node has it;
//! - another node's change reaches the namespace's [`Listener`], which announces it to
//!   this node's clients by the same rule, within the channel's turn;
//! - member lists, user counts and `present` are this node's users and the view's, each
//!   user once.
//!
//! Each node's clients therefore hear one arrival and one departure per user, whichever
//! nodes the user's connections are on. What the app is told (webhooks) is decided in
//! Redis instead, atomically, so exactly one node tells it: the link's scripts count the
//! nodes a user (or a channel's subscribers) is on and say which change was the first or
//! the last anywhere. A node that dies stops refreshing its heartbeat; when that lapses
//! the first node to notice takes its entries out (once, in a script), tells the app who
//! left, and every node drops them from its view, announcing the departures.
//!
//! A socket.io session recovered on another node moves its members with it: the taker
//! joins first (the user is then on two nodes), then hands the session over
//! ([`Presence::handed_over`], written after its joins and heard by every node after
//! them), and the node that kept it leaves ([`Listener::taken`]): no node sees the user
//! on none.
//!
//! Locks: a channel's view shard, then the memory presence's shard, never the other
//! way; no I/O under either (the link is handed its work through a queue).

use super::{Entry, Full, Heard, Joined, Listener, MemoryPresence, Presence};
use crate::broker::SubscriberId;
use crate::laravel::PresenceMember;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

const SHARDS: usize = 16;

/// A node's id: random, told in hex.
pub type Node = u64;

/// One user of another node, with when this node learned of it (for the members' order).
#[derive(Clone)]
struct Remote {
    arrived: u64,
    member: Arc<PresenceMember>,
}

/// One node's users of one channel, by user key.
type NodeUsers = HashMap<Box<str>, Remote>;
/// A channel of a namespace.
pub type Place = (Box<str>, Box<str>);
/// channel → node → its users.
type Channels = HashMap<Box<str>, BTreeMap<Node, NodeUsers>>;
/// namespace → its channels' views.
type View = HashMap<Box<str>, Channels>;

/// What the link must write to Redis for this node, in order.
#[derive(Debug)]
pub enum Change {
    /// A user's first connection on this node joined a channel.
    Join {
        namespace: Box<str>,
        channel: Box<str>,
        member: Arc<PresenceMember>,
    },
    /// A user's last connection on this node left a channel.
    Leave {
        namespace: Box<str>,
        channel: Box<str>,
        user: Box<str>,
    },
    /// This node took over what `token` names from another node, whose listener of
    /// `namespace` ends its copy ([`super::Listener::taken`]); written after the changes
    /// before it, so the other nodes hear it after them.
    HandedOver {
        namespace: Box<str>,
        token: Box<str>,
    },
    /// A channel's subscriptions on this node changed: 0 when its last one left; from 0,
    /// it is occupied. `counted`: its app tells subscribers the count, so the other nodes
    /// hear the change.
    Subscriptions {
        namespace: Box<str>,
        channel: Box<str>,
        count: usize,
        counted: bool,
    },
}

/// Where this presence hands its changes: the link's queue (see [`super::redis_link`]).
pub trait Outbound: Send + Sync {
    fn send(&self, change: Change);
    /// Resolves once everything sent so far is written (and its verdict told).
    fn settled(&self) -> super::Settling<'_>;
    /// What the link counted, as /metrics rows.
    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)>;
}

/// A node's presence in a cluster. See the module doc.
pub struct ClusterPresence {
    node: Node,
    local: MemoryPresence,
    hasher: foldhash::fast::RandomState,
    view: Box<[Mutex<View>]>,
    arrivals: AtomicU64,
    /// Each channel's subscriptions per node: this node's as last written, the others'
    /// as they said (the channels with none are not here).
    counts: Mutex<HashMap<Place, BTreeMap<Node, usize>>>,
    listeners: RwLock<HashMap<Box<str>, Weak<dyn Listener>>>,
    outbound: Box<dyn Outbound>,
}

impl ClusterPresence {
    pub fn new(node: Node, outbound: Box<dyn Outbound>) -> Self {
        ClusterPresence {
            node,
            local: MemoryPresence::default(),
            hasher: Default::default(),
            view: (0..SHARDS).map(|_| Mutex::default()).collect(),
            arrivals: AtomicU64::new(0),
            counts: Mutex::default(),
            listeners: RwLock::default(),
            outbound,
        }
    }

    pub fn node(&self) -> Node {
        self.node
    }

    fn shard(&self, namespace: &str, channel: &str) -> parking_lot::MutexGuard<'_, View> {
        let h = self.hasher.hash_one((namespace, channel)) as usize;
        self.view[h % SHARDS].lock()
    }

    /// The namespace's listener, while it lives.
    pub fn listener(&self, namespace: &str) -> Option<Arc<dyn Listener>> {
        self.listeners.read().get(namespace)?.upgrade()
    }

    /// Everything this node holds, as the link writes it again after Redis lost it:
    /// each user once per channel (its latest connection's member) and each occupied
    /// channel.
    pub fn holdings(&self) -> (Vec<Entry>, Vec<(Place, usize)>) {
        let occupied = self
            .counts
            .lock()
            .iter()
            .filter_map(|(place, nodes)| Some((place.clone(), *nodes.get(&self.node)?)))
            .collect();
        (self.local.everyone(), occupied)
    }

    /// Node `node` has `count` subscriptions on `channel` of `namespace` now: the
    /// namespace's listener tells this node's subscribers the new total.
    pub fn remote_count(&self, namespace: &str, channel: &str, node: Node, count: usize) {
        if node == self.node || !self.set_count(namespace, channel, node, count) {
            return;
        }
        if let Some(l) = self.listener(namespace) {
            l.counted(channel);
        }
    }

    /// Set a node's count of a channel; whether it changed.
    fn set_count(&self, namespace: &str, channel: &str, node: Node, count: usize) -> bool {
        let mut counts = self.counts.lock();
        let place = (namespace.into(), channel.into());
        let nodes = counts.entry(place).or_default();
        let before = if count == 0 {
            nodes.remove(&node)
        } else {
            nodes.insert(node, count)
        };
        if nodes.is_empty() {
            counts.remove(&(namespace.into(), channel.into()));
        }
        before.unwrap_or(0) != count
    }

    /// Node `node`'s users on `channel` of `namespace` change by `edit`: within the
    /// channel's turn (the listener takes it), this node's clients hear who arrived and
    /// who left as far as this node can tell.
    fn remote_change(
        &self,
        namespace: &str,
        channel: &str,
        node: Node,
        edit: &mut dyn FnMut(&mut NodeUsers),
    ) {
        if node == self.node {
            return;
        }
        let mut apply = || self.apply(namespace, channel, node, &mut *edit);
        match self.listener(namespace) {
            Some(listener) => listener.changed(channel, &mut apply),
            None => {
                apply();
            }
        }
    }

    /// A user of node `node` joined a channel.
    pub fn remote_join(
        &self,
        namespace: &str,
        channel: &str,
        node: Node,
        member: Arc<PresenceMember>,
    ) {
        let arrived = self.arrivals.fetch_add(1, Ordering::Relaxed);
        self.remote_change(namespace, channel, node, &mut |users| {
            users.insert(
                member.key.clone(),
                Remote {
                    arrived,
                    member: member.clone(),
                },
            );
        });
    }

    /// Node `node` took over what `token` names: the namespace's listener ends its copy.
    pub fn remote_taken(&self, namespace: &str, node: Node, token: &str) {
        if node == self.node {
            return;
        }
        if let Some(l) = self.listener(namespace) {
            l.taken(token);
        }
    }

    /// A user of node `node` left a channel.
    pub fn remote_leave(&self, namespace: &str, channel: &str, node: Node, user: &str) {
        self.remote_change(namespace, channel, node, &mut |users| {
            users.remove(user);
        });
    }

    /// Node `node` holds exactly `entries` (namespace, channel, member) and has `counts`
    /// subscriptions per channel: what Redis says it holds, read whole. With neither: the
    /// node is gone.
    pub fn replace_node(&self, node: Node, entries: Vec<Entry>, counts: Vec<(Place, usize)>) {
        let mut changed: Vec<Place> = Vec::new();
        {
            let mut all = self.counts.lock();
            for (place, nodes) in all.iter_mut() {
                if nodes.remove(&node).is_some() {
                    changed.push(place.clone());
                }
            }
            for (place, count) in counts {
                if count > 0 {
                    all.entry(place.clone()).or_default().insert(node, count);
                    changed.push(place);
                }
            }
            all.retain(|_, nodes| !nodes.is_empty());
        }
        changed.sort();
        changed.dedup();
        for (ns, ch) in changed {
            if let Some(l) = self.listener(&ns) {
                l.counted(&ch);
            }
        }
        let mut by_channel: BTreeMap<Place, Vec<Arc<PresenceMember>>> = BTreeMap::new();
        for (ns, ch, m) in entries {
            by_channel.entry((ns, ch)).or_default().push(m);
        }
        // The channels the node is on now in this view, which it may have left.
        for shard in self.view.iter() {
            for (ns, channels) in shard.lock().iter() {
                for (ch, nodes) in channels {
                    if nodes.contains_key(&node) {
                        by_channel.entry((ns.clone(), ch.clone())).or_default();
                    }
                }
            }
        }
        for ((ns, ch), members) in by_channel {
            let arrived = self.arrivals.fetch_add(1, Ordering::Relaxed);
            self.remote_change(&ns, &ch, node, &mut |users| {
                let mut now: HashMap<Box<str>, Remote> = members
                    .iter()
                    .map(|m| {
                        let kept = users.get(&m.key).map_or(arrived, |r| r.arrived);
                        (
                            m.key.clone(),
                            Remote {
                                arrived: kept,
                                member: m.clone(),
                            },
                        )
                    })
                    .collect();
                std::mem::swap(users, &mut now);
            });
        }
    }

    /// The nodes this view holds users of.
    pub fn nodes(&self) -> HashSet<Node> {
        let mut nodes = HashSet::new();
        for shard in self.view.iter() {
            for channels in shard.lock().values() {
                for by_node in channels.values() {
                    nodes.extend(by_node.keys().copied());
                }
            }
        }
        nodes
    }

    fn apply(
        &self,
        namespace: &str,
        channel: &str,
        node: Node,
        edit: &mut dyn FnMut(&mut NodeUsers),
    ) -> Vec<Heard> {
        let mut shard = self.shard(namespace, channel);
        let nodes = shard
            .entry(namespace.into())
            .or_default()
            .entry(channel.into())
            .or_default();
        let before = nodes.get(&node).cloned().unwrap_or_default();
        let mut after = before.clone();
        edit(&mut after);
        let elsewhere = |nodes: &BTreeMap<Node, HashMap<Box<str>, Remote>>, user: &str| {
            nodes
                .iter()
                .any(|(n, users)| *n != node && users.contains_key(user))
        };
        let mut heard = Vec::new();
        let touched: Vec<&Box<str>> = before
            .keys()
            .chain(after.keys())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for user in touched {
            let (was, is) = (before.get(user), after.get(user));
            if was.is_some() == is.is_some() {
                continue;
            }
            let known =
                elsewhere(nodes, user) || self.local.present(namespace, channel, &[user])[0];
            if known {
                continue;
            }
            heard.push(match (was, is) {
                (None, Some(r)) => Heard::Arrived(r.member.clone()),
                (Some(r), _) => Heard::Departed(r.member.clone()),
                (None, None) => unreachable!("one of them is some"),
            });
        }
        if after.is_empty() {
            nodes.remove(&node);
        } else {
            nodes.insert(node, after);
        }
        if nodes.is_empty() {
            let ns = shard.get_mut(namespace).expect("just found");
            ns.remove(channel);
            if ns.is_empty() {
                shard.remove(namespace);
            }
        }
        heard
    }

    /// Other nodes' users of a channel, each once, in the order this node learned of them.
    fn remote_users(view: &View, namespace: &str, channel: &str) -> Vec<Remote> {
        let Some(nodes) = view.get(namespace).and_then(|c| c.get(channel)) else {
            return Vec::new();
        };
        let mut users: HashMap<&str, &Remote> = HashMap::new();
        for remote in nodes.values() {
            for (k, r) in remote {
                let e = users.entry(k).or_insert(r);
                if r.arrived > e.arrived {
                    *e = r;
                }
            }
        }
        let mut users: Vec<Remote> = users.into_values().cloned().collect();
        users.sort_by_key(|r| std::cmp::Reverse(r.arrived));
        users
    }

    fn remote_has(view: &View, namespace: &str, channel: &str, user: &str) -> bool {
        view.get(namespace)
            .and_then(|c| c.get(channel))
            .is_some_and(|nodes| nodes.values().any(|u| u.contains_key(user)))
    }

    /// This node's members first (newest first), then the other nodes' not here.
    fn merged(
        &self,
        view: &View,
        namespace: &str,
        channel: &str,
        local: Vec<Arc<PresenceMember>>,
    ) -> Vec<Arc<PresenceMember>> {
        let here: HashSet<Box<str>> = local.iter().map(|m| m.key.clone()).collect();
        let mut all = local;
        all.extend(
            Self::remote_users(view, namespace, channel)
                .into_iter()
                .filter(|r| !here.contains(&r.member.key))
                .map(|r| r.member),
        );
        all
    }
}

impl Presence for ClusterPresence {
    fn listen(&self, namespace: &str, listener: Weak<dyn Listener>) {
        self.listeners.write().insert(namespace.into(), listener);
    }

    fn edge_tells_app(&self) -> bool {
        false
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.outbound.metrics()
    }

    fn settled(&self) -> super::Settling<'_> {
        self.outbound.settled()
    }

    fn subscriptions(&self, namespace: &str, channel: &str, here: usize, counted: bool) -> usize {
        if self.set_count(namespace, channel, self.node, here) {
            self.outbound.send(Change::Subscriptions {
                namespace: namespace.into(),
                channel: channel.into(),
                count: here,
                counted,
            });
        }
        let counts = self.counts.lock();
        let others: usize = counts
            .get(&(namespace.into(), channel.into()))
            .map_or(0, |nodes| {
                nodes
                    .iter()
                    .filter(|(n, _)| **n != self.node)
                    .map(|(_, c)| c)
                    .sum()
            });
        here + others
    }

    fn join(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
        member: Arc<PresenceMember>,
        max_users: usize,
    ) -> Result<Joined, Full> {
        let view = self.shard(namespace, channel);
        let elsewhere = Self::remote_has(&view, namespace, channel, &member.key);
        if max_users > 0
            && !elsewhere
            && self.user_count_in(&view, namespace, channel) >= max_users
            && !self.local.present(namespace, channel, &[&member.key])[0]
        {
            return Err(Full);
        }
        let joined = self
            .local
            .join(namespace, channel, conn, member.clone(), 0)?;
        if joined.first {
            self.outbound.send(Change::Join {
                namespace: namespace.into(),
                channel: channel.into(),
                member,
            });
        }
        Ok(Joined {
            first: joined.first && !elsewhere,
            members: self.merged(&view, namespace, channel, joined.members),
        })
    }

    fn leave(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
    ) -> Option<Arc<PresenceMember>> {
        let view = self.shard(namespace, channel);
        let last_here = self.local.leave(namespace, channel, conn)?;
        self.outbound.send(Change::Leave {
            namespace: namespace.into(),
            channel: channel.into(),
            user: last_here.key.clone(),
        });
        (!Self::remote_has(&view, namespace, channel, &last_here.key)).then_some(last_here)
    }

    fn member(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
    ) -> Option<Arc<PresenceMember>> {
        self.local.member(namespace, channel, conn)
    }

    fn handed_over(&self, namespace: &str, token: &str) {
        self.outbound.send(Change::HandedOver {
            namespace: namespace.into(),
            token: token.into(),
        });
    }

    fn members(&self, namespace: &str, channel: &str) -> Vec<Arc<PresenceMember>> {
        let view = self.shard(namespace, channel);
        let local = self.local.members(namespace, channel);
        self.merged(&view, namespace, channel, local)
    }

    fn user_count(&self, namespace: &str, channel: &str) -> usize {
        let view = self.shard(namespace, channel);
        self.user_count_in(&view, namespace, channel)
    }

    fn present(&self, namespace: &str, channel: &str, users: &[&str]) -> Vec<bool> {
        let view = self.shard(namespace, channel);
        let here = self.local.present(namespace, channel, users);
        users
            .iter()
            .zip(here)
            .map(|(u, here)| here || Self::remote_has(&view, namespace, channel, u))
            .collect()
    }
}

impl ClusterPresence {
    fn user_count_in(&self, view: &View, namespace: &str, channel: &str) -> usize {
        let local = self.local.members(namespace, channel);
        self.merged(view, namespace, channel, local).len()
    }
}
