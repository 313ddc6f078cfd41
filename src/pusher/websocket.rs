//! Pusher protocol v7 over WebSocket at `/app/{key}`: one [`Session`] per connection.
//!
//! The session is a [`ws::Handler`] driven by `ws::drive`: it answers the client's
//! messages (subscribe, unsubscribe, ping, signin, client events) with frames pushed
//! to `out`, and keeps only what it must between messages: its channels, its user,
//! and two instants for the heartbeat. Publications reach it through its outbox; its
//! client events go out through the broker, like every publication.
//!
//! On an app with recovery, each subscription leaves a [`Mark`] in the connection's
//! [`Marks`], and `herald:resume` (see [`super::resume`]) is answered when the listed
//! channels' subscriptions succeed: the replay goes into `out` right after
//! `subscription_succeeded`, so it is written before anything the outbox holds.

use super::apps::{App, MAX_WATCHLIST};
use super::channels::{Connection, Refused};
use super::handover;
use super::protocol::{self, Incoming, Signin, Subscribe, Unsubscribe};
use super::resume::{self, Cached, Mark, Marks, Reason, Source};
use super::signature;
use super::webhooks::Event;
use crate::broker::{Broker, Offset, Publication, StreamSubscriber, TooOld};
use crate::edge_policy::{self, BadChannelName, ClientEvent, ClientEvents, RateWindow, Subscribes};
use crate::laravel::{ChannelKind, Envelope, PresenceMember};
use crate::outbox::Outbox;
use crate::state::State;
use crate::ws::{self, frame, Flow, Handler, Message};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The protocol versions accepted in `?protocol=`; pusher-js speaks 7.
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;
/// How long a client has to answer the server's `pusher:ping`.
const PONG_WAIT: Duration = Duration::from_secs(30);

/// Why a connection is refused right after the handshake: Pusher's code and message.
pub type Refusal = (u16, &'static str);

/// Check the `protocol` query parameter as Pusher does (4006/4007/4008).
pub fn check_protocol(query: &str) -> Result<(), Refusal> {
    let version = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "protocol")
        .map(|(_, v)| v);
    match version {
        None | Some("") => Err((4008, "No protocol version supplied")),
        Some(v) => match v.parse::<u32>() {
            Err(_) => Err((4006, "Invalid version string format")),
            Ok(n) if !PROTOCOLS.contains(&n) => Err((4007, "Unsupported protocol version")),
            Ok(_) => Ok(()),
        },
    }
}

/// Answer a refused connection: `pusher:error`, then a close frame with the same code.
pub async fn refuse(mut io: ws::WsStream, (code, message): Refusal) {
    let mut frames = vec![protocol::error(code, message), frame::close(code, message)];
    let _ = crate::net_write::write_all(&mut io, &mut frames).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
}

/// Run an accepted connection until it ends. The app's quota is taken here, once the
/// upgrade has happened, so a failed upgrade never holds a slot.
pub async fn run(io: ws::WsStream, state: State, app: Arc<App>) {
    if !app.admit() {
        return refuse(io, (4004, "Application is over connection quota")).await;
    }
    let outbox = Arc::new(Outbox::new(state.config().outbox));
    let id = crate::broker::next_subscriber_id();
    let conn = Arc::new(Connection {
        id,
        socket_id: format!("{}.{}", rand::random::<u32>(), id).into(),
        outbox: outbox.clone(),
        terminated: AtomicBool::new(false),
    });
    let activity = state.config().activity_timeout.max(Duration::from_secs(1));
    let established = serde_json::json!({
        "socket_id": &*conn.socket_id,
        "activity_timeout": activity.as_secs(),
    })
    .to_string();
    outbox.push(protocol::event(
        "pusher:connection_established",
        None,
        &established,
    ));
    let max_frame = app
        .config()
        .max_message_size()
        .saturating_mul(4)
        .max(64 * 1024);
    let now = Instant::now();
    let (app_client_events, app_max_message) =
        (app.config().client_events, app.config().max_message_size());
    let socket: Arc<str> = Arc::from(&*conn.socket_id);
    let marks = (app.kept_marks.as_ref())
        .map(|t| t.open(&socket, (app.subscriber_id, &app.config().id), &conn));
    let session = Session {
        app,
        broker: state.broker.clone(),
        conn,
        subscriptions: Vec::new(),
        user: None,
        watchlist: Vec::new(),
        activity,
        last_seen: now,
        pinged_at: None,
        client_events: ClientEvents {
            enabled: app_client_events,
            rate: state.config().client_event_rate,
            max_bytes: app_max_message,
        },
        window: RateWindow::new(now.into_std()),
        max_channels: state.config().max_channels_per_connection,
        subscribes: Subscribes::new(state.config().subscribe_rate),
        socket,
        marks,
        pending: Vec::new(),
        asked: false,
        refused: false,
        waiting: None,
        joining: None,
    };
    crate::metrics::PUSHER_CONNECTIONS.inc();
    ws::drive(io, outbox, session, max_frame, state.shutdown.clone()).await;
}

