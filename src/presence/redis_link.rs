//! What a node's [`ClusterPresence`] keeps in Redis, and how it hears the other nodes.
//!
//! Each node writes its own entries, one hash per node (`herald:presence:node:<id>`): a
//! field per user per channel (`["m",namespace,channel,user]`, the member's
//! `channel_data`) and per occupied channel (`["o",namespace,channel]`, its subscriptions
//! on the node), and `#seq`, the
//! number of its last change. Beside each field, a set of the nodes holding it
//! (`herald:presence:who:<field>`). One Lua script per change edits both and publishes
//! the change on `herald:presence`, so whether a change was the first or the last
//! anywhere (the set went from none to one node, or back) is decided once, in Redis, and
//! the node whose change it was tells the app (webhooks). The other nodes apply what is
//! published to their view; a subscriber reads every node's hash whole when it
//! (re)connects and skips what the hash already held (`#seq`). A hand-over (a socket.io
//! session recovered here from another node's keeping) is published on the same channel
//! by the same writer, after this node's joins for it, so the node that kept it hears
//! them before it leaves; it is not stored, and a node that misses it keeps its copy to
//! the end of its window.
//!
//! Liveness: each node refreshes `herald:presence:alive:<id>` (expiring after the node
//! TTL) each third of the TTL. Writing its entries whole (a resync) lists it in
//! `herald:presence:nodes`; it resyncs when it finds itself unlisted (at start, after it
//! was taken out, after Redis lost its data) and after any failed write, so what Redis
//! holds for it is what it holds, whatever was lost meanwhile. At each refresh a node
//! also looks for listed nodes whose key lapsed, and takes such a node out in one script
//! that only one caller can win: its entries leave their sets, the app is told of every
//! user and channel that no node holds any more, and every node drops it from its view.
//! A node the view has but Redis does not list is dropped after the TTL (Redis lost its
//! data and the node did not come back to list itself again).

use super::cluster::{Change, ClusterPresence, Node, Outbound, Place};
use super::{Entry, Told};
use crate::backoff::{self, back_off};
use crate::health::Check;
use crate::laravel::PresenceMember;
use crate::metrics::Counter;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Where every node publishes its presence changes.
const CHANNEL: &str = "herald:presence";
const NODES: &str = "herald:presence:nodes";
/// Changes waiting for the writer at most; past it, the writer resyncs instead.
const QUEUE: usize = 65_536;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

fn node_key(node: Node) -> String {
    format!("herald:presence:node:{node:016x}")
}

fn alive_key(node: Node) -> String {
    format!("herald:presence:alive:{node:016x}")
}

fn who_key(field: &str) -> String {
    format!("herald:presence:who:{field}")
}

/// A user's field: `["m",namespace,channel,user]`.
fn member_field(namespace: &str, channel: &str, user: &str) -> String {
    serde_json::to_string(&("m", namespace, channel, user)).expect("strings serialize")
}

/// An occupied channel's field: `["o",namespace,channel]`.
fn occupied_field(namespace: &str, channel: &str) -> String {
    serde_json::to_string(&("o", namespace, channel)).expect("strings serialize")
}

/// What a field names.
enum Field {
    Member(Box<str>, Box<str>, Box<str>),
    Occupied(Box<str>, Box<str>),
}

fn parse_field(field: &str) -> Option<Field> {
    let parts: Vec<Box<str>> = serde_json::from_str(field).ok()?;
    match parts.as_slice() {
        [k, ns, ch, user] if &**k == "m" => {
            Some(Field::Member(ns.clone(), ch.clone(), user.clone()))
        }
        [k, ns, ch] if &**k == "o" => Some(Field::Occupied(ns.clone(), ch.clone())),
        _ => None,
    }
}

/// One change as published on [`CHANNEL`]: a join (`j`), leave (`l`) or count of
/// subscriptions (`c`) of node `n`'s change number `s`; `r`: read node `n`'s hash again;
/// `g`: node `n` is gone; `t`: node `n` took over what `t` names (a socket.io session).
#[derive(Serialize, Deserialize)]
struct Message {
    o: Box<str>,
    n: Box<str>,
    #[serde(default)]
    s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<Box<str>>,
    /// `c`: node `n`'s subscriptions of channel `c` now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<usize>,
    /// `t`: node `n` took over what this names, in namespace `a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<Box<str>>,
}

