//! Laravel Echo's socket.io semantics: what laravel-echo-server did, on herald's rooms.
//!
//! Echo emits `subscribe` `{channel, auth:{headers}}`, `unsubscribe` `{channel}` and
//! `client event` `{channel, event, data}` (whispers). Private and presence channels
//! are authorized by the Laravel app ([`crate::auth_callback`]); a refusal is told
//! with `subscription_error` `(channel, status)`, as is a subscription past
//! `--max-channels-per-connection` (status 429), and so are the refusals of
//! [`crate::auth_shield`] (431, 429, 503, or the app's own refusal again). Presence announces
//! `presence:subscribed` to the joiner and `presence:joining` / `presence:leaving` to
//! the others, once per user however many tabs the user has open ([`crate::presence`]
//! decides; the frames are built here from its outcome). A member is what the app's
//! `channel_data` said, `{"user_id":…,"user_info":…}`, the user id as the app wrote it;
//! the joiner's list starts with the user who joined last, as laravel-echo-server's did.

use super::engine::Session;
use super::packet::{self, json_str, Eio, Packet};
use super::recovery::Members;
use super::rooms::Frames;
use super::Edge;
use crate::auth_callback::Refused;
use crate::auth_shield::{AuthOption, PerConnection};
use crate::broker::{Namespace, Publication};
use crate::edge_policy::{self, RateWindow, Subscribes};
use crate::laravel::{ChannelKind, Envelope, PresenceMember};
use crate::presence::{Heard, Listener, Told};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The Socket.IO side of a session: small, it is kept for every socket.
#[derive(Default)]
pub struct SocketState {
    /// Channels joined.
    pub channels: Vec<Box<str>>,
    /// Channels waiting for the app's authorization; an `unsubscribe` meanwhile
    /// removes the channel here, and the answer then joins nothing.
    authorizing: Vec<Box<str>>,
    /// Binary attachments still expected for the last binary packet.
    pub attachments: usize,
    /// The CONNECT packet's auth headers, the auth rate and the app's recent refusals.
    auth: PerConnection,
    /// Client events in the current one-second window.
    rate: Option<RateWindow>,
    /// How fast it may subscribe (made at its first subscription).
    subscribes: Option<Subscribes>,
    /// The private session id under which an unclean close keeps the session for
    /// recovery (v4 with `--recovery-window`).
    pub pid: Option<Box<str>>,
}

#[derive(Deserialize)]
struct Subscribe {
    channel: String,
    #[serde(default)]
    auth: Option<AuthOption>,
}

#[derive(Deserialize)]
struct ClientEvent<'a> {
    channel: String,
    event: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Accept the main-namespace CONNECT as a new socket.
pub fn connect(edge: &Edge, s: &Session, auth: Option<&RawValue>) {
    accept(edge, s, auth);
    if s.eio == Eio::V4 {
        s.socket.set_id(super::engine::new_id());
    }
    s.socket.connected.store(true, Ordering::Relaxed);
    s.socket.send(packet::connected(s.eio, s.socket.id()));
}

/// What every main-namespace CONNECT does first: its auth headers are read here, once.
pub fn accept(edge: &Edge, s: &Session, auth: Option<&RawValue>) {
    let headers = edge.auth.from_connect(auth);
    let mut st = s.lock();
    st.unconnected = None;
    st.io.auth.set_connect_headers(headers);
}

/// One Socket.IO packet from the client.
pub fn on_packet(edge: &Arc<Edge>, s: &Arc<Session>, text: &str) -> Result<(), &'static str> {
    if s.lock().io.attachments > 0 {
        // socket.io-parser: a text packet while attachments are awaited is an error.
        return Err("parse error");
    }
    match packet::parse(text).map_err(|why| {
        tracing::debug!(sid = %s.sid, "malformed socket.io packet: {why}");
        "parse error"
    })? {
        Packet::Connect { nsp: "/", auth }
            if s.eio == Eio::V4 && edge.recovery.is_some() && !s.socket.is_connected() =>
        {
            // With recovery on: a new session with a private id, or a recovered one.
            accept(edge, s, auth);
            super::recovery::connect(edge, s, auth);
        }
        Packet::Connect { nsp: "/", auth } => connect(edge, s, auth),
        Packet::Connect { nsp, .. } => {
            s.socket.send(packet::invalid_namespace(s.eio, nsp));
        }
        Packet::Disconnect { nsp: "/" } => {
            s.socket.connected.store(false, Ordering::Relaxed);
            let channels = std::mem::take(&mut s.lock().io.channels);
            leave_all(edge, s, channels);
        }
        Packet::Event { attachments, .. } | Packet::Ack { attachments, .. } if attachments > 0 => {
            // Binary packets are parsed and their attachments consumed; no Echo event
            // carries binary, so the packet itself is then dropped.
            s.lock().io.attachments = attachments;
        }
        Packet::Event {
            nsp: "/", id, args, ..
        } if s.socket.is_connected() => on_event(edge, s, &args, id),
        // Other namespaces are not joined, ACKs answer nothing we asked: ignored, as
        // the reference server ignores packets for namespaces it has no socket for.
        Packet::Disconnect { .. }
        | Packet::Event { .. }
        | Packet::Ack { .. }
        | Packet::ConnectError => {}
    }
    Ok(())
}