/// One subscription: the channel and, on presence channels, the user id it joined as.
type Subscription = (Box<str>, Option<Box<str>>);

struct Session {
    app: Arc<App>,
    broker: Arc<dyn Broker>,
    conn: Arc<Connection>,
    subscriptions: Vec<Subscription>,
    /// How many `subscriptions` may hold (0: no limit).
    max_channels: usize,
    /// How fast it may subscribe to channels it is not on.
    subscribes: Subscribes,
    /// The user id after a successful `pusher:signin`.
    user: Option<Box<str>>,
    /// The signed-in user's watchlist.
    watchlist: Vec<Box<str>>,
    activity: Duration,
    last_seen: Instant,
    pinged_at: Option<Instant>,
    /// The client-event policy, and this connection's current one-second window.
    client_events: ClientEvents,
    window: RateWindow,
    /// The socket id, shared by this connection's marks.
    socket: Arc<str>,
    /// Recovery apps: what this connection was sent, for resuming it.
    marks: Option<Arc<Marks>>,
    /// Channels `herald:resume` asked for whose subscription has not succeeded yet.
    pending: Vec<(Box<str>, Pending)>,
    /// Whether `herald:resume` was asked (once per connection).
    asked: bool,
    /// Whether the session itself closed the connection (a refusal: not resumable).
    refused: bool,
    /// What the connection waits for from the cluster ([`Handler::awaiting`]).
    waiting: Option<ws::Waiting<Awaited>>,
    /// The channel followed for a subscription that waits for the cluster.
    joining: Option<Box<str>>,
}

/// How long a session waits for the cluster at most (the backplane's answers are
/// bounded too; this bounds them all).
const CLUSTER_WAIT: Duration = Duration::from_secs(5);

/// What a new subscription waits for from the cluster ([`Session::cluster_wait`]).
struct ClusterWait {
    /// Its channel's stream here to stand where the cluster's history does.
    stand: bool,
    /// What was published after this offset (a resumed subscription's).
    read_after: Option<Offset>,
}

/// What a subscription read from the cluster's history: after which offset, and what.
type Read = Option<(Offset, Result<Vec<Publication>, TooOld>)>;

/// What a session waited for from the cluster.
enum Awaited {
    /// `herald:resume`'s marks, taken from the backplane.
    Taken(ResumeRequest, Result<handover::Channels, Reason>),
    /// A subscription to `name`, whose stream here now stands where the cluster's history
    /// does (unless the backplane could not say), and (a resumed one) what was read.
    Joining {
        name: Box<str>,
        member: Option<PresenceMember>,
        read: Read,
    },
}

/// A channel to resume once subscribed: the old connection's mark, and what its client
/// says it received.
struct Pending {
    mark: Mark,
    received: u64,
    resumed: bool,
    from: Arc<str>,
}

/// `herald:resume`'s data: the previous socket id and, per channel, how many events the
/// client received there and whether it saw `herald:resumed` (counting from it since).
#[derive(Deserialize)]
struct ResumeRequest {
    socket_id: String,
    channels: HashMap<String, Received>,
}

