//! One app's channels: which connections are subscribed, what was last sent, and the
//! presence announcements.
//!
//! Sharded by channel name, each shard behind a read-write lock: publications take a
//! read lock (cache channels a write lock, to keep their last event), subscriptions a
//! write lock on one shard. Who is present is the app's namespace of the shared
//! [`crate::presence`], which counts users once however many connections they have:
//! `member_added` goes out on a user's first connection and `member_removed` after the
//! last one, encoded from its outcome and pushed during the channel's presence turn,
//! never under a shard lock. Frames are encoded once by the caller and the same bytes
//! are pushed to every subscriber's outbox.
//! A cache channel keeps its last server event (never a client event) for the cache
//! TTL (Pusher's 30 minutes); a channel whose event expired and that nobody is
//! subscribed to is swept by the next cache publication after it expired.
//! The webhook events these changes make (occupied, vacated, member added and removed,
//! cache miss; none for `#server-to-user-` channels) are queued under the same shard
//! lock, or within the same presence turn, so that one channel's events reach the app
//! in the order they happened.
//!
//! Apps with subscription counts tell a non-presence channel's subscribers how many
//! connections it has (`pusher_internal:subscription_count`) when that changes: at once
//! if the channel was last told more than [`COUNT_INTERVAL`] ago, otherwise the channel
//! is marked and [`Channels::flush_counts`] (the app's timer) sends the count then, so
//! a thousand subscribers arriving together cost a few counts, not a thousand times a
//! thousand frames.
//!
//! For recovery ([`super::resume`]) each channel remembers the offset of the last
//! numbered publication it handed out: a connection that joins receives exactly the
//! publications after it ([`Subscribed::start`]). It is written during the delivery
//! (under the broker's stream lock, so in offset order) and read under the shard's write
//! lock when a connection joins, which is what makes the boundary exact. A channel with
//! no subscriber here has no entry to remember it in, so a joining connection first
//! holds one open ([`Channel::joining`]), then reads where the broker's stream stands,
//! then joins: what was handed out between the read and the join is remembered, and
//! the connection starts after it, not at the read (where it would be owed it). Each
//! subscription also counts the numbered frames it was sent ([`Channels::sent`]), so a
//! resume knows how many events precede the channel's last offset without a history
//! reaching back to the subscription.

use super::protocol;
use super::webhooks::{Event, Webhooks};
use crate::broker::{Epoch, Offset, SubscriberId};
use crate::laravel::{ChannelKind, PresenceMember};
use crate::outbox::Outbox;
use crate::presence::{Heard, MemoryPresence, Scope, Told};
use crate::sharded::Sharded;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// The least time between two subscription counts sent on one channel.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(1);

/// One Pusher connection as the registries see it.
pub struct Connection {
    pub id: SubscriberId,
    pub socket_id: Box<str>,
    pub outbox: Arc<Outbox>,
    /// Set by `terminate_connections`: the session closes at its next turn.
    pub terminated: AtomicBool,
}

impl Connection {
    pub fn terminate(&self, frames: &[Bytes]) {
        self.terminated.store(true, Ordering::Relaxed);
        self.outbox.push_all(frames);
    }
}

/// A connection subscribed to a channel, and how many numbered frames it was sent
/// there (written during deliveries, which one channel's stream lock orders).
struct Subscriber {
    conn: Arc<Connection>,
    sent: AtomicU64,
}

#[derive(Default)]
struct Channel {
    subscribers: Vec<Subscriber>,
    /// Cache channels only: the last event's frame, when it was published, and its
    /// offset (None: published while the channel had no stream).
    last: Option<(Bytes, Instant, Option<Offset>)>,
    /// When the subscribers were last told the subscription count.
    counted: Option<Instant>,
    seen: Seen,
    /// Connections between reading where the channel's stream stands and joining
    /// ([`Channels::subscribe`]): the entry is kept while there are any.
    joining: usize,
}

impl Channel {
    /// Nobody is on it or about to be, and it holds no cached event: it can go.
    fn unused(&self) -> bool {
        self.subscribers.is_empty() && self.joining == 0 && self.last.is_none()
    }
}