fn on_event(edge: &Arc<Edge>, s: &Arc<Session>, args: &[&RawValue], ack: Option<u64>) {
    let Ok(name) = serde_json::from_str::<String>(args[0].get()) else {
        return;
    };
    let arg = args.get(1).map(|a| a.get()).unwrap_or("null");
    match name.as_str() {
        "subscribe" => {
            if let Ok(sub) = serde_json::from_str::<Subscribe>(arg) {
                subscribe(edge, s, sub, ack);
                return;
            }
        }
        "unsubscribe" => {
            if let Ok(sub) = serde_json::from_str::<Subscribe>(arg) {
                unsubscribe(edge, s, &sub.channel);
            }
        }
        "client event" => {
            if let Ok(ev) = serde_json::from_str::<ClientEvent>(arg) {
                whisper(edge, s, ev);
            }
        }
        _ => return,
    }
    if let Some(id) = ack {
        s.socket.send(packet::ack(id));
    }
}

fn subscribe(edge: &Arc<Edge>, s: &Arc<Session>, sub: Subscribe, ack: Option<u64>) {
    let channel = sub.channel;
    if let Err(bad) = edge_policy::check_channel_name(&channel) {
        // The name rule both edges share; 400 as an HTTP-shaped status, like the others.
        tracing::debug!(sid = %s.sid, ?bad, "refused: invalid channel name");
        s.socket.send(packet::event(
            "subscription_error",
            &[&json_str(&channel), "400"],
        ));
        if let Some(id) = ack {
            s.socket.send(packet::ack(id));
        }
        return;
    }
    let known = |st: &SocketState| {
        st.channels
            .iter()
            .chain(&st.authorizing)
            .any(|c| **c == *channel)
    };
    let config = edge.config();
    let (is_known, held, admitted) = {
        let mut st = s.lock();
        let (is_known, held) = (
            known(&st.io),
            st.io.channels.len() + st.io.authorizing.len(),
        );
        let subscribes =
            (st.io.subscribes).get_or_insert_with(|| Subscribes::new(config.subscribe_rate));
        (is_known, held, is_known || subscribes.admit(Instant::now()))
    };
    if !admitted {
        tracing::debug!(sid = %s.sid, "subscribing too fast");
        refuse(s, &channel, Refused(429));
        if let Some(id) = ack {
            s.socket.send(packet::ack(id));
        }
        return;
    }
    let max = config.max_channels_per_connection;
    if is_known || (max > 0 && held >= max) {
        if !is_known {
            tracing::debug!(sid = %s.sid, %channel, "refused: {max} channels on this socket");
            s.socket.send(packet::event(
                "subscription_error",
                &[&json_str(&channel), "429"],
            ));
        }
        if let Some(id) = ack {
            s.socket.send(packet::ack(id));
        }
        return;
    }
    let kind = ChannelKind::of(&channel);
    if !kind.needs_auth() {
        join(edge, s, &channel, None);
        if let Some(id) = ack {
            s.socket.send(packet::ack(id));
        }
        return;
    }
    let from_subscription = edge.auth.from_auth(sub.auth.as_ref());
    let admitted = {
        let mut st = s.lock();
        let admitted = edge.auth.admit(
            &mut st.io.auth,
            &channel,
            (&s.handshake_headers, &from_subscription),
            s.peer,
            Instant::now(),
        );
        if admitted.is_ok() {
            st.io.authorizing.push(channel.as_str().into());
        }
        admitted
    };
    let headers = match admitted {
        Ok(headers) => headers,
        Err(refused) => {
            refuse(s, &channel, refused);
            if let Some(id) = ack {
                s.socket.send(packet::ack(id));
            }
            return;
        }
    };
    let (edge, s) = (edge.clone(), s.clone());
    tokio::spawn(async move {
        let presence = kind == ChannelKind::Presence;
        let answer = edge
            .auth
            .authorize(&channel, s.socket.id(), headers, presence)
            .await;
        let still_wanted = {
            let mut st = s.lock();
            edge.auth
                .remember(&mut st.io.auth, &channel, &answer, Instant::now());
            let before = st.io.authorizing.len();
            st.io.authorizing.retain(|c| **c != *channel);
            before != st.io.authorizing.len()
        };
        match answer {
            Ok(_) if !still_wanted => {
                tracing::debug!(%channel, "unsubscribed while being authorized: not joined")
            }
            Ok(user) => join(&edge, &s, &channel, user),
            Err(refused) => refuse(&s, &channel, refused),
        }
        if let Some(id) = ack {
            s.socket.send(packet::ack(id));
        }
    });
}

