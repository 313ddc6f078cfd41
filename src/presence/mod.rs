//! Who is present where: one presence for both WebSocket edges and Pusher's watchlists.
//!
//! A presence channel counts users, not connections: a user with two tabs joins once and
//! leaves when the last tab does. [`Presence`] is that bookkeeping and nothing else, free
//! of any protocol: [`Presence::join`] says whether this was the user's first connection
//! on the channel (so `member_added` / `presence:joining` go out once),
//! [`Presence::leave`] whether it was the last (so `member_removed` /
//! `presence:leaving` go out once), and the queries answer the member lists and counts
//! that `subscription_succeeded`, `presence:subscribed`, the HTTP API and the webhooks
//! need. Pusher's signed-in users are one more set per app ([`SIGNED_IN`]), so "online"
//! and "offline" for watchlists follow the same first-join / last-leave rule. Who a
//! member is (user `7` and `"7"` are one) is Laravel's rule, in
//! [`crate::laravel::PresenceMember`].
//!
//! The trait is synchronous, and its outcomes are plain values that the edge applies
//! after the call: it encodes the frames from them and pushes them, outside every lock
//! of its registries. Synchronous because both edges settle a subscription within the
//! turn that reads it (Pusher's `ws::Handler::on_message` answers `subscribe` before it
//! reads the client's next message, socket.io's close leaves every channel before the
//! outbox closes); an awaited join would need a pending-subscription state on both edges
//! for an implementation that never waits. A Redis presence (issue 13) keeps this trait
//! if it answers from a view held in memory and brings the cluster's changes in through
//! the backplane (as centrifuge publishes joins and leaves through its broker); one that
//! must wait for Redis makes the trait async, and both edges then need that pending state.
//!
//! Nothing here runs under an edge's shard lock. What orders the announcements is a
//! [`Turn`]: joins and leaves of one channel take turns, and the edge pushes the frames
//! an outcome calls for before it gives the turn back. Without it, a user's last leave
//! and next join, decided in that order on two threads, could be announced in the
//! other order and leave everyone else believing the user gone.

mod cluster;
mod redis_link;

pub use cluster::ClusterPresence;
pub use redis_link::{start as start_cluster, Link};

use crate::broker::SubscriberId;
use crate::laravel::PresenceMember;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

/// The set of a namespace's signed-in users (Pusher's `pusher:signin`), kept beside its
/// presence channels. A space is in no channel name ([`crate::edge_policy`]), so no
/// client's channel can be this one.
pub const SIGNED_IN: &str = "#signed in";

/// A member of a channel of a namespace: (namespace, channel, member).
pub type Entry = (Box<str>, Box<str>, Arc<PresenceMember>);

/// Why a join was refused: the channel already has its most users, and this is a new one.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// What a join changed.
pub struct Joined {
    /// This was the user's first connection on the channel: announce the user.
    pub first: bool,
    /// Everyone present once the join is done, the joiner included; the user whose
    /// latest connection joined last comes first (laravel-echo-server's order).
    pub members: Vec<Arc<PresenceMember>>,
}

/// A future [`Presence::settled`] returns.
pub type Settling<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// What the app's webhooks say about a channel: once for the whole cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    Occupied,
    Vacated,
    MemberAdded(Box<str>),
    MemberRemoved(Box<str>),
}

/// What this node's clients on a channel must hear of a change another node made.
#[derive(Debug)]
pub enum Heard {
    /// A user none of them knew present arrived (`member_added`, `presence:joining`,
    /// a watchlist's `online`).
    Arrived(Arc<PresenceMember>),
    /// The last of a user's connections anywhere left.
    Departed(Arc<PresenceMember>),
}

/// Whoever announces one namespace's presence to this node's clients (an edge, a Pusher
/// app): a cluster's presence tells it what the other nodes changed, and what the app
/// is to be told once for all nodes.
pub trait Listener: Send + Sync {
    /// Another node changed who is on `channel`: take the channel's [`Turn`], call
    /// `apply` (it updates the view and says what the clients hear), push the frames
    /// before giving the turn back.
    fn changed(&self, channel: &str, apply: &mut dyn FnMut() -> Vec<Heard>);
    /// The cluster's verdict for the app's webhooks.
    fn tell_app(&self, channel: &str, told: Told);
    /// Another node's count of `channel`'s subscriptions changed (apps that tell
    /// subscribers the count): tell this node's the new total.
    fn counted(&self, _channel: &str) {}
    /// Another node took over what `token` names (a socket.io session handed over, by
    /// its private id), after it joined that session's presence: what this node kept of
    /// it ends now.
    fn taken(&self, _token: &str) {}
}

