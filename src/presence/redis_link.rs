//! What a node's [`ClusterPresence`] keeps in Redis, and how it hears the other nodes.
//!
//! Each node writes its own entries, one hash per node (`herald:presence:node:<id>`): a
//! field per user per channel (`["m",namespace,channel,user]`, the member's
//! `channel_data`) and per occupied channel (`["o",namespace,channel]`), and `#seq`, the
//! number of its last change. Beside each field, a set of the nodes holding it
//! (`herald:presence:who:<field>`). One Lua script per change edits both and publishes
//! the change on `herald:presence`, so whether a change was the first or the last
//! anywhere (the set went from none to one node, or back) is decided once, in Redis, and
//! the node whose change it was tells the app (webhooks). The other nodes apply what is
//! published to their view; a subscriber reads every node's hash whole when it
//! (re)connects and skips what the hash already held (`#seq`).
//!
//! Liveness: each node refreshes `herald:presence:alive:<id>` (expiring after the node
//! TTL) and is listed in `herald:presence:nodes`. Every node looks, each third of the
//! TTL, for listed nodes whose key lapsed, and takes such a node out in one script that
//! only one caller can win: its entries leave their sets, the app is told of every user
//! and channel that no node holds any more, and every node drops it from its view. A
//! node that finds itself no longer listed (it was taken out, or Redis lost its data)
//! writes everything it holds again in one script (a resync), as it does after any
//! failed write: its changes are then what Redis has, whatever was lost meanwhile.

use super::cluster::{Change, ClusterPresence, Node, Outbound};
use super::{Entry, Told};
use crate::backoff::{self, back_off};
use crate::health::Check;
use crate::laravel::PresenceMember;
use crate::metrics::Counter;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
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

/// A member as a field's value: its `channel_data`.
fn channel_data(m: &PresenceMember) -> String {
    format!(
        r#"{{"user_id":{},"user_info":{}}}"#,
        m.user_id.get(),
        m.info.as_deref().map_or("null", |i| i.get())
    )
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

/// One change as published on [`CHANNEL`]: a join (`j`) or leave (`l`) of node `n`'s
/// change number `s`; `r`: read node `n`'s hash again; `g`: node `n` is gone.
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
}

/// A field enters (`+`) or leaves (`-`) a node's hash; 1 when that made it the first
/// node holding the field, or the last to let it go. Publishes ARGV[6] if not empty.
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

/// Refresh a node's liveness; 1 when it was not listed (first start, taken out, or
/// Redis lost its data): it must write what it holds again.
const HEARTBEAT: &str = r#"
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return redis.call('SADD', KEYS[1], ARGV[1])
"#;

/// Make a node's hash exactly ARGV[3..] (field, value pairs); returns the fields that
/// became first (`+`) or last (`-`) anywhere, each after its sign.
const RESYNC: &str = r#"
local node, seq = ARGV[1], ARGV[2]
local want = {}
for i = 3, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
local out = {}
local have = redis.call('HGETALL', KEYS[1])
for i = 1, #have, 2 do
  local f = have[i]
  if f ~= '#seq' and want[f] == nil then
    redis.call('HDEL', KEYS[1], f)
    local k = 'herald:presence:who:' .. f
    if redis.call('SREM', k, node) == 1 and redis.call('SCARD', k) == 0 then
      out[#out + 1] = '-'; out[#out + 1] = f
    end
  end
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

/// Take out node ARGV[1] if its liveness lapsed and nobody took it out yet; returns the
/// fields no node holds any more.
const REAP: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return {} end
local have = redis.call('HGETALL', KEYS[3])
local out = {}
for i = 1, #have, 2 do
  local f = have[i]
  if f ~= '#seq' then
    local k = 'herald:presence:who:' .. f
    if redis.call('SREM', k, ARGV[1]) == 1 and redis.call('SCARD', k) == 0 then
      out[#out + 1] = f
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', 'herald:presence', '{"o":"g","n":"' .. ARGV[1] .. '"}')
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
        if self.changes.try_send(change).is_err() && !self.link.resync.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "presence changes queued faster than Redis takes them: writing them whole"
            );
            self.link.wake.notify_one();
        }
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
    tokio::spawn(reader(client, presence.clone(), link.clone(), stop));
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