#[derive(Deserialize)]
struct Received {
    received: u64,
    #[serde(default)]
    resumed: bool,
}

#[derive(Deserialize)]
struct UserData {
    id: String,
    /// User ids whose coming online and going offline this user is told of.
    #[serde(default)]
    watchlist: Vec<String>,
}

impl Session {
    fn subscribed(&self, channel: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|(c, _)| &**c == channel)
    }

    /// Count this connection's subscription to `channel` in the app's broker stream.
    fn follow(&self, channel: &str) {
        let app: Arc<dyn StreamSubscriber> = self.app.clone();
        (self.broker).stream_subscribe(&self.app.namespace, channel.as_bytes(), app);
    }

    fn unfollow(&self, channel: &str) {
        let (namespace, id) = (&self.app.namespace, self.app.subscriber_id);
        (self.broker).stream_unsubscribe(namespace, channel.as_bytes(), id);
    }

    fn on_text(&mut self, text: &[u8], out: &mut Vec<Bytes>) -> Flow {
        if text.len() > self.app.config().max_message_size() {
            out.push(protocol::error(4301, "Message too large"));
            return Flow::Continue;
        }
        let Ok(msg) = serde_json::from_slice::<Incoming>(text) else {
            out.push(protocol::error(4200, "Invalid message format"));
            return Flow::Continue;
        };
        match msg.event.as_str() {
            "pusher:ping" => out.push(protocol::event("pusher:pong", None, "{}")),
            "pusher:pong" => {}
            "pusher:subscribe" => match msg.data_as::<Subscribe>() {
                Some(sub) => return self.subscribe(sub, out),
                None => out.push(protocol::error(4200, "Invalid message format")),
            },
            "pusher:unsubscribe" => match msg.data_as::<Unsubscribe>() {
                Some(u) => self.unsubscribe(&u.channel),
                None => out.push(protocol::error(4200, "Invalid message format")),
            },
            "pusher:signin" => match msg.data_as::<Signin>() {
                Some(s) => return self.signin(s, out),
                None => out.push(protocol::error(4200, "Invalid message format")),
            },
            "herald:resume" => match msg.data_as::<ResumeRequest>() {
                Some(r) => return self.resume(r, out),
                None => out.push(protocol::error(4200, "Invalid message format")),
            },
            e if e.starts_with("client-") => self.client_event(&msg, out),
            _ => {}
        }
        Flow::Continue
    }

    fn subscribe(&mut self, sub: Subscribe, out: &mut Vec<Bytes>) -> Flow {
        let name = sub.channel.as_str();
        if self.subscribed(name).is_none() && !self.subscribes.admit(std::time::Instant::now()) {
            tracing::debug!(socket = %self.socket, channel = name, "refused: subscribing too fast");
            out.push(protocol::subscription_error(
                name,
                "LimitReached",
                "Too many subscriptions per second on this connection",
                429,
            ));
            return Flow::Continue;
        }
        match self.check(&sub, out) {
            Some(member) => self.join(&sub.channel, member, None, out),
            None => Flow::Continue,
        }
    }

    /// Whether `sub` may subscribe (a refusal goes to `out`, and None): the presence
    /// member it joins as, if any.
    fn check(&self, sub: &Subscribe, out: &mut Vec<Bytes>) -> Option<Option<PresenceMember>> {
        let name = sub.channel.as_str();
        if let Err(bad) = edge_policy::check_channel_name(name) {
            // Soketi's wording for a long name; status 4009 for both.
            let (kind, message) = match bad {
                BadChannelName::TooLong => (
                    "LimitReached",
                    format!(
                        "The channel name is longer than the allowed {} characters.",
                        edge_policy::MAX_CHANNEL_NAME
                    ),
                ),
                _ => ("InvalidChannel", "Invalid channel name".to_string()),
            };
            out.push(protocol::subscription_error(name, kind, &message, 4009));
            return None;
        }
        let full = self.max_channels > 0 && self.subscriptions.len() >= self.max_channels;
        if full && self.subscribed(name).is_none() {
            out.push(protocol::subscription_error(
                name,
                "LimitReached",
                "Too many channels on this connection",
                429,
            ));
            return None;
        }
        let kind = ChannelKind::of(name);
        let cfg = self.app.config();
        let mut member = None;
        if let Some(user) = name.strip_prefix("#server-to-user-") {
            if self.user.as_deref() != Some(user) {
                out.push(protocol::subscription_error(
                    name,
                    "AuthError",
                    "Sign in as this user first",
                    4009,
                ));
                return None;
            }
        } else if kind.needs_auth() {
            let data = if kind == ChannelKind::Presence {
                sub.channel_data.as_deref()
            } else {
                None
            };
            let ok = sub.auth.as_deref().is_some_and(|auth| {
                signature::channel_auth_ok(
                    &cfg.key,
                    &cfg.secret,
                    &self.conn.socket_id,
                    name,
                    data,
                    auth,
                )
            });
            if !ok {
                out.push(protocol::subscription_error(
                    name,
                    "AuthError",
                    "Invalid signature",
                    401,
                ));
                out.push(protocol::error(4009, "Connection is unauthorized"));
                return None;
            }
            if kind == ChannelKind::Presence {
                let data = data.unwrap_or("");
                if data.len() > cfg.max_presence_member_size {
                    out.push(protocol::subscription_error(
                        name,
                        "LimitReached",
                        "The presence member data is too big",
                        4100,
                    ));
                    return None;
                }
                let Some(user) = PresenceMember::from_channel_data(data) else {
                    out.push(protocol::subscription_error(
                        name,
                        "AuthError",
                        "channel_data must carry a user_id",
                        4009,
                    ));
                    return None;
                };
                member = Some(user);
            }
        }
        Some(member)
    }

    /// Subscribe to `name` (as `member`, on a presence channel). In a cluster, a new
    /// subscription may first wait (`waited` None: it begins the wait) for its channel's
    /// stream here to stand where the cluster's history does, and a resumed one for what
    /// its client missed, read from that history ([`Session::cluster_wait`]).
    fn join(
        &mut self,
        name: &str,
        member: Option<PresenceMember>,
        waited: Option<Read>,
        out: &mut Vec<Bytes>,
    ) -> Flow {
        let cfg = self.app.config();
        if let Some((_, Some(old))) = self.subscribed(name) {
            // Re-subscribing as someone else: leave as the old member first.
            if member.as_ref().is_some_and(|m| m.key != *old) {
                self.app.channels.unsubscribe(name, &self.conn);
                self.subscriptions.retain(|(c, _)| &**c != name);
                self.unfollow(name);
                self.forget_mark(name);
            }
        }
        let key = member.as_ref().map(|m| m.key.clone());
        // Followed before joining: from the join on, the app hears every publication of
        // the channel, so where the channel stood at the join is this connection's start.
        let new = self.subscribed(name).is_none();
        if new && waited.is_none() {
            self.follow(name);
            if let Some(wait) = self.cluster_wait(name) {
                self.waiting = Some(self.wait(name, member, wait));
                self.joining = Some(name.into());
                return Flow::Await;
            }
        }
        self.joining = None;
        let (broker, namespace) = (&self.broker, &self.app.namespace);
        let position = || broker.position(namespace, name.as_bytes());
        let subscribed = (self.app.channels).subscribe(
            name,
            &self.conn,
            member,
            cfg.max_presence_members,
            position,
        );
        match subscribed {
            Err(Refused::TooManyMembers) => {
                if new {
                    self.unfollow(name);
                }
                out.push(protocol::subscription_error(
                    name,
                    "LimitReached",
                    "The maximum number of members in this presence channel has been reached",
                    4100,
                ));
            }
            Ok(joined) => {
                let start = joined.start;
                if new {
                    self.subscriptions.push((name.into(), key));
                } else {
                    // Already subscribed: the client counts afresh from this
                    // subscription_succeeded, behind frames still queued.
                    self.forget_mark(name);
                }
                let succeeded = protocol::event(
                    "pusher_internal:subscription_succeeded",
                    Some(name),
                    &joined.succeeded,
                );
                let pending = match self.pending.iter().position(|(c, _)| &**c == name) {
                    Some(i) => Some(self.pending.swap_remove(i).1),
                    None => None,
                };
                if let (Some(p), Some(start), true) = (&pending, start, new) {
                    if self.replay(name, p, start, &succeeded, waited.flatten(), out) {
                        return Flow::Continue;
                    }
                }
                out.push(succeeded);
                let cached = match joined.cached {
                    Some(Some(last)) => {
                        out.push(last);
                        Some(joined.cached_at.map_or(Cached::Unnumbered, Cached::At))
                    }
                    Some(None) => {
                        out.push(protocol::bare("pusher:cache_miss", Some(name)));
                        None
                    }
                    None => None,
                };
                if let (Some(marks), Some(start), true) = (&self.marks, start, new) {
                    marks.set(name, Mark::subscribed(cached, start, &self.socket));
                }
            }
        }
        Flow::Continue
    }

    /// What a new subscription to `name` waits for from the cluster before it is made,
    /// if anything: this node is part of one, and the channel's stream here has numbered
    /// nothing (so `subscription_succeeded` is sent once the stream stands where the
    /// cluster's history does: whatever is published after the client saw it reaches it,
    /// and its mark means the same on every node), or the subscription is resumed (what
    /// its client missed is read from the cluster's history, after the offset returned,
    /// once the node's join of the channel stood ([`crate::broker::Cluster::joined`]: a
    /// stream that lingered here unheard moves on to where the history stood when the
    /// node began to hear it again, and the subscription starts there, not where the
    /// stream stood before).
    fn cluster_wait(&self, name: &str) -> Option<ClusterWait> {
        self.broker.cluster()?;
        let here = (self.broker).position(&self.app.namespace, name.as_bytes());
        let pending = self.pending.iter().find(|(c, _)| &**c == name);
        let read_after = pending.and_then(|(_, p)| p.mark.reads_after(p.resumed));
        let stand = here.is_none_or(|o| o.seq == 0);
        (stand || read_after.is_some()).then_some(ClusterWait { stand, read_after })
    }

    /// The wait [`Session::cluster_wait`] said, bounded by [`CLUSTER_WAIT`].
    fn wait(
        &self,
        name: &str,
        member: Option<PresenceMember>,
        wait: ClusterWait,
    ) -> ws::Waiting<Awaited> {
        let (broker, namespace) = (self.broker.clone(), self.app.namespace.clone());
        let (name, channel): (Box<str>, _) = (name.into(), Bytes::copy_from_slice(name.as_bytes()));
        Box::pin(async move {
            let work = async {
                let cluster = broker.cluster()?;
                if wait.stand {
                    let _ = cluster.stand(namespace.clone(), channel.clone()).await;
                }
                let after = wait.read_after?;
                let _ = cluster.joined(namespace.clone(), channel.clone()).await;
                Some((after, cluster.since(namespace, channel, after).await))
            };
            let read = match tokio::time::timeout(CLUSTER_WAIT, work).await {
                Ok(read) => read,
                Err(_) => {
                    tracing::warn!(
                        channel = %name,
                        "a Pusher subscription waited for the backplane past its deadline: \
                         it is made as things stand here (a resumed one is told too_old)"
                    );
                    wait.read_after.map(|after| (after, Err(TooOld)))
                }
            };
            Awaited::Joining { name, member, read }
        })
    }

    /// Answer a resumed subscription to `name` whose own start is `start`: the
    /// subscription, what its client missed (from `read` when it was read from the
    /// cluster's history, else from the broker), `herald:resumed`; true if done. On a
    /// refusal `herald:resume_failed` goes first, and false: subscribe as usual.
    fn replay(
        &mut self,
        name: &str,
        p: &Pending,
        start: Offset,
        succeeded: &Bytes,
        read: Option<(Offset, Result<Vec<Publication>, TooOld>)>,
        out: &mut Vec<Bytes>,
    ) -> bool {
        let ns = &self.app.namespace;
        let (mark, received, resumed) = (&p.mark, p.received, p.resumed);
        let owed = match read {
            None => {
                let source = Source::Broker(&*self.broker, ns);
                resume::owed(source, name, mark, received, resumed, start)
            }
            Some((after, read)) => self.read_up_to(name, after, read, start).and_then(|read| {
                let source = Source::Read {
                    after,
                    publications: &read,
                };
                resume::owed(source, name, mark, received, resumed, start)
            }),
        };
        match owed {
            Ok(frames) => {
                let n = frames.len();
                out.push(succeeded.clone());
                out.extend(frames);
                out.push(resume::resumed_frame(name, n));
                crate::metrics::PUSHER_RESUMED.inc();
                crate::metrics::PUSHER_REPLAYED.add(n as u64);
                if let Some(marks) = &self.marks {
                    let mark = resume::resumed_mark(&p.mark, p.resumed, start, &self.socket);
                    marks.set(name, mark);
                }
                true
            }
            Err(reason) => {
                out.push(resume::failed_frame(name, reason, &p.from));
                false
            }
        }
    }

    /// What was read from the cluster's history after `after`, then what this node's
    /// stream holds after that up to `start` (the subscription's own start), if it
    /// reached further than the read.
    fn read_up_to(
        &self,
        name: &str,
        after: Offset,
        read: Result<Vec<Publication>, TooOld>,
        start: Offset,
    ) -> Result<Vec<Publication>, Reason> {
        let mut read = read.map_err(|_| Reason::TooOld)?;
        let reached = read.last().and_then(|p| p.offset).unwrap_or(after);
        if start.epoch == reached.epoch && start.seq > reached.seq {
            let ns = &self.app.namespace;
            let here = (self.broker).since(ns, name.as_bytes(), reached);
            read.extend(here.map_err(|_| Reason::TooOld)?);
        }
        Ok(read)
    }

    /// `herald:resume`: take the previous connection's marks for the listed channels
    /// (from the backplane when this node does not hold them: a wait); each is answered
    /// when its subscription succeeds, or refused now.
    fn resume(&mut self, req: ResumeRequest, out: &mut Vec<Bytes>) -> Flow {
        let marks = match (&self.app.kept_marks, self.asked) {
            (None, _) => Err(Reason::Disabled),
            (Some(_), true) => Err(Reason::Unknown),
            (Some(kept_marks), false) => {
                let now = std::time::Instant::now();
                let channels = &self.app.channels;
                kept_marks.take(&req.socket_id, self.app.subscriber_id, now, |c, conn| {
                    channels.sent(c, conn)
                })
            }
        };
        self.asked = true;
        let app_id = self.app.config().id.clone();
        match &marks {
            Err(Reason::WindowOver) if self.broker.cluster().is_some() => {
                let broker = self.broker.clone();
                self.waiting = Some(Box::pin(async move {
                    let taken = handover::take(&*broker, &app_id, &req.socket_id);
                    let taken = tokio::time::timeout(CLUSTER_WAIT, taken).await;
                    Awaited::Taken(req, taken.unwrap_or(Err(Reason::WindowOver)))
                }));
                return Flow::Await;
            }
            Ok(_) => handover::forget(&self.broker, &app_id, &req.socket_id),
            Err(_) => {}
        }
        self.pend(req, marks, out);
        Flow::Continue
    }

    /// Answer `herald:resume` with the marks found: each listed channel pending until its
    /// subscription, or refused now.
    fn pend(
        &mut self,
        req: ResumeRequest,
        marks: Result<handover::Channels, Reason>,
        out: &mut Vec<Bytes>,
    ) {
        let from: Arc<str> = req.socket_id.as_str().into();
        let mut marks = match marks {
            Ok(marks) => marks,
            Err(reason) => {
                for channel in req.channels.keys() {
                    out.push(resume::failed_frame(channel, reason, &from));
                }
                return;
            }
        };
        for (channel, got) in req.channels {
            let found = marks.iter().position(|(c, _)| **c == *channel);
            let refusal = match found {
                _ if self.subscribed(&channel).is_some() => Reason::Late,
                None => Reason::Unknown,
                Some(i) => {
                    let (_, mark) = marks.swap_remove(i);
                    if let Some(marks) = &self.marks {
                        marks.set(&channel, resume::pending_mark(&mark, got.resumed));
                    }
                    let pending = Pending {
                        mark,
                        received: got.received,
                        resumed: got.resumed,
                        from: from.clone(),
                    };
                    self.pending.push((channel.into(), pending));
                    continue;
                }
            };
            out.push(resume::failed_frame(&channel, refusal, &from));
        }
    }

    fn forget_mark(&self, name: &str) {
        if let Some(marks) = &self.marks {
            marks.remove(name);
        }
    }

    fn unsubscribe(&mut self, name: &str) {
        if let Some(pos) = self.subscriptions.iter().position(|(c, _)| &**c == name) {
            let (channel, _) = self.subscriptions.swap_remove(pos);
            self.app.channels.unsubscribe(&channel, &self.conn);
            self.unfollow(&channel);
            self.forget_mark(&channel);
        }
    }

    fn signin(&mut self, s: Signin, out: &mut Vec<Bytes>) -> Flow {
        let cfg = self.app.config();
        let valid = signature::user_auth_ok(
            &cfg.key,
            &cfg.secret,
            &self.conn.socket_id,
            &s.user_data,
            &s.auth,
        );
        let user = serde_json::from_str::<UserData>(&s.user_data)
            .ok()
            .filter(|u| !u.id.is_empty());
        match (valid, user) {
            (true, Some(user)) if user.watchlist.len() > MAX_WATCHLIST => {
                self.refuse(out, 4009, "The watchlist names more than 100 users")
            }
            (true, Some(user)) => {
                if let Some(old) = self.user.take() {
                    self.app.sign_out(&old, &self.conn, &self.watchlist);
                }
                self.watchlist = user.watchlist.into_iter().map(Into::into).collect();
                self.app.sign_in(&user.id, &self.conn, &self.watchlist);
                self.user = Some(user.id.into());
                let data = serde_json::json!({ "user_data": s.user_data }).to_string();
                out.push(protocol::event("pusher:signin_success", None, &data));
                Flow::Continue
            }
            (false, _) => self.refuse(out, 4009, "Invalid signature"),
            (true, None) => self.refuse(out, 4009, "user_data must carry a non-empty string id"),
        }
    }

    fn refuse(&mut self, out: &mut Vec<Bytes>, code: u16, message: &'static str) -> Flow {
        self.refused = true;
        out.push(protocol::error(code, message));
        Flow::Close(code, Cow::Borrowed(message))
    }

    fn client_event(&mut self, msg: &Incoming, out: &mut Vec<Bytes>) {
        let Some(channel) = msg.channel.as_deref() else {
            out.push(protocol::error(4200, "Invalid message format"));
            return;
        };
        let subscription = self.subscriptions.iter().find(|(c, _)| &**c == channel);
        let ev = ClientEvent {
            event: &msg.event,
            channel,
            subscribed: subscription.is_some(),
            data_len: msg.data.map_or(0, |d| d.get().len()),
        };
        let now = std::time::Instant::now();
        if let Err(refused) = self.client_events.check(&ev, &mut self.window, now) {
            let (code, message) = refused.pusher_error();
            out.push(protocol::error(code, message));
            return;
        }
        let member = subscription.and_then(|(_, m)| m.as_deref());
        let user_id = member
            .and_then(|k| serde_json::to_string(k).ok())
            .and_then(|s| RawValue::from_string(s).ok());
        // To the channel's other clients on every edge of the app's namespace, through
        // the broker like any publication; never to RESP, never cached.
        let payload = Envelope::from_client(
            &msg.event,
            msg.data,
            &self.conn.socket_id,
            user_id.as_deref(),
        );
        let name = Bytes::copy_from_slice(channel.as_bytes());
        let event = Publication::new(self.app.namespace.clone(), name, payload).from_client();
        self.broker.publish(event);
        self.app.counts.client_events.inc();
        let hooks = self.app.channels.hooks();
        if hooks.wants("client_event") {
            hooks.emit(Event::client_event(
                channel,
                &msg.event,
                msg.data,
                &self.conn.socket_id,
                member,
            ));
        }
    }
}