/// Presence bookkeeping: which users are on which channel of which namespace (a Pusher
/// app, the socket.io edge), through which connections. Calls are cheap and never wait.
pub trait Presence: Send + Sync {
    /// Who hears, for `namespace`, what other nodes change and what the app is told.
    /// A single node has no other nodes: it keeps nobody.
    fn listen(&self, _namespace: &str, _listener: std::sync::Weak<dyn Listener>) {}

    /// Whether the edge tells the app (webhooks) from each outcome: true for a single
    /// node; a cluster's presence tells it through [`Listener::tell_app`] instead, once
    /// for all nodes.
    fn edge_tells_app(&self) -> bool {
        true
    }

    /// Resolves once every change made so far is where it goes (a cluster: written to
    /// Redis, and the app told): shutdown waits for it (boundedly) before its webhooks.
    fn settled(&self) -> Settling<'_> {
        Box::pin(std::future::ready(()))
    }

    /// Rows this presence adds to /metrics (a cluster's: `herald_cluster_presence_*`).
    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }

    /// `channel` has `here` subscriptions on this node now (from none: it is occupied;
    /// none: vacated); `counted`: its app tells subscribers the count. Returns its
    /// subscriptions on every node, as far as this node knows. A cluster writes each
    /// change for the other nodes, and tells the app of occupancy once.
    fn subscriptions(
        &self,
        _namespace: &str,
        _channel: &str,
        here: usize,
        _counted: bool,
    ) -> usize {
        here
    }

    /// `conn` joins `channel` as `member`. A new user is refused when the channel already
    /// has `max_users` users (0: no limit). A connection already present joins nothing
    /// (first is false): a connection is one user on a channel, so to change who it is,
    /// leave first.
    fn join(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
        member: Arc<PresenceMember>,
        max_users: usize,
    ) -> Result<Joined, Full>;

    /// The member `conn` is on `channel` (None: it is not present there).
    fn member(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
    ) -> Option<Arc<PresenceMember>>;

    /// This node took over what `token` names from another node (a socket.io session
    /// handed over) and joined its presence: once this node's changes so far are where
    /// they go, every other node's [`Listener::taken`] of `namespace` hears it, and the
    /// node that kept it ends its copy. A single node has no other nodes.
    fn handed_over(&self, _namespace: &str, _token: &str) {}

    /// `conn` leaves `channel`: the member it was, when that was the user's last
    /// connection there (announce the departure); None otherwise, or when it was not
    /// present at all (leaving twice is harmless).
    fn leave(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
    ) -> Option<Arc<PresenceMember>>;

    /// Everyone present, in [`Joined::members`]' order.
    fn members(&self, namespace: &str, channel: &str) -> Vec<Arc<PresenceMember>>;

    /// How many users are present (not connections).
    fn user_count(&self, namespace: &str, channel: &str) -> usize;

    /// For each user key in `users`, whether that user is present.
    fn present(&self, namespace: &str, channel: &str, users: &[&str]) -> Vec<bool>;
}

/// One user on one channel.
struct User {
    /// The user's connections, oldest first, with the join number of each; the member
    /// shown for the user is its latest connection's (the info it last joined with).
    conns: Vec<(SubscriberId, u64, Arc<PresenceMember>)>,
}

impl User {
    fn latest(&self) -> (u64, &Arc<PresenceMember>) {
        let (_, n, m) = self.conns.last().expect("a present user has a connection");
        (*n, m)
    }
}

#[derive(Default)]
struct Channel {
    users: HashMap<Box<str>, User>,
    /// connection → user key
    by_conn: HashMap<SubscriberId, Box<str>>,
    /// Each user once, by the join number of its latest connection.
    order: BTreeMap<u64, Box<str>>,
    joins: u64,
}

impl Channel {
    fn members(&self) -> Vec<Arc<PresenceMember>> {
        self.order
            .values()
            .rev()
            .map(|k| self.users[k].latest().1.clone())
            .collect()
    }
}

/// namespace → channel → presence
type Namespaces = HashMap<Box<str>, HashMap<Box<str>, Channel>>;

const SHARDS: usize = 16;