/// A field enters (`+`) or leaves (`-`) a node's hash; 1 when that made it the first
/// node holding the field, or the last to let it go. Publishes `ARGV[6]` if not empty.
const CHANGE: &str = r#"
local node, seq, field, value, sign, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local verdict = 0
if sign == '+' then
  redis.call('HSET', KEYS[1], field, value, '#seq', seq)
  if redis.call('SADD', KEYS[2], node) == 1 and redis.call('SCARD', KEYS[2]) == 1 then verdict = 1 end
else
  redis.call('HDEL', KEYS[1], field)
  redis.call('HSET', KEYS[1], '#seq', seq)
  if redis.call('SREM', KEYS[2], node) == 1 and redis.call('SCARD', KEYS[2]) == 0 then verdict = 1 end
end
if message ~= '' then redis.call('PUBLISH', 'herald:presence', message) end
return verdict
"#;

/// Refresh a node's liveness; 1 when it is not listed (first start, taken out, or
/// Redis lost its data): it must write what it holds again, which lists it.
const HEARTBEAT: &str = r#"
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1 - redis.call('SISMEMBER', KEYS[1], ARGV[1])
"#;

/// Make a node's hash exactly the `ARGV[3]` (field, value) pairs that follow, and list the
/// node (`KEYS[2]`); the fields after those are ones the node wrote before and no longer
/// holds, which Redis may have lost. Returns the fields that became first (`+`) or last
/// (`-`) anywhere, each after its sign.
const RESYNC: &str = r#"
local node, seq, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('SADD', KEYS[2], node)
local want = {}
for i = 4, 3 + 2 * n, 2 do want[ARGV[i]] = ARGV[i + 1] end
local out = {}
local function left(f)
  local k = 'herald:presence:who:' .. f
  redis.call('SREM', k, node)
  if redis.call('SCARD', k) == 0 then out[#out + 1] = '-'; out[#out + 1] = f end
end
local done = {}
local have = redis.call('HGETALL', KEYS[1])
for i = 1, #have, 2 do
  local f = have[i]
  if f ~= '#seq' and want[f] == nil then
    redis.call('HDEL', KEYS[1], f)
    left(f)
    done[f] = true
  end
end
for i = 4 + 2 * n, #ARGV do
  if not done[ARGV[i]] then left(ARGV[i]) end
end
for f, v in pairs(want) do
  redis.call('HSET', KEYS[1], f, v)
  local k = 'herald:presence:who:' .. f
  if redis.call('SADD', k, node) == 1 and redis.call('SCARD', k) == 1 then
    out[#out + 1] = '+'; out[#out + 1] = f
  end
end
redis.call('HSET', KEYS[1], '#seq', seq)
redis.call('PUBLISH', 'herald:presence', '{"o":"r","n":"' .. node .. '","s":' .. seq .. '}')
return out
"#;

/// Take out node `ARGV[1]` if its liveness lapsed and nobody took it out yet; when it held
/// anything then, returns `#` and the fields no node holds any more (nothing otherwise: a
/// node that shut down cleanly left everything).
const REAP: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return {} end
local have = redis.call('HGETALL', KEYS[3])
local out, held = {'#'}, 0
for i = 1, #have, 2 do
  local f = have[i]
  if f ~= '#seq' then
    held = held + 1
    local k = 'herald:presence:who:' .. f
    if redis.call('SREM', k, ARGV[1]) == 1 and redis.call('SCARD', k) == 0 then
      out[#out + 1] = f
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', 'herald:presence', '{"o":"g","n":"' .. ARGV[1] .. '"}')
if held == 0 then return {} end
return out
"#;

/// The state of the link, for `/healthz` and `/metrics`.
pub struct Link {
    address: String,
    writer_up: AtomicBool,
    reader_up: AtomicBool,
    last_error: Mutex<String>,
    /// Set when the writer must write everything again (a write failed, the queue overflowed).
    resync: AtomicBool,
    /// Changes queued and not yet written (or given up), and who waits for none.
    unsettled: std::sync::atomic::AtomicUsize,
    settled: Notify,
    wake: Notify,
    resyncs: Counter,
    reaped: Counter,
    malformed: Counter,
}

impl Link {
    fn down(&self, up: &AtomicBool, what: &str, error: &str) {
        *self.last_error.lock() = error.to_string();
        if up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.address, error, connection = what,
                "presence link lost: other nodes' joins and leaves are not heard until it is back; \
                 this node then writes its members again"
            );
        }
    }

    fn up(&self, up: &AtomicBool, what: &str) {
        if !up.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.address, connection = what, "presence link connected");
        }
    }
}