/// The offset of the last numbered publication a channel handed out: two atomics, as
/// deliveries hold only the shard's read lock (one channel's deliveries never overlap:
/// the broker's stream lock orders them); seq 0 is "none yet".
#[derive(Default)]
struct Seen {
    epoch: AtomicU64,
    seq: AtomicU64,
}

impl Seen {
    fn set(&self, offset: Option<Offset>) {
        if let Some(o) = offset {
            self.epoch.store(o.epoch.0, Ordering::Relaxed);
            self.seq.store(o.seq, Ordering::Relaxed);
        }
    }

    fn get(&self) -> Option<Offset> {
        match self.seq.load(Ordering::Relaxed) {
            0 => None,
            seq => Some(Offset {
                epoch: Epoch(self.epoch.load(Ordering::Relaxed)),
                seq,
            }),
        }
    }
}

/// `pusher_internal:subscription_count` with `count` to every subscriber of `name`.
fn tell_count(name: &str, ch: &Channel, count: usize) {
    let data = format!("{{\"subscription_count\":{count}}}");
    let frame = protocol::event("pusher_internal:subscription_count", Some(name), &data);
    for s in &ch.subscribers {
        s.conn.outbox.push(frame.clone());
    }
}

/// What a new subscriber is owed once subscribed.
pub struct Subscribed {
    /// `pusher_internal:subscription_succeeded`'s data.
    pub succeeded: String,
    /// Cache channels: the last event, or None for `pusher:cache_miss`.
    pub cached: Option<Option<Bytes>>,
    /// The offset of the cached event, when it has one.
    pub cached_at: Option<Offset>,
    /// Where the connection starts: it receives every numbered publication after it
    /// (None: the channel has no stream).
    pub start: Option<Offset>,
}

/// What [`Channels::add`] found.
struct Added {
    cached: Option<Option<Bytes>>,
    cached_at: Option<Offset>,
    start: Option<Offset>,
}

/// Why a subscription was refused.
pub enum Refused {
    TooManyMembers,
}

/// How cache channels' names start.
pub const CACHE_PREFIXES: [&str; 4] = [
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
];

/// Cache channels (`cache-`, `private-cache-`, `private-encrypted-cache-`, `presence-cache-`)
/// keep their last event for new subscribers.
pub fn is_cache(name: &str) -> bool {
    CACHE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Pusher's own channels (`#server-to-user-{id}`, which pusher-js joins after signin):
/// not the app's channels, so no webhooks or subscription counts about them.
fn is_internal(name: &str) -> bool {
    name.starts_with('#')
}

#[derive(Serialize)]
struct PresenceData<'a> {
    presence: PresenceBody<'a>,
}

#[derive(Serialize)]
struct PresenceBody<'a> {
    ids: Vec<&'a str>,
    hash: BTreeMap<&'a str, Option<&'a RawValue>>,
    count: usize,
}

pub struct Channels {
    map: Sharded<Box<str>, Channel>,
    hooks: Webhooks,
    /// Apps with subscription counts: the channels whose count changed too soon after
    /// the last one sent.
    counts_due: Option<Mutex<HashSet<Box<str>>>>,
    /// How long a cache channel's last event is kept.
    cache_ttl: Duration,
    /// Cache channels holding an event, once each, in the order they fall due (the
    /// channel is looked at then, and put back if its event was replaced since).
    expiring: Mutex<VecDeque<(Instant, Box<str>)>>,
    /// The app's namespace of the shared presence.
    presence: Scope,
}

impl Default for Channels {
    fn default() -> Self {
        let presence = Scope::new(Arc::new(MemoryPresence::default()), "");
        Channels::new(
            Webhooks::default(),
            false,
            crate::config::CACHE_TTL,
            presence,
        )
    }
}

impl Channels {
    pub fn new(
        hooks: Webhooks,
        subscription_count: bool,
        cache_ttl: Duration,
        presence: Scope,
    ) -> Self {
        Channels {
            map: Sharded::new(SHARDS),
            hooks,
            counts_due: subscription_count.then(Mutex::default),
            cache_ttl,
            expiring: Mutex::default(),
            presence,
        }
    }