/// Tell the client its subscription was refused, with the status.
fn refuse(s: &Session, channel: &str, Refused(status): Refused) {
    tracing::debug!(%channel, status, "subscription refused");
    s.socket.send(packet::event(
        "subscription_error",
        &[&json_str(channel), &status.to_string()],
    ));
}

fn join(edge: &Arc<Edge>, s: &Session, channel: &str, user: Option<PresenceMember>) {
    let mut st = s.lock();
    if st.closed || !s.socket.is_connected() || st.io.channels.iter().any(|c| **c == *channel) {
        return;
    }
    st.io.channels.push(channel.into());
    let Some(member) = user else {
        let new = edge.rooms.join(channel, &s.socket);
        drop(st);
        if new {
            edge.follow(channel);
        }
        return;
    };
    drop(st);
    let chan = json_str(channel);
    let joining = joining(channel, &member);
    // The joiner's list and the others' `joining` go out within the channel's turn, so a
    // departure decided after this join reaches the joiner after its list.
    let turn = edge.presence.turn(channel);
    let Ok(joined) = turn.join(s.socket.key(), Arc::new(member), 0) else {
        unreachable!("socket.io presence channels have no member limit")
    };
    let new = edge.rooms.join(channel, &s.socket);
    s.socket.send(packet::event(
        "presence:subscribed",
        &[&chan, &members_json(&joined.members)],
    ));
    if joined.first {
        edge.rooms.deliver(channel, Some(s.socket.id()), &joining);
    }
    drop(turn);
    if new {
        edge.follow(channel);
    }
    // A close or an unsubscribe that ran since the channel was noted found nothing to
    // leave yet: leave now (leaving twice is harmless).
    let gone = {
        let st = s.lock();
        st.closed || !st.io.channels.iter().any(|c| **c == *channel)
    };
    if gone {
        leave(edge, s, channel);
    }
}

/// `presence:joining` of `member` on `channel`.
fn joining(channel: &str, member: &PresenceMember) -> Frames {
    Frames::new(packet::event(
        "presence:joining",
        &[&json_str(channel), &member_json(member)],
    ))
}

/// The member the socket `key` is on each presence channel of `channels`.
pub fn memberships(edge: &Edge, key: u64, channels: &[Box<str>]) -> Members {
    (channels.iter())
        .filter(|c| ChannelKind::of(c) == ChannelKind::Presence)
        .filter_map(|c| Some((c.clone(), edge.presence.member(c, key)?)))
        .collect()
}

/// A session taken from another node's keeping joins the presence it had there, as the
/// member the channel's auth made it: the user never left, so nobody hears it arrive,
/// unless no node holds the user any more (its node was taken out meanwhile): then the
/// others hear it arrive again. Its own list is the one it had.
pub fn rejoin_member(edge: &Edge, s: &Session, channel: &str, member: Arc<PresenceMember>) {
    let turn = edge.presence.turn(channel);
    let Ok(joined) = turn.join(s.socket.key(), member.clone(), 0) else {
        unreachable!("socket.io presence channels have no member limit")
    };
    if joined.first {
        edge.rooms
            .deliver(channel, Some(s.socket.id()), &joining(channel, &member));
    }
    drop(turn);
    // A close that ran meanwhile found nothing to leave yet (as in [`join`]).
    if s.lock().closed {
        leave(edge, s, channel);
    }
}

/// A member as Echo's `here` / `joining` / `leaving` receive it: `channel_data`'s
/// `{"user_id":…,"user_info":…}`, `user_info` null when the app gave none.
fn member_json(m: &PresenceMember) -> String {
    let mut out = String::new();
    write_member(&mut out, m);
    out
}

fn write_member(out: &mut String, m: &PresenceMember) {
    out.push_str(&m.channel_data());
}

/// `presence:subscribed`'s member list: a JSON array of [`member_json`]s.
fn members_json(members: &[Arc<PresenceMember>]) -> String {
    let mut out = String::from("[");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_member(&mut out, m);
    }
    out.push(']');
    out
}