impl Link {
    /// `n` queued changes were written, or given up (a resync writes them whole).
    fn settle(&self, n: usize) {
        if n > 0 && self.unsettled.fetch_sub(n, Ordering::AcqRel) == n {
            self.settled.notify_waiters();
        }
    }
}

impl Check for Link {
    fn problem(&self) -> Option<String> {
        let up = self.writer_up.load(Ordering::Relaxed) && self.reader_up.load(Ordering::Relaxed);
        (!up).then(|| {
            format!(
                "unreachable at {}: {}",
                self.address,
                self.last_error.lock()
            )
        })
    }
}

/// The writer's queue, as the presence hands it changes.
struct Queue {
    changes: mpsc::Sender<Change>,
    link: Arc<Link>,
}

impl Outbound for Queue {
    fn send(&self, change: Change) {
        if self.changes.try_send(change).is_ok() {
            self.link.unsettled.fetch_add(1, Ordering::AcqRel);
        } else if !self.link.resync.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "presence changes queued faster than Redis takes them: writing them whole"
            );
            self.link.wake.notify_one();
        }
    }

    fn settled(&self) -> super::Settling<'_> {
        Box::pin(async move {
            loop {
                let settled = self.link.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                if self.link.unsettled.load(Ordering::Acquire) == 0
                    && !self.link.resync.load(Ordering::Relaxed)
                {
                    return;
                }
                settled.await;
            }
        })
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let l = &self.link;
        let up = l.writer_up.load(Ordering::Relaxed) && l.reader_up.load(Ordering::Relaxed);
        vec![
            (
                "herald_cluster_presence_resyncs_total",
                "counter",
                l.resyncs.get(),
            ),
            (
                "herald_cluster_presence_reaped_total",
                "counter",
                l.reaped.get(),
            ),
            (
                "herald_cluster_presence_malformed_total",
                "counter",
                l.malformed.get(),
            ),
            ("herald_cluster_presence_up", "gauge", up as u64),
        ]
    }
}

/// Start a node's presence on the Redis at `url` (checked by the configuration): a
/// node that stops refreshing is taken out after `ttl`. The reader stops at `stop`; the
/// writer goes on while connected (the leaves of a shutdown are written).
pub fn start(
    url: &str,
    address: String,
    ttl: Duration,
    stop: CancellationToken,
) -> (Arc<ClusterPresence>, Arc<Link>) {
    let client = redis::Client::open(url).expect("the configuration checked the URL");
    let link = Arc::new(Link {
        address,
        writer_up: AtomicBool::new(false),
        reader_up: AtomicBool::new(false),
        last_error: Mutex::new("not connected yet".into()),
        resync: AtomicBool::new(true),
        unsettled: Default::default(),
        settled: Notify::new(),
        wake: Notify::new(),
        resyncs: Counter::new(),
        reaped: Counter::new(),
        malformed: Counter::new(),
    });
    let (changes, queue) = mpsc::channel(QUEUE);
    let presence = Arc::new(ClusterPresence::new(
        rand::random(),
        Box::new(Queue {
            changes,
            link: link.clone(),
        }),
    ));
    tokio::spawn(writer(
        client.clone(),
        queue,
        presence.clone(),
        link.clone(),
        ttl,
        stop.clone(),
    ));
    tokio::spawn(reader(client, presence.clone(), link.clone(), ttl, stop));
    (presence, link)
}