/// The in-memory presence of a single herald: sharded by channel, each shard behind a
/// mutex held only for the bookkeeping itself.
pub struct MemoryPresence {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Namespaces>]>,
}

impl Default for MemoryPresence {
    fn default() -> Self {
        MemoryPresence {
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl MemoryPresence {
    fn shard(&self, namespace: &str, channel: &str) -> MutexGuard<'_, Namespaces> {
        let h = self.hasher.hash_one((namespace, channel)) as usize;
        self.shards[h % SHARDS].lock()
    }

    fn with<R>(&self, namespace: &str, channel: &str, f: impl FnOnce(&Channel) -> R) -> Option<R> {
        let shard = self.shard(namespace, channel);
        shard.get(namespace)?.get(channel).map(f)
    }
}

impl MemoryPresence {
    /// Every user on every channel (namespace, channel, its latest connection's member):
    /// what a node of a cluster writes again when Redis lost it.
    pub fn everyone(&self) -> Vec<Entry> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            for (ns, channels) in shard.lock().iter() {
                for (ch, c) in channels {
                    for user in c.users.values() {
                        all.push((ns.clone(), ch.clone(), user.latest().1.clone()));
                    }
                }
            }
        }
        all
    }
}

impl Presence for MemoryPresence {
    fn join(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
        member: Arc<PresenceMember>,
        max_users: usize,
    ) -> Result<Joined, Full> {
        let mut shard = self.shard(namespace, channel);
        let ns = shard.entry(namespace.into()).or_default();
        let full = |ch: Option<&Channel>| {
            max_users > 0
                && ch.is_some_and(|ch| {
                    !ch.users.contains_key(&*member.key) && ch.users.len() >= max_users
                })
        };
        if full(ns.get(channel)) {
            return Err(Full);
        }
        let ch = ns.entry(channel.into()).or_default();
        if ch.by_conn.contains_key(&conn) {
            return Ok(Joined {
                first: false,
                members: ch.members(),
            });
        }
        ch.joins += 1;
        let n = ch.joins;
        ch.by_conn.insert(conn, member.key.clone());
        ch.order.insert(n, member.key.clone());
        let first = match ch.users.get_mut(&*member.key) {
            Some(user) => {
                ch.order.remove(&user.latest().0);
                user.conns.push((conn, n, member));
                false
            }
            None => {
                let key = member.key.clone();
                ch.users.insert(
                    key,
                    User {
                        conns: vec![(conn, n, member)],
                    },
                );
                true
            }
        };
        Ok(Joined {
            first,
            members: ch.members(),
        })
    }

    fn leave(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
    ) -> Option<Arc<PresenceMember>> {
        let mut shard = self.shard(namespace, channel);
        let ns = shard.get_mut(namespace)?;
        let ch = ns.get_mut(channel)?;
        let key = ch.by_conn.remove(&conn)?;
        let user = ch
            .users
            .get_mut(&key)
            .expect("a connection's user is present");
        let (was_latest, _) = user.latest();
        let at = user.conns.iter().position(|(c, _, _)| *c == conn)?;
        let (_, _, member) = user.conns.remove(at);
        let last = if user.conns.is_empty() {
            ch.users.remove(&key);
            ch.order.remove(&was_latest);
            Some(member)
        } else {
            let (now_latest, _) = user.latest();
            if now_latest != was_latest {
                ch.order.remove(&was_latest);
                ch.order.insert(now_latest, key);
            }
            None
        };
        if ch.users.is_empty() {
            ns.remove(channel);
            if ns.is_empty() {
                shard.remove(namespace);
            }
        }
        last
    }

    fn member(
        &self,
        namespace: &str,
        channel: &str,
        conn: SubscriberId,
    ) -> Option<Arc<PresenceMember>> {
        self.with(namespace, channel, |ch| {
            let user = ch.users.get(ch.by_conn.get(&conn)?)?;
            let (_, _, m) = user.conns.iter().find(|(c, _, _)| *c == conn)?;
            Some(m.clone())
        })?
    }

    fn members(&self, namespace: &str, channel: &str) -> Vec<Arc<PresenceMember>> {
        self.with(namespace, channel, Channel::members)
            .unwrap_or_default()
    }

    fn user_count(&self, namespace: &str, channel: &str) -> usize {
        self.with(namespace, channel, |ch| ch.users.len())
            .unwrap_or(0)
    }