    /// The app's namespace of the shared presence (its signed-in users are there too).
    pub fn presence(&self) -> &Scope {
        &self.presence
    }

    /// The app's webhooks (client events are reported by the connection that sends them).
    pub fn hooks(&self) -> &Webhooks {
        &self.hooks
    }

    /// Add `conn` to `name`; on presence channels `member` is its user, refused when the
    /// channel has `max_members` users already (0: no limit) and this is a new one.
    /// `position` reads where the channel's stream stands (None: it has none), so the
    /// connection starts there or after what the channel handed out since
    /// ([`Subscribed::start`]); called with no lock held, the app following the stream.
    pub fn subscribe(
        &self,
        name: &str,
        conn: &Arc<Connection>,
        member: Option<PresenceMember>,
        max_members: usize,
        position: impl FnOnce() -> Option<Offset>,
    ) -> Result<Subscribed, Refused> {
        self.map.write(name).entry(name.into()).or_default().joining += 1;
        let stood = position();
        let Some(member) = member else {
            let added = self.add(name, conn, stood);
            return Ok(self.subscribed(name, "{}".into(), added));
        };
        let member = Arc::new(member);
        let turn = self.presence.turn(name);
        // Subscribed before joining, so that the channel is occupied before its first
        // member is added (a refused join leaves at once: the app hears neither).
        let added = self.add(name, conn, stood);
        let joined = match turn.join(conn.id, member.clone(), max_members) {
            Ok(joined) => joined,
            Err(_) => {
                self.remove(name, conn.id);
                return Err(Refused::TooManyMembers);
            }
        };
        if joined.first {
            if self.presence.edge_tells_app() {
                self.hooks.emit(Event::member_added(name, &member.key));
            }
            let data = member_json(&member.key, member.info.as_deref());
            let added = protocol::event("pusher_internal:member_added", Some(name), &data);
            self.relay(name, &added, Some(&conn.socket_id), None);
        }
        let body = PresenceBody {
            ids: joined.members.iter().map(|m| &*m.key).collect(),
            hash: joined
                .members
                .iter()
                .map(|m| (&*m.key, m.info.as_deref()))
                .collect(),
            count: joined.members.len(),
        };
        let data = serde_json::to_string(&PresenceData { presence: body }).expect("serializes");
        let subscribed = self.subscribed(name, data, added);
        drop(turn);
        Ok(subscribed)
    }

    /// What a subscription is answered with (and the cache miss it may make known).
    fn subscribed(&self, name: &str, succeeded: String, added: Added) -> Subscribed {
        if added.cached == Some(None) {
            self.hooks.emit(Event::cache_miss(name));
        }
        Subscribed {
            succeeded,
            cached: added.cached,
            cached_at: added.cached_at,
            start: added.start,
        }
    }

    /// Put `conn` among `name`'s subscribers (once), its stream having stood at `stood`
    /// when [`Channels::subscribe`] read it; for cache channels, the last event (None: a
    /// miss); and where the connection starts.
    fn add(&self, name: &str, conn: &Arc<Connection>, stood: Option<Offset>) -> Added {
        let mut shard = self.map.write(name);
        let ch = shard.entry(name.into()).or_default();
        ch.joining -= 1;
        let already = ch.subscribers.iter().any(|s| s.conn.id == conn.id);
        if ch.subscribers.is_empty() && !is_internal(name) {
            self.presence.subscriptions(name, 1, self.counts(name));
            if self.presence.edge_tells_app() {
                self.hooks.emit(Event::channel_occupied(name));
            }
        }
        if !already {
            ch.subscribers.push(Subscriber {
                conn: conn.clone(),
                sent: AtomicU64::new(0),
            });
            self.count_changed(name, ch);
        }
        // Every publication up to `stood` was handed out before it was read; one handed
        // out since (this entry was held open) is later in the same epoch. An earlier
        // `seen` was handed out while the app did not follow the stream (a cache
        // channel's entry outlives its subscribers).
        let start = match (ch.seen.get(), stood) {
            (Some(seen), Some(stood)) if seen.epoch == stood.epoch && seen.seq > stood.seq => {
                Some(seen)
            }
            (_, stood) => stood,
        };
        if !is_cache(name) {
            return Added {
                cached: None,
                cached_at: None,
                start,
            };
        }
        let expired = |(_, at, _): &(Bytes, Instant, _)| at.elapsed() >= self.cache_ttl;
        if ch.last.as_ref().is_some_and(expired) {
            ch.last = None;
        }
        Added {
            cached: Some(ch.last.as_ref().map(|(frame, _, _)| frame.clone())),
            cached_at: ch.last.as_ref().and_then(|(_, _, at)| *at),
            start,
        }
    }