type Con = redis::aio::MultiplexedConnection;

async fn connect(client: &redis::Client) -> redis::RedisResult<Con> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(RESPONSE_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Tell the app of a field's verdict: `first` (or else last) anywhere.
fn tell(presence: &ClusterPresence, field: &str, first: bool) {
    let (ns, ch, told) = match parse_field(field) {
        Some(Field::Member(ns, ch, user)) if first => (ns, ch, Told::MemberAdded(user)),
        Some(Field::Member(ns, ch, user)) => (ns, ch, Told::MemberRemoved(user)),
        Some(Field::Occupied(ns, ch)) if first => (ns, ch, Told::Occupied),
        Some(Field::Occupied(ns, ch)) => (ns, ch, Told::Vacated),
        None => return,
    };
    if let Some(l) = presence.listener(&ns) {
        l.tell_app(&ch, told);
    }
}

/// The writer's scripts and what it numbers its changes with.
struct Writer {
    presence: Arc<ClusterPresence>,
    link: Arc<Link>,
    node: Node,
    /// `node` in hex, as Redis holds it.
    me: String,
    seq: u64,
    /// The fields Redis took from this node (what it told the app of).
    written: HashSet<String>,
    ttl: Duration,
    change: redis::Script,
    heartbeat: redis::Script,
    resync: redis::Script,
    reap: redis::Script,
}

impl Writer {
    /// Write one change; tell the app if it was the first or the last anywhere.
    async fn write(&mut self, con: &mut Con, c: Change) -> redis::RedisResult<()> {
        if let Change::HandedOver { namespace, token } = c {
            return self.hand_over(con, namespace, token).await;
        }
        self.seq += 1;
        let message = |o: &str, ns: &str, ch: &str, user: Option<&str>, m: Option<&str>, k| {
            let m = Message {
                o: o.into(),
                n: self.me.as_str().into(),
                s: self.seq,
                a: Some(ns.into()),
                c: Some(ch.into()),
                u: user.map(Into::into),
                m: m.map(Into::into),
                k,
                t: None,
            };
            serde_json::to_string(&m).expect("serializes")
        };
        let (field, value, enters, message) = match &c {
            Change::Join {
                namespace: ns,
                channel: ch,
                member,
            } => {
                let data = member.channel_data();
                let m = message("j", ns, ch, Some(&member.key), Some(&data), None);
                (member_field(ns, ch, &member.key), data, true, m)
            }
            Change::Leave {
                namespace: ns,
                channel: ch,
                user,
            } => {
                let m = message("l", ns, ch, Some(user), None, None);
                (member_field(ns, ch, user), String::new(), false, m)
            }
            Change::Subscriptions {
                namespace: ns,
                channel: ch,
                count,
                counted,
            } => {
                let m = match counted {
                    true => message("c", ns, ch, None, None, Some(*count)),
                    false => String::new(),
                };
                (occupied_field(ns, ch), count.to_string(), *count > 0, m)
            }
            Change::HandedOver { .. } => unreachable!("published above"),
        };
        let verdict: u8 = self
            .change
            .key(node_key(self.node))
            .key(who_key(&field))
            .arg(&self.me)
            .arg(self.seq)
            .arg(&field)
            .arg(value)
            .arg(if enters { "+" } else { "-" })
            .arg(message)
            .invoke_async(con)
            .await?;
        if verdict == 1 {
            tell(&self.presence, &field, enters);
        }
        if enters {
            self.written.insert(field);
        } else {
            self.written.remove(&field);
        }
        Ok(())
    }

    /// Tell every node that this one took over what `token` names: published after the
    /// changes before it (this node's joins of the session's presence), so every node
    /// hears those first. Nothing is stored: a node that misses it (its reader was
    /// down) keeps its copy until its own window ends.
    async fn hand_over(
        &mut self,
        con: &mut Con,
        namespace: Box<str>,
        token: Box<str>,
    ) -> redis::RedisResult<()> {
        let m = Message {
            o: "t".into(),
            n: self.me.as_str().into(),
            s: self.seq,
            a: Some(namespace),
            c: None,
            u: None,
            m: None,
            k: None,
            t: Some(token),
        };
        let m = serde_json::to_string(&m).expect("serializes");
        redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(m)
            .query_async::<()>(con)
            .await
    }

    /// Make Redis hold exactly what this node holds; tell the app what that changed. What
    /// this node wrote before and still holds was told already, even if Redis lost it and
    /// counts it first again; what it wrote and no longer holds left meanwhile.
    async fn resync(&mut self, con: &mut Con) -> redis::RedisResult<()> {
        self.seq += 1;
        let (members, occupied) = self.presence.holdings();
        let held: Vec<(String, String)> = members
            .iter()
            .map(|(ns, ch, m)| (member_field(ns, ch, &m.key), m.channel_data()))
            .chain(
                occupied
                    .iter()
                    .map(|((ns, ch), n)| (occupied_field(ns, ch), n.to_string())),
            )
            .collect();
        let now: HashSet<String> = held.iter().map(|(f, _)| f.clone()).collect();
        let mut call = self.resync.key(node_key(self.node));
        call.key(NODES).arg(&self.me).arg(self.seq).arg(held.len());
        for (field, value) in &held {
            call.arg(field).arg(value);
        }
        for gone in self.written.difference(&now) {
            call.arg(gone);
        }
        let verdicts: Vec<String> = call.invoke_async(con).await?;
        self.link.resyncs.inc();
        for pair in verdicts.chunks(2) {
            if let [sign, field] = pair {
                let first = sign == "+";
                if !(first && self.written.contains(field)) {
                    tell(&self.presence, field, first);
                }
            }
        }
        self.written = now;
        Ok(())
    }

    /// Refresh this node's liveness; true when it was not listed (it must resync).
    async fn beat(&mut self, con: &mut Con) -> redis::RedisResult<bool> {
        let fresh: u8 = self
            .heartbeat
            .key(NODES)
            .key(alive_key(self.node))
            .arg(&self.me)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok(fresh == 1)
    }

    /// Take out the listed nodes whose liveness lapsed (those this node is first to find).
    async fn reap(&mut self, con: &mut Con) -> redis::RedisResult<()> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(NODES).query_async(con).await?;
        for other in nodes.iter().filter(|n| **n != self.me) {
            let Ok(id) = Node::from_str_radix(other, 16) else {
                continue;
            };
            let gone: Vec<String> = self
                .reap
                .key(NODES)
                .key(alive_key(id))
                .key(node_key(id))
                .arg(other)
                .invoke_async(con)
                .await?;
            let Some((_, gone)) = gone.split_first() else {
                continue;
            };
            self.link.reaped.inc();
            tracing::warn!(
                node = %other, fields = gone.len(),
                "a node stopped refreshing its presence: its members left"
            );
            for field in gone {
                tell(&self.presence, field, false);
            }
        }
        Ok(())
    }
}