impl Handler for Session {
    type Awaited = Awaited;

    fn awaiting(&mut self) -> Option<ws::Waiting<Awaited>> {
        self.waiting.take()
    }

    fn on_awaited(&mut self, got: Awaited, out: &mut Vec<Bytes>) -> Flow {
        match got {
            Awaited::Taken(req, taken) => {
                self.pend(req, taken, out);
                Flow::Continue
            }
            Awaited::Joining { name, member, read } => self.join(&name, member, Some(read), out),
        }
    }

    fn on_message(&mut self, msg: Message, out: &mut Vec<Bytes>) -> Flow {
        self.last_seen = Instant::now();
        self.pinged_at = None;
        match msg {
            Message::Text(text) => self.on_text(&text, out),
            Message::Binary(_) => {
                out.push(protocol::error(4200, "Invalid message format"));
                Flow::Continue
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Flow::Continue,
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        if self.conn.terminated.load(Ordering::Relaxed) {
            return Some(Instant::now());
        }
        Some(match self.pinged_at {
            Some(at) => at + PONG_WAIT.min(self.activity),
            None => self.last_seen + self.activity,
        })
    }

    fn on_tick(&mut self, out: &mut Vec<Bytes>) -> Flow {
        if self.conn.terminated.load(Ordering::Relaxed) {
            return Flow::Close(4009, "You got disconnected by the app.".into());
        }
        let now = Instant::now();
        match self.pinged_at {
            Some(at) if now >= at + PONG_WAIT.min(self.activity) => {
                out.push(protocol::error(4201, "Pong reply not received"));
                Flow::Close(4201, "Pong reply not received".into())
            }
            Some(_) => Flow::Continue,
            None if now >= self.last_seen + self.activity => {
                self.pinged_at = Some(now);
                out.push(protocol::event("pusher:ping", None, "{}"));
                Flow::Continue
            }
            None => Flow::Continue,
        }
    }

    fn on_close(&mut self, why: &str) {
        if let (Some(kept_marks), Some(marks)) = (&self.app.kept_marks, &self.marks) {
            // Resumable unless the client said goodbye (a close frame: `why` is empty),
            // herald refused it, the app terminated it, or herald is shutting down.
            let resumable = !why.is_empty()
                && !self.refused
                && !self.conn.terminated.load(Ordering::Relaxed)
                && !why.starts_with("server shutdown");
            for (channel, _) in &self.subscriptions {
                if let Some((sent, through)) = self.app.channels.sent(channel, self.conn.id) {
                    marks.count(channel, sent, through);
                }
            }
            let now = std::time::Instant::now();
            let app_id = &marks.app_id;
            if kept_marks.close(&self.socket, marks, resumable, now) {
                let window = kept_marks.window();
                handover::share(
                    &self.broker,
                    app_id,
                    &self.socket,
                    &marks.channels(),
                    window,
                );
            } else {
                handover::forget(&self.broker, app_id, &self.socket);
            }
        }
        if let Some(channel) = self.joining.take() {
            self.unfollow(&channel);
        }
        for (channel, _) in std::mem::take(&mut self.subscriptions) {
            self.app.channels.unsubscribe(&channel, &self.conn);
            self.unfollow(&channel);
        }
        if let Some(user) = self.user.take() {
            self.app.sign_out(&user, &self.conn, &self.watchlist);
        }
        self.app.release();
        crate::metrics::PUSHER_CONNECTIONS.dec();
    }

    fn shutdown_frames(&self) -> Vec<Bytes> {
        vec![
            protocol::error(4200, "Server shutting down"),
            frame::close(4200, "Server shutting down"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(check_protocol("protocol=7&client=js"), Ok(()));
        assert_eq!(check_protocol("client=js").unwrap_err().0, 4008);
        assert_eq!(check_protocol("protocol=seven").unwrap_err().0, 4006);
        assert_eq!(check_protocol("protocol=4").unwrap_err().0, 4007);
    }
}