    /// Another node changed who is on presence channel `name` ([`crate::presence::Listener::changed`]):
    /// this node's subscribers hear the arrivals and departures, within the turn.
    pub fn remote_change(&self, name: &str, apply: &mut dyn FnMut() -> Vec<Heard>) {
        let turn = self.presence.turn(name);
        for heard in apply() {
            let frame = match heard {
                Heard::Arrived(m) => {
                    let data = member_json(&m.key, m.info.as_deref());
                    protocol::event("pusher_internal:member_added", Some(name), &data)
                }
                Heard::Departed(m) => {
                    let data = member_json(&m.key, None);
                    protocol::event("pusher_internal:member_removed", Some(name), &data)
                }
            };
            self.relay(name, &frame, None, None);
        }
        drop(turn);
    }

    /// The cluster's verdict about `name`, for the app's webhooks.
    pub fn tell_app(&self, name: &str, told: Told) {
        self.hooks.emit(match told {
            Told::Occupied => Event::channel_occupied(name),
            Told::Vacated => Event::channel_vacated(name),
            Told::MemberAdded(user) => Event::member_added(name, &user),
            Told::MemberRemoved(user) => Event::member_removed(name, &user),
        });
    }

    /// Take `conn` out of `name`. On a presence channel, when this was its user's last
    /// connection there, the others hear `member_removed` (and the app its webhook).
    pub fn unsubscribe(&self, name: &str, conn: &Connection) {
        if ChannelKind::of(name) != ChannelKind::Presence {
            return self.remove(name, conn.id);
        }
        let turn = self.presence.turn(name);
        if let Some(member) = turn.leave(conn.id) {
            let data = member_json(&member.key, None);
            let removed = protocol::event("pusher_internal:member_removed", Some(name), &data);
            self.relay(name, &removed, Some(&conn.socket_id), None);
            if self.presence.edge_tells_app() {
                self.hooks.emit(Event::member_removed(name, &member.key));
            }
        }
        self.remove(name, conn.id);
        drop(turn);
    }

    fn remove(&self, name: &str, conn: SubscriberId) {
        let mut shard = self.map.write(name);
        let Some(ch) = shard.get_mut(name) else {
            return;
        };
        let before = ch.subscribers.len();
        ch.subscribers.retain(|s| s.conn.id != conn);
        if ch.subscribers.len() != before {
            if ch.subscribers.is_empty() {
                if !is_internal(name) {
                    let counted = self.counts(name);
                    let left = self.presence.subscriptions(name, 0, counted);
                    if self.presence.edge_tells_app() {
                        self.hooks.emit(Event::channel_vacated(name));
                    }
                    if counted && left > 0 {
                        // Only in a cluster: the channel's other subscriptions are on
                        // other nodes, which hear the count; the app hears it from here.
                        self.hooks.emit(Event::subscription_count(name, left));
                    }
                }
            } else {
                self.count_changed(name, ch);
            }
        }
        if ch.unused() {
            shard.remove(name);
        }
    }