/// Write this node's changes in order, keep it alive, take out nodes that are not. On
/// every (re)connection it first refreshes its liveness and, if Redis no longer listed it
/// or a write was lost, writes everything it holds again (changes queued meanwhile are
/// in that).
async fn writer(
    client: redis::Client,
    mut queue: mpsc::Receiver<Change>,
    presence: Arc<ClusterPresence>,
    link: Arc<Link>,
    ttl: Duration,
    stop: CancellationToken,
) {
    let node = presence.node();
    let mut w = Writer {
        presence,
        link: link.clone(),
        node,
        me: format!("{node:016x}"),
        seq: 0,
        written: HashSet::new(),
        ttl,
        change: redis::Script::new(CHANGE),
        heartbeat: redis::Script::new(HEARTBEAT),
        resync: redis::Script::new(RESYNC),
        reap: redis::Script::new(REAP),
    };
    let mut backoff = backoff::FIRST;
    let mut beat = tokio::time::interval(ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut con = tokio::select! {
            _ = stop.cancelled() => return,
            con = connect(&client) => match con {
                Ok(con) => con,
                Err(e) => {
                    link.down(&link.writer_up, "presence writer", &e.to_string());
                    if !back_off(&mut backoff, &stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        beat.reset_immediately();
        let failed = loop {
            let step = async {
                tokio::select! {
                    got = queue.recv() => match got {
                        Some(c) => {
                            let written = w.write(&mut con, c).await;
                            link.settle(1);
                            written
                        }
                        None => Ok(()),
                    },
                    _ = beat.tick() => {
                        if w.beat(&mut con).await? {
                            link.resync.store(true, Ordering::Relaxed);
                        }
                        w.reap(&mut con).await
                    }
                    _ = link.wake.notified() => Ok(()),
                }?;
                if link.resync.swap(false, Ordering::Relaxed) {
                    let mut dropped = 0;
                    while queue.try_recv().is_ok() {
                        dropped += 1;
                    }
                    link.settle(dropped);
                    w.resync(&mut con).await?;
                    link.settled.notify_waiters();
                }
                Ok::<_, redis::RedisError>(())
            };
            match step.await {
                Ok(()) => {
                    link.up(&link.writer_up, "presence writer");
                    backoff = backoff::FIRST;
                }
                Err(e) => break e,
            }
        };
        link.down(&link.writer_up, "presence writer", &failed.to_string());
        link.resync.store(true, Ordering::Relaxed);
        if !back_off(&mut backoff, &stop).await {
            return;
        }
    }
}

/// One node's hash, read whole.
struct NodeHash {
    members: Vec<Entry>,
    /// Its subscriptions per channel.
    counts: Vec<(Place, usize)>,
    /// The number of its last change.
    seq: u64,
}

async fn read_node(con: &mut Con, node: Node) -> redis::RedisResult<NodeHash> {
    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(node_key(node))
        .query_async(con)
        .await?;
    let mut hash = NodeHash {
        members: Vec::new(),
        counts: Vec::new(),
        seq: 0,
    };
    for (f, v) in fields {
        if f == "#seq" {
            hash.seq = v.parse().unwrap_or(0);
            continue;
        }
        match parse_field(&f) {
            Some(Field::Member(ns, ch, _)) => {
                if let Some(m) = PresenceMember::from_channel_data(&v) {
                    hash.members.push((ns, ch, Arc::new(m)));
                }
            }
            Some(Field::Occupied(ns, ch)) => hash.counts.push(((ns, ch), v.parse().unwrap_or(0))),
            None => {}
        }
    }
    Ok(hash)
}

/// What the reader knows of the other nodes besides the view.
struct Reader {
    presence: Arc<ClusterPresence>,
    link: Arc<Link>,
    ttl: Duration,
    /// Each node's last change applied (from its hash's `#seq`, then its messages).
    applied: HashMap<Node, u64>,
    /// Nodes in the view that Redis did not list, since when. A node is dropped from the
    /// view when Redis says it is gone, or once it has been unlisted for the TTL: after
    /// Redis lost its data, live nodes list themselves again within a third of it.
    unlisted: HashMap<Node, Instant>,
}

impl Reader {
    /// Read the list of nodes, and each listed node's hash whole (`all`) or only the
    /// hashes of nodes the view does not have yet.
    async fn read(&mut self, con: &mut Con, all: bool) -> redis::RedisResult<()> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(NODES).query_async(con).await?;
        let listed: HashSet<Node> = nodes
            .iter()
            .filter_map(|n| Node::from_str_radix(n, 16).ok())
            .filter(|n| *n != self.presence.node())
            .collect();
        let now = Instant::now();
        let known = self.presence.nodes();
        for node in known.difference(&listed) {
            let since = *self.unlisted.entry(*node).or_insert(now);
            if now.duration_since(since) >= self.ttl {
                self.forget(*node);
            }
        }
        self.unlisted
            .retain(|n, _| known.contains(n) && !listed.contains(n));
        for node in listed {
            if all || !self.applied.contains_key(&node) {
                self.reload(con, node).await?;
            }
        }
        Ok(())
    }

    async fn reload(&mut self, con: &mut Con, node: Node) -> redis::RedisResult<()> {
        let hash = read_node(con, node).await?;
        self.presence.replace_node(node, hash.members, hash.counts);
        self.applied.insert(node, hash.seq);
        Ok(())
    }

    fn forget(&mut self, node: Node) {
        self.presence.replace_node(node, Vec::new(), Vec::new());
        self.applied.remove(&node);
        self.unlisted.remove(&node);
    }

    /// One message from [`CHANNEL`].
    async fn receive(&mut self, con: &mut Con, payload: &[u8]) -> redis::RedisResult<()> {
        let parsed = serde_json::from_slice::<Message>(payload)
            .ok()
            .and_then(|m| Some((Node::from_str_radix(&m.n, 16).ok()?, m)));
        let Some((node, m)) = parsed else {
            self.malformed();
            return Ok(());
        };
        if node == self.presence.node() {
            return Ok(());
        }
        match (&*m.o, &m.a, &m.c, &m.u) {
            ("j" | "l", Some(ns), Some(ch), Some(user)) => {
                let seen = self.applied.entry(node).or_insert(0);
                if m.s <= *seen {
                    return Ok(());
                }
                *seen = m.s;
                if &*m.o == "l" {
                    self.presence.remote_leave(ns, ch, node, user);
                } else if let Some(member) =
                    m.m.as_deref().and_then(PresenceMember::from_channel_data)
                {
                    self.presence.remote_join(ns, ch, node, Arc::new(member));
                } else {
                    self.malformed();
                }
            }
            ("c", Some(ns), Some(ch), _) if m.k.is_some() => {
                let seen = self.applied.entry(node).or_insert(0);
                if m.s > *seen {
                    *seen = m.s;
                    let count = m.k.unwrap_or(0);
                    self.presence.remote_count(ns, ch, node, count);
                }
            }
            ("t", Some(ns), ..) if m.t.is_some() => {
                let token = m.t.as_deref().unwrap_or_default();
                self.presence.remote_taken(ns, node, token);
            }
            ("r", ..) => self.reload(con, node).await?,
            ("g", ..) => self.forget(node),
            _ => self.malformed(),
        }
        Ok(())
    }

    fn malformed(&self) {
        self.link.malformed.inc();
        tracing::warn!("a presence message herald cannot read (another herald version?): dropped");
    }
}

/// Hear the other nodes: read each one's hash on (re)connecting, then apply what they
/// publish; each third of the TTL, look for nodes Redis no longer lists.
async fn reader(
    client: redis::Client,
    presence: Arc<ClusterPresence>,
    link: Arc<Link>,
    ttl: Duration,
    stop: CancellationToken,
) {
    let mut r = Reader {
        presence,
        link: link.clone(),
        ttl,
        applied: HashMap::new(),
        unlisted: HashMap::new(),
    };
    let mut backoff = backoff::FIRST;
    let mut look = tokio::time::interval(ttl / 3);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            let mut con = connect(&client).await?;
            r.read(&mut con, true).await?;
            Ok::<_, redis::RedisError>((pubsub, con))
        };
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = connected => c,
        };
        let lost = match connected {
            Err(e) => e.to_string(),
            Ok((pubsub, mut con)) => {
                link.up(&link.reader_up, "presence reader");
                backoff = backoff::FIRST;
                let mut stream = pubsub.into_on_message();
                loop {
                    let step = tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = look.tick() => r.read(&mut con, false).await,
                        m = stream.next() => match m {
                            Some(m) => r.receive(&mut con, m.get_payload_bytes()).await,
                            None => break "connection closed".to_string(),
                        },
                    };
                    if let Err(e) = step {
                        break e.to_string();
                    }
                }
            }
        };
        link.down(&link.reader_up, "presence reader", &lost);
        if !back_off(&mut backoff, &stop).await {
            return;
        }
    }
}