/// Write this node's changes in order, keep it alive, take out nodes that are not.
async fn writer(
    client: redis::Client,
    mut queue: mpsc::Receiver<Change>,
    presence: Arc<ClusterPresence>,
    link: Arc<Link>,
    ttl: Duration,
    stop: CancellationToken,
) {
    let node = presence.node();
    let me = format!("{node:016x}");
    let change = redis::Script::new(CHANGE);
    let heartbeat = redis::Script::new(HEARTBEAT);
    let resync = redis::Script::new(RESYNC);
    let reap = redis::Script::new(REAP);
    let mut seq = 0u64;
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
        link.up(&link.writer_up, "presence writer");
        backoff = backoff::FIRST;
        let failed: redis::RedisError = loop {
            let step: redis::RedisResult<()> = async {
                if link.resync.swap(false, Ordering::Relaxed) {
                    while queue.try_recv().is_ok() {}
                    seq += 1;
                    let (members, occupied) = presence.holdings();
                    let mut call = resync.key(node_key(node));
                    call.arg(&me).arg(seq);
                    for (ns, ch, m) in &members {
                        call.arg(member_field(ns, ch, &m.key)).arg(channel_data(m));
                    }
                    for (ns, ch) in &occupied {
                        call.arg(occupied_field(ns, ch)).arg("");
                    }
                    let verdicts: Vec<String> = call.invoke_async(&mut con).await?;
                    link.resyncs.inc();
                    for pair in verdicts.chunks(2) {
                        if let [sign, field] = pair {
                            tell(&presence, field, sign == "+");
                        }
                    }
                    return Ok(());
                }
                tokio::select! {
                    got = queue.recv() => {
                        let Some(c) = got else { return Ok(()) };
                        seq += 1;
                        let (field, value, sign, message) = match &c {
                            Change::Join { namespace, channel, member } => {
                                let data = channel_data(member);
                                let m = Message {
                                    o: "j".into(), n: me.as_str().into(), s: seq,
                                    a: Some(namespace.clone()), c: Some(channel.clone()),
                                    u: Some(member.key.clone()), m: Some(data.as_str().into()),
                                };
                                (member_field(namespace, channel, &member.key), data, "+", serde_json::to_string(&m).expect("serializes"))
                            }
                            Change::Leave { namespace, channel, user } => {
                                let m = Message {
                                    o: "l".into(), n: me.as_str().into(), s: seq,
                                    a: Some(namespace.clone()), c: Some(channel.clone()),
                                    u: Some(user.clone()), m: None,
                                };
                                (member_field(namespace, channel, user), String::new(), "-", serde_json::to_string(&m).expect("serializes"))
                            }
                            Change::Occupancy { namespace, channel, occupied } => {
                                (occupied_field(namespace, channel), String::new(), if *occupied { "+" } else { "-" }, String::new())
                            }
                        };
                        let verdict: u8 = change
                            .key(node_key(node))
                            .key(who_key(&field))
                            .arg(&me).arg(seq).arg(&field).arg(value).arg(sign).arg(message)
                            .invoke_async(&mut con)
                            .await?;
                        if verdict == 1 {
                            tell(&presence, &field, sign == "+");
                        }
                    }
                    _ = beat.tick() => {
                        let fresh: u8 = heartbeat
                            .key(NODES)
                            .key(alive_key(node))
                            .arg(&me)
                            .arg(ttl.as_millis() as u64)
                            .invoke_async(&mut con)
                            .await?;
                        if fresh == 1 {
                            link.resync.store(true, Ordering::Relaxed);
                        }
                        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(NODES).query_async(&mut con).await?;
                        for other in nodes.iter().filter(|n| **n != me) {
                            let Ok(id) = Node::from_str_radix(other, 16) else { continue };
                            let gone: Vec<String> = reap
                                .key(NODES)
                                .key(alive_key(id))
                                .key(node_key(id))
                                .arg(other)
                                .invoke_async(&mut con)
                                .await?;
                            if !gone.is_empty() {
                                link.reaped.inc();
                                tracing::warn!(node = %other, fields = gone.len(), "a node stopped refreshing its presence: its members left");
                            }
                            for field in &gone {
                                tell(&presence, field, false);
                            }
                        }
                    }
                    _ = link.wake.notified() => {}
                }
                Ok(())
            }
            .await;
            if let Err(e) = step {
                break e;
            }
        };
        link.down(&link.writer_up, "presence writer", &failed.to_string());
        link.resync.store(true, Ordering::Relaxed);
        if !back_off(&mut backoff, &stop).await {
            return;
        }
    }
}