    /// Push one encoded server event (the publication at `offset`, if numbered) to every
    /// subscriber of `name` but `except` (a socket id); cache channels remember it.
    /// Returns how many connections it reached.
    pub fn publish(
        &self,
        name: &str,
        frame: &Bytes,
        except: Option<&str>,
        offset: Option<Offset>,
    ) -> usize {
        if !is_cache(name) {
            return self.relay(name, frame, except, offset);
        }
        let now = Instant::now();
        let n = {
            let mut shard = self.map.write(name);
            let ch = shard.entry(name.into()).or_default();
            if ch.last.replace((frame.clone(), now, offset)).is_none() {
                self.expiring
                    .lock()
                    .push_back((now + self.cache_ttl, name.into()));
            }
            ch.seen.set(offset);
            send(ch, frame, except, offset.is_some())
        };
        self.sweep(now);
        n
    }

    /// Push a frame to every subscriber of `name` but `except`: a client event (never
    /// cached), a presence announcement (no offset), a non-cache server event.
    pub fn relay(
        &self,
        name: &str,
        frame: &Bytes,
        except: Option<&str>,
        offset: Option<Offset>,
    ) -> usize {
        self.map.with(name, |ch| {
            ch.map_or(0, |ch| {
                ch.seen.set(offset);
                send(ch, frame, except, offset.is_some())
            })
        })
    }

    /// Forget the cache channels' events that expired by `now`, and the channels nobody
    /// is subscribed to any more.
    fn sweep(&self, now: Instant) {
        loop {
            let name = {
                let mut expiring = self.expiring.lock();
                match expiring.front() {
                    Some((at, _)) if *at <= now => expiring.pop_front().unwrap().1,
                    _ => return,
                }
            };
            let mut shard = self.map.write(&name);
            let Some(ch) = shard.get_mut(&name) else {
                continue;
            };
            match ch.last {
                Some((_, at, _)) if at + self.cache_ttl > now => {
                    // Replaced since: due again when the new event expires.
                    self.expiring.lock().push_back((at + self.cache_ttl, name));
                }
                _ => {
                    ch.last = None;
                    if ch.unused() {
                        shard.remove(&name);
                    }
                }
            }
        }
    }

    /// Whether `name`'s subscribers are told how many they are: apps with subscription
    /// counts, for channels other than presence (which count users) and internal ones.
    fn counts(&self, name: &str) -> bool {
        self.counts_due.is_some()
            && ChannelKind::of(name) != ChannelKind::Presence
            && !is_internal(name)
    }

    /// `name`'s subscriptions changed: tell its subscribers now, or mark it for the
    /// next [`flush_counts`](Self::flush_counts) if they were told less than
    /// [`COUNT_INTERVAL`] ago.
    fn count_changed(&self, name: &str, ch: &mut Channel) {
        let Some(due) = self.counts_due.as_ref().filter(|_| self.counts(name)) else {
            return;
        };
        let now = Instant::now();
        if ch.counted.is_some_and(|t| now < t + COUNT_INTERVAL) {
            due.lock().insert(name.into());
        } else {
            self.send_count(name, ch, now);
        }
    }

    fn send_count(&self, name: &str, ch: &mut Channel, now: Instant) {
        ch.counted = Some(now);
        let count = self
            .presence
            .subscriptions(name, ch.subscribers.len(), true);
        tell_count(name, ch, count);
        self.hooks.emit(Event::subscription_count(name, count));
    }

    /// Another node's subscriptions of `name` changed (in a cluster): this node's
    /// subscribers hear the new total at once (the other node's counts are held back by
    /// [`COUNT_INTERVAL`] already); the app was told by that node.
    pub fn remote_count(&self, name: &str) {
        if !self.counts(name) {
            return;
        }
        let mut shard = self.map.write(name);
        let Some(ch) = shard.get_mut(name).filter(|ch| !ch.subscribers.is_empty()) else {
            return;
        };
        let count = self
            .presence
            .subscriptions(name, ch.subscribers.len(), true);
        tell_count(name, ch, count);
    }