fn unsubscribe(edge: &Edge, s: &Session, channel: &str) {
    let removed = {
        let mut st = s.lock();
        st.io.authorizing.retain(|c| **c != *channel);
        let before = st.io.channels.len();
        st.io.channels.retain(|c| **c != *channel);
        before != st.io.channels.len()
    };
    if removed {
        leave(edge, s, channel);
    }
}

/// Leave a channel; on a presence channel, tell the others when this was the user's
/// last socket there. Every way out (unsubscribe, disconnect, close, a slow consumer
/// dropped) comes here.
fn leave(edge: &Edge, s: &Session, channel: &str) {
    let key = s.socket.key();
    if ChannelKind::of(channel) != ChannelKind::Presence {
        if edge.rooms.leave(channel, key) {
            edge.unfollow(channel);
        }
        return;
    }
    let turn = edge.presence.turn(channel);
    let last = turn.leave(key);
    let left = edge.rooms.leave(channel, key);
    announce_leaving(edge, channel, last);
    drop(turn);
    if left {
        edge.unfollow(channel);
    }
}

/// A kept session ended without coming back: the socket `key`, out of its channels'
/// rooms already, leaves their presence (telling the others if it was the user's last).
pub fn forget_member(edge: &Edge, channel: &str, key: u64) {
    if ChannelKind::of(channel) == ChannelKind::Presence {
        let turn = edge.presence.turn(channel);
        announce_leaving(edge, channel, turn.leave(key));
    }
}

/// What other nodes change in the edge's presence channels: its clients hear the
/// arrivals and departures; the app has no webhooks here.
impl Listener for Edge {
    fn changed(&self, channel: &str, apply: &mut dyn FnMut() -> Vec<Heard>) {
        let turn = self.presence.turn(channel);
        for heard in apply() {
            match heard {
                Heard::Arrived(m) => {
                    self.rooms.deliver(channel, None, &joining(channel, &m));
                }
                Heard::Departed(m) => announce_leaving(self, channel, Some(m)),
            }
        }
        drop(turn);
    }

    fn tell_app(&self, _channel: &str, _told: Told) {}

    fn taken(&self, pid: &str) {
        super::recovery::taken_elsewhere(self, pid)
    }
}

/// `presence:leaving` to the channel, when a user's last socket left it. Called within
/// the channel's turn.
fn announce_leaving(edge: &Edge, channel: &str, last: Option<Arc<PresenceMember>>) {
    if let Some(member) = last {
        let f = Frames::new(packet::event(
            "presence:leaving",
            &[&json_str(channel), &member_json(&member)],
        ));
        edge.rooms.deliver(channel, None, &f);
    }
}

/// Leave every channel (disconnect or close).
pub fn leave_all(edge: &Edge, s: &Session, channels: Vec<Box<str>>) {
    for c in channels {
        leave(edge, s, &c);
    }
}

fn whisper(edge: &Edge, s: &Session, ev: ClientEvent<'_>) {
    let data = ev.data.map(|d| d.get()).unwrap_or("null");
    let c = edge.config();
    let policy = edge_policy::ClientEvents {
        enabled: true,
        rate: c.client_event_rate,
        max_bytes: c.max_message_size,
    };
    let verdict = {
        let mut st = s.lock();
        let subscribed = st.io.channels.iter().any(|c| **c == *ev.channel)
            && edge.rooms.is_member(&ev.channel, s.socket.key());
        let now = Instant::now();
        let window = st.io.rate.get_or_insert_with(|| RateWindow::new(now));
        let seen = edge_policy::ClientEvent {
            event: &ev.event,
            channel: &ev.channel,
            subscribed,
            data_len: data.len(),
        };
        policy.check(&seen, window, now)
    };
    if let Err(refused) = verdict {
        tracing::debug!(sid = %s.sid, channel = %ev.channel, ?refused, "client event refused");
        let detail = serde_json::json!({"event": ev.event, "message": refused.socketio_message()})
            .to_string();
        s.socket.send(packet::event(
            "client_event_error",
            &[&json_str(&ev.channel), &detail],
        ));
        return;
    }
    // To the channel's other clients on both edges, through the broker like any
    // publication; never to RESP.
    let payload = Envelope::from_client(&ev.event, ev.data, s.socket.id(), None);
    let channel = Bytes::copy_from_slice(ev.channel.as_bytes());
    let whisper = Publication::new(Namespace::Default, channel, payload).from_client();
    edge.state.broker.publish(whisper);
}