    fn present(&self, namespace: &str, channel: &str, users: &[&str]) -> Vec<bool> {
        self.with(namespace, channel, |ch| {
            users.iter().map(|u| ch.users.contains_key(*u)).collect()
        })
        .unwrap_or_else(|| vec![false; users.len()])
    }
}

/// How many turn locks a [`Scope`] has; channels that share one take turns together.
const TURNS: usize = 64;

/// One namespace of the shared presence, as an edge (or one Pusher app) uses it: joins
/// and leaves go through a channel's [`Turn`], queries straight to the presence.
pub struct Scope {
    presence: Arc<dyn Presence>,
    namespace: Box<str>,
    hasher: foldhash::fast::RandomState,
    turns: Box<[Mutex<()>]>,
}

/// A channel's turn: joins and leaves go through it, and the frames their outcomes call
/// for are pushed before it is dropped, so every connection hears one channel's
/// arrivals and departures in the order the presence decided them.
pub struct Turn<'a> {
    scope: &'a Scope,
    channel: &'a str,
    _held: MutexGuard<'a, ()>,
}

impl Scope {
    pub fn new(presence: Arc<dyn Presence>, namespace: &str) -> Self {
        Scope {
            presence,
            namespace: namespace.into(),
            hasher: Default::default(),
            turns: (0..TURNS).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Wait for `channel`'s turn. Never take it while holding a registry's shard lock.
    pub fn turn<'a>(&'a self, channel: &'a str) -> Turn<'a> {
        let i = self.hasher.hash_one(channel) as usize % TURNS;
        Turn {
            scope: self,
            channel,
            _held: self.turns[i].lock(),
        }
    }

    pub fn members(&self, channel: &str) -> Vec<Arc<PresenceMember>> {
        self.presence.members(&self.namespace, channel)
    }

    pub fn user_count(&self, channel: &str) -> usize {
        self.presence.user_count(&self.namespace, channel)
    }

    pub fn present(&self, channel: &str, users: &[&str]) -> Vec<bool> {
        self.presence.present(&self.namespace, channel, users)
    }

    /// [`Presence::member`] of `conn` on `channel`.
    pub fn member(&self, channel: &str, conn: SubscriberId) -> Option<Arc<PresenceMember>> {
        self.presence.member(&self.namespace, channel, conn)
    }

    /// [`Presence::handed_over`] in this scope's namespace.
    pub fn handed_over(&self, token: &str) {
        self.presence.handed_over(&self.namespace, token)
    }

    /// [`Presence::listen`] for this scope's namespace.
    pub fn listen(&self, listener: std::sync::Weak<dyn Listener>) {
        self.presence.listen(&self.namespace, listener)
    }

    /// [`Presence::edge_tells_app`].
    pub fn edge_tells_app(&self) -> bool {
        self.presence.edge_tells_app()
    }

    /// [`Presence::subscriptions`] of `channel`.
    pub fn subscriptions(&self, channel: &str, here: usize, counted: bool) -> usize {
        self.presence
            .subscriptions(&self.namespace, channel, here, counted)
    }
}

impl Turn<'_> {
    /// [`Presence::join`] on this turn's channel.
    pub fn join(
        &self,
        conn: SubscriberId,
        member: Arc<PresenceMember>,
        max_users: usize,
    ) -> Result<Joined, Full> {
        let s = self.scope;
        s.presence
            .join(&s.namespace, self.channel, conn, member, max_users)
    }

    /// [`Presence::leave`] on this turn's channel.
    pub fn leave(&self, conn: SubscriberId) -> Option<Arc<PresenceMember>> {
        let s = self.scope;
        s.presence.leave(&s.namespace, self.channel, conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user_id: &str, info: &str) -> Arc<PresenceMember> {
        Arc::new(
            PresenceMember::from_channel_data(&format!(
                r#"{{"user_id":{user_id},"user_info":{info}}}"#
            ))
            .unwrap(),
        )
    }

    fn keys(members: &[Arc<PresenceMember>]) -> Vec<&str> {
        members.iter().map(|m| &*m.key).collect()
    }

    #[test]
    fn first_join_and_last_leave_per_user_across_connections() {
        let p = MemoryPresence::default();
        let ann = member("1", r#"{"name":"Ann"}"#);
        let j = p.join("app", "presence-r", 10, ann.clone(), 0).unwrap();
        assert!(j.first);
        assert_eq!(keys(&j.members), ["1"]);
        let j = p.join("app", "presence-r", 11, ann.clone(), 0).unwrap();
        assert!(!j.first, "a second tab of the same user");
        assert_eq!(keys(&j.members), ["1"]);
        assert_eq!(p.user_count("app", "presence-r"), 1);
        assert!(p.leave("app", "presence-r", 10).is_none(), "a tab remains");
        let last = p.leave("app", "presence-r", 11).expect("the last tab");
        assert_eq!(&*last.key, "1");
        assert_eq!(p.user_count("app", "presence-r"), 0);
        assert!(p.leave("app", "presence-r", 11).is_none(), "leaving twice");
        assert!(p.shards.iter().all(|s| s.lock().is_empty()), "nothing kept");
    }

    #[test]
    fn a_number_and_its_string_are_one_user() {
        let p = MemoryPresence::default();
        assert!(p.join("app", "c", 1, member("7", "null"), 0).unwrap().first);
        let j = p.join("app", "c", 2, member(r#""7""#, "null"), 0).unwrap();
        assert!(!j.first);
        assert_eq!(j.members.len(), 1);
        assert!(p.leave("app", "c", 1).is_none());
        assert!(p.leave("app", "c", 2).is_some());
    }

    #[test]
    fn members_newest_first_with_their_latest_info_and_counts() {
        let p = MemoryPresence::default();
        p.join("app", "c", 1, member("1", r#""a1""#), 0).unwrap();
        p.join("app", "c", 2, member("2", r#""b""#), 0).unwrap();
        let j = p.join("app", "c", 3, member("1", r#""a2""#), 0).unwrap();
        let shown = |ms: &[Arc<PresenceMember>]| -> Vec<String> {
            ms.iter()
                .map(|m| format!("{}={}", m.key, m.info.as_ref().unwrap().get()))
                .collect()
        };
        assert_eq!(shown(&j.members), [r#"1="a2""#, r#"2="b""#]);
        assert_eq!(p.user_count("app", "c"), 2);
        // The newest tab leaves: the user is shown as its remaining tab joined.
        assert!(p.leave("app", "c", 3).is_none());
        assert_eq!(shown(&p.members("app", "c")), [r#"2="b""#, r#"1="a1""#]);
        assert_eq!(p.present("app", "c", &["2", "3", "1"]), [true, false, true]);
        let info = |m: Option<Arc<PresenceMember>>| m.map(|m| m.channel_data());
        assert_eq!(
            info(p.member("app", "c", 1)).as_deref(),
            Some(r#"{"user_id":1,"user_info":"a1"}"#),
            "each connection's own member"
        );
        assert_eq!(info(p.member("app", "c", 3)), None, "it left");
        assert_eq!(info(p.member("app", "nowhere", 1)), None);
        assert_eq!(p.present("app", "nowhere", &["1"]), [false]);
        assert!(p.members("other", "c").is_empty(), "namespaces are apart");
    }

    #[test]
    fn rejoining_on_the_same_connection_changes_nothing() {
        let p = MemoryPresence::default();
        assert!(p.join("app", "c", 1, member("1", "null"), 0).unwrap().first);
        let j = p.join("app", "c", 1, member("1", "null"), 0).unwrap();
        assert!(!j.first);
        assert!(p.leave("app", "c", 1).is_some(), "one leave undoes it");
    }

    #[test]
    fn a_full_channel_refuses_new_users_only() {
        let p = MemoryPresence::default();
        p.join("app", "c", 1, member("1", "null"), 2).unwrap();
        p.join("app", "c", 2, member("2", "null"), 2).unwrap();
        assert_eq!(
            p.join("app", "c", 3, member("3", "null"), 2).err(),
            Some(Full)
        );
        assert!(
            p.join("app", "c", 4, member("2", "null"), 2).is_ok(),
            "a known user"
        );
        assert_eq!(p.user_count("app", "c"), 2);
        assert!(
            p.join("app", "c", 5, member("3", "null"), 0).is_ok(),
            "0: no limit"
        );
    }

    #[test]
    fn joins_go_through_a_channels_turn() {
        let scope = Scope::new(Arc::new(MemoryPresence::default()), "app");
        let turn = scope.turn("presence-r");
        assert!(turn.join(1, member("1", "null"), 0).unwrap().first);
        drop(turn);
        assert_eq!(scope.user_count("presence-r"), 1);
        assert_eq!(keys(&scope.members("presence-r")), ["1"]);
        assert!(scope.turn("presence-r").leave(1).is_some());
    }
}