    /// Send the counts held back by [`COUNT_INTERVAL`]: the app calls this once per
    /// interval.
    pub fn flush_counts(&self) {
        let Some(due) = &self.counts_due else { return };
        let names = std::mem::take(&mut *due.lock());
        let now = Instant::now();
        for name in names {
            let mut shard = self.map.write(&name);
            if let Some(ch) = shard.get_mut(&name) {
                if !ch.subscribers.is_empty() {
                    self.send_count(&name, ch, now);
                }
            }
        }
    }

    /// Subscriptions to `name` on this node.
    pub fn subscriptions(&self, name: &str) -> usize {
        self.map
            .with(name, |ch| ch.map_or(0, |ch| ch.subscribers.len()))
    }

    /// How many numbered frames `conn` was sent on `name` since it joined, and the
    /// channel's last numbered publication then ([`Subscribed::start`]'s counterpart):
    /// read under the write lock, so no delivery stands between the two. None when
    /// `conn` is not subscribed or nothing was numbered yet.
    pub fn sent(&self, name: &str, conn: SubscriberId) -> Option<(u64, Offset)> {
        let mut shard = self.map.write(name);
        let ch = shard.get_mut(name)?;
        let s = ch.subscribers.iter().find(|s| s.conn.id == conn)?;
        Some((s.sent.load(Ordering::Relaxed), ch.seen.get()?))
    }

    /// Channels with subscribers on this node whose names start with `prefix`.
    pub fn occupied(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for shard in self.map.shards() {
            for (name, ch) in shard.iter() {
                if name.starts_with(prefix) && !ch.subscribers.is_empty() {
                    out.push(name.to_string());
                }
            }
        }
        out
    }

    /// The user ids present on a presence channel.
    pub fn users(&self, name: &str) -> Vec<String> {
        self.presence
            .members(name)
            .iter()
            .map(|m| m.key.to_string())
            .collect()
    }
}