/// Read one node's hash whole: its entries, and the number of its last change.
async fn read_node(con: &mut Con, node: Node) -> redis::RedisResult<(Vec<Entry>, u64)> {
    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(node_key(node))
        .query_async(con)
        .await?;
    let mut seq = 0;
    let mut entries = Vec::new();
    for (f, v) in fields {
        if f == "#seq" {
            seq = v.parse().unwrap_or(0);
        } else if let Some(Field::Member(ns, ch, _)) = parse_field(&f) {
            if let Some(m) = PresenceMember::from_channel_data(&v) {
                entries.push((ns, ch, Arc::new(m)));
            }
        }
    }
    Ok((entries, seq))
}

/// Hear the other nodes: read each one's hash on (re)connecting, then apply what they
/// publish.
async fn reader(
    client: redis::Client,
    presence: Arc<ClusterPresence>,
    link: Arc<Link>,
    stop: CancellationToken,
) {
    let me = presence.node();
    let mut backoff = backoff::FIRST;
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            let con = connect(&client).await?;
            Ok::<_, redis::RedisError>((pubsub, con))
        };
        let (pubsub, mut con) = tokio::select! {
            _ = stop.cancelled() => return,
            c = connected => match c {
                Ok(c) => c,
                Err(e) => {
                    link.down(&link.reader_up, "presence reader", &e.to_string());
                    if !back_off(&mut backoff, &stop).await { return; }
                    continue;
                }
            },
        };
        let mut stream = pubsub.into_on_message();
        let mut applied: std::collections::HashMap<Node, u64> = Default::default();
        let read_all = async {
            let nodes: Vec<String> = redis::cmd("SMEMBERS")
                .arg(NODES)
                .query_async(&mut con)
                .await?;
            let listed: std::collections::HashSet<Node> = nodes
                .iter()
                .filter_map(|n| Node::from_str_radix(n, 16).ok())
                .collect();
            for gone in presence.nodes().difference(&listed) {
                presence.replace_node(*gone, Vec::new());
            }
            for node in listed.into_iter().filter(|n| *n != me) {
                let (entries, seq) = read_node(&mut con, node).await?;
                presence.replace_node(node, entries);
                applied.insert(node, seq);
            }
            Ok::<_, redis::RedisError>(())
        };
        if let Err(e) = read_all.await {
            link.down(&link.reader_up, "presence reader", &e.to_string());
            if !back_off(&mut backoff, &stop).await {
                return;
            }
            continue;
        }
        link.up(&link.reader_up, "presence reader");
        backoff = backoff::FIRST;
        let lost = loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = stream.next() => match m {
                    Some(m) => m,
                    None => break "connection closed".to_string(),
                },
            };
            let Ok(m) = serde_json::from_slice::<Message>(msg.get_payload_bytes()) else {
                link.malformed.inc();
                tracing::warn!(
                    "a presence message herald cannot read (another herald version?): dropped"
                );
                continue;
            };
            let Ok(node) = Node::from_str_radix(&m.n, 16) else {
                link.malformed.inc();
                continue;
            };
            if node == me {
                continue;
            }
            match &*m.o {
                "j" | "l" => {
                    let seen = applied.entry(node).or_insert(0);
                    if m.s <= *seen {
                        continue;
                    }
                    *seen = m.s;
                    let (Some(ns), Some(ch), Some(user)) = (&m.a, &m.c, &m.u) else {
                        link.malformed.inc();
                        continue;
                    };
                    if &*m.o == "j" {
                        match m.m.as_deref().and_then(PresenceMember::from_channel_data) {
                            Some(member) => presence.remote_join(ns, ch, node, Arc::new(member)),
                            None => link.malformed.inc(),
                        }
                    } else {
                        presence.remote_leave(ns, ch, node, user);
                    }
                }
                "r" => match read_node(&mut con, node).await {
                    Ok((entries, seq)) => {
                        presence.replace_node(node, entries);
                        applied.insert(node, seq);
                    }
                    Err(e) => break e.to_string(),
                },
                "g" => {
                    presence.replace_node(node, Vec::new());
                    applied.remove(&node);
                }
                _ => link.malformed.inc(),
            }
        };
        link.down(&link.reader_up, "presence reader", &lost);
        if !back_off(&mut backoff, &stop).await {
            return;
        }
    }
}