/// Push `frame` to every subscriber of `ch` but `except`, counting it as sent if it is
/// `numbered`; how many it reached.
fn send(ch: &Channel, frame: &Bytes, except: Option<&str>, numbered: bool) -> usize {
    let mut n = 0;
    for s in &ch.subscribers {
        if except != Some(&*s.conn.socket_id) {
            s.conn.outbox.push(frame.clone());
            if numbered {
                s.sent.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        }
    }
    n
}

/// `{"user_id","user_info"?}`: Pusher sends user ids as strings.
fn member_json(user_id: &str, info: Option<&RawValue>) -> String {
    #[derive(Serialize)]
    struct M<'a> {
        user_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_info: Option<&'a RawValue>,
    }
    serde_json::to_string(&M {
        user_id,
        user_info: info,
    })
    .expect("serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxLimits;

    fn conn(n: u64) -> Arc<Connection> {
        Arc::new(Connection {
            id: n,
            socket_id: format!("1.{n}").into(),
            outbox: Arc::new(Outbox::new(OutboxLimits::default())),
            terminated: AtomicBool::new(false),
        })
    }

    fn queued(c: &Connection) -> Vec<String> {
        let mut v = Vec::new();
        c.outbox.take_now(&mut v).unwrap();
        v.iter()
            .map(|b| String::from_utf8_lossy(&b[2..]).into_owned())
            .collect()
    }

    fn scope() -> Scope {
        Scope::new(Arc::new(MemoryPresence::default()), "app")
    }

    fn member(id: &str) -> Option<PresenceMember> {
        PresenceMember::from_channel_data(&format!(r#"{{"user_id":"{id}","user_info":{{"n":1}}}}"#))
    }

    #[test]
    fn presence_counts_users_once() {
        let ch = Channels::default();
        let (a1, a2, b) = (conn(1), conn(2), conn(3));
        let j = ch
            .subscribe("presence-r", &b, member("b"), 100, || None)
            .ok()
            .unwrap();
        assert_eq!(
            j.succeeded,
            r#"{"presence":{"ids":["b"],"hash":{"b":{"n":1}},"count":1}}"#
        );
        ch.subscribe("presence-r", &a1, member("a"), 100, || None)
            .ok()
            .unwrap();
        assert_eq!(queued(&b).len(), 1, "member_added for a's first connection");
        ch.subscribe("presence-r", &a2, member("a"), 100, || None)
            .ok()
            .unwrap();
        assert!(
            queued(&b).is_empty(),
            "no member_added for a's second connection"
        );
        assert_eq!(ch.subscriptions("presence-r"), 3);
        assert_eq!(ch.users("presence-r").len(), 2);
        ch.unsubscribe("presence-r", &a1);
        assert!(queued(&b).is_empty());
        ch.unsubscribe("presence-r", &a2);
        let got = queued(&b);
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("member_removed"), "{got:?}");
        assert!(ch
            .subscribe("presence-r", &conn(9), member("c"), 1, || None)
            .is_err());
    }

    #[test]
    fn one_frame_shared_by_every_subscriber() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        ch.subscribe("c", &a, None, 0, || None).ok().unwrap();
        ch.subscribe("c", &b, None, 0, || None).ok().unwrap();
        let f = protocol::event("E", Some("c"), "{}");
        assert_eq!(ch.publish("c", &f, None, None), 2);
        let (mut qa, mut qb) = (Vec::new(), Vec::new());
        a.outbox.take_now(&mut qa).unwrap();
        b.outbox.take_now(&mut qb).unwrap();
        assert_eq!(qa[0].as_ptr(), f.as_ptr());
        assert_eq!(qb[0].as_ptr(), f.as_ptr());
    }

    #[test]
    fn publish_excludes_socket_and_caches() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        ch.subscribe("orders", &a, None, 0, || None).ok().unwrap();
        ch.subscribe("orders", &b, None, 0, || None).ok().unwrap();
        let f = protocol::event("E", Some("orders"), "{}");
        assert_eq!(ch.publish("orders", &f, Some("1.1"), None), 1);
        assert!(queued(&a).is_empty());
        assert_eq!(queued(&b).len(), 1);
        assert_eq!(ch.publish("cache-x", &f, None, None), 0);
        let j = ch.subscribe("cache-x", &a, None, 0, || None).ok().unwrap();
        assert_eq!(j.cached, Some(Some(f)));
        let j = ch.subscribe("cache-y", &a, None, 0, || None).ok().unwrap();
        assert_eq!(j.cached, Some(None));
        assert_eq!(ch.occupied("cache-").len(), 2);
    }

    #[test]
    fn cache_channels_forget_their_event_after_the_ttl() {
        let ttl = Duration::from_millis(200);
        let ch = Channels::new(Webhooks::default(), false, ttl, scope());
        let f = protocol::event("E", Some("cache-x"), "{}");
        ch.publish("cache-x", &f, None, None);
        ch.publish("cache-gone", &f, None, None);
        let j = ch
            .subscribe("cache-x", &conn(1), None, 0, || None)
            .ok()
            .unwrap();
        assert_eq!(j.cached, Some(Some(f.clone())));
        std::thread::sleep(ttl + Duration::from_millis(50)); // time is what is tested
        let j = ch
            .subscribe("cache-x", &conn(2), None, 0, || None)
            .ok()
            .unwrap();
        assert_eq!(j.cached, Some(None), "expired");
        // The next cache publication sweeps the expired channel nobody subscribes to.
        assert!(ch.map.with("cache-gone", |c| c.is_some()));
        ch.publish("cache-y", &f, None, None);
        assert!(ch.map.with("cache-gone", |c| c.is_none()));
        assert!(ch.map.with("cache-x", |c| c.is_some()), "still subscribed");
    }

    #[test]
    fn a_joining_connection_starts_after_the_last_offset_handed_out() {
        let ch = Channels::default();
        let at = |seq| {
            Some(Offset {
                epoch: Epoch(9),
                seq,
            })
        };
        let (a, b, c) = (conn(1), conn(2), conn(3));
        let joined = ch.subscribe("orders", &a, None, 0, || at(0)).ok().unwrap();
        assert_eq!(joined.start, at(0), "where the stream stood");
        let f = protocol::event("E", Some("orders"), "{}");
        ch.publish("orders", &f, None, at(1));
        ch.relay("orders", &f, Some("1.1"), at(2)); // a client event, a left out
        ch.relay("orders", &f, None, None); // a presence announcement: not numbered
        let joined = ch.subscribe("orders", &b, None, 0, || at(2)).ok().unwrap();
        assert_eq!(joined.start, at(2), "b receives what comes after 2");
        // Handed out after the stream's position was read, before the connection joined
        // (another thread's delivery), on a channel nobody here was on: not owed to it.
        let fresh = |seq| {
            ch.publish("fresh", &f, None, at(seq));
            at(seq - 1)
        };
        let joined = ch
            .subscribe("fresh", &c, None, 0, || fresh(7))
            .ok()
            .unwrap();
        assert_eq!(joined.start, at(7), "c receives what comes after 7");
        // A cache channel's event outlived its subscribers, the stream moved on unheard.
        ch.publish("cache-x", &f, None, at(5));
        let joined = ch.subscribe("cache-x", &b, None, 0, || at(8)).ok().unwrap();
        assert_eq!((joined.start, joined.cached_at), (at(8), at(5)));
    }

    #[test]
    fn an_entry_held_open_for_a_joining_connection_outlives_its_last_subscriber_then_goes() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        let at = |seq| {
            Some(Offset {
                epoch: Epoch(9),
                seq,
            })
        };
        ch.subscribe("orders", &a, None, 0, || at(0)).ok().unwrap();
        // `a` leaves while `b` reads the stream's position, and one more is handed out.
        let leaves = || {
            ch.unsubscribe("orders", &a);
            let f = protocol::event("E", Some("orders"), "{}");
            ch.publish("orders", &f, None, at(4));
            at(3)
        };
        let joined = ch.subscribe("orders", &b, None, 0, leaves).ok().unwrap();
        assert_eq!(joined.start, at(4), "the entry was kept: 4 was seen");
        ch.unsubscribe("orders", &b);
        assert!(
            ch.map.with("orders", |c| c.is_none()),
            "forgotten once unused"
        );
    }

    #[test]
    fn client_events_are_never_cached() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        ch.subscribe("private-cache-x", &a, None, 0, || None)
            .ok()
            .unwrap();
        let f = protocol::event("client-typing", Some("private-cache-x"), "{}");
        assert_eq!(ch.relay("private-cache-x", &f, Some("1.1"), None), 0);
        let j = ch
            .subscribe("private-cache-x", &b, None, 0, || None)
            .ok()
            .unwrap();
        assert_eq!(j.cached, Some(None));
    }

    #[test]
    fn subscription_counts_are_sent_at_once_then_held_back_for_the_interval() {
        let ch = Channels::new(Webhooks::default(), true, crate::config::CACHE_TTL, scope());
        let (a, b, c) = (conn(1), conn(2), conn(3));
        let count = |n: usize| {
            format!(
                r#"{{"event":"pusher_internal:subscription_count","channel":"feed","data":"{{\"subscription_count\":{n}}}"}}"#
            )
        };
        ch.subscribe("feed", &a, None, 0, || None).ok().unwrap();
        assert_eq!(queued(&a), [count(1)]);
        // Within the interval: held back, then sent once with the count of the moment.
        ch.subscribe("feed", &b, None, 0, || None).ok().unwrap();
        ch.subscribe("feed", &c, None, 0, || None).ok().unwrap();
        ch.unsubscribe("feed", &c);
        assert!(queued(&a).is_empty() && queued(&b).is_empty());
        ch.flush_counts();
        assert_eq!(queued(&a), [count(2)]);
        assert_eq!(queued(&b), [count(2)]);
        ch.flush_counts();
        assert!(queued(&a).is_empty(), "nothing changed: nothing sent");
        // Presence channels count users instead; apps without the option get nothing.
        ch.subscribe("presence-r", &a, member("u"), 0, || None)
            .ok()
            .unwrap();
        assert!(!queued(&a).iter().any(|f| f.contains("subscription_count")));
        let off = Channels::default();
        off.subscribe("feed", &c, None, 0, || None).ok().unwrap();
        assert!(queued(&c).is_empty());
    }
}
