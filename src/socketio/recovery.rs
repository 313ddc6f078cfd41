//! socket.io's connection state recovery (socket.io-client >= 4.6), on herald's offsets.
//!
//! The wire, as the reference server speaks it: the CONNECT reply carries a private
//! session id, `40{"sid":"…","pid":"…"}`; every publication's event carries its offset as
//! its last argument, `42["App\\Events\\Paid","orders.1",{…},"<offset>"]` (one encoding
//! per publication: the offset is the channel stream's, [`crate::broker::Offset`], the
//! same for every socket). A client that lost its connection uncleanly reconnects with
//! `40{"pid":"…","offset":"<last offset it received>",…auth}`; the server writes every
//! event it missed, with its offset, then the CONNECT reply with its old `sid` and `pid`,
//! and the client sets `socket.recovered`. Otherwise a new session (`recovered` false),
//! never part of what was missed.
//!
//! herald's side:
//! - A close for a transport reason ([`recoverable`]) keeps the session for
//!   `--recovery-window` ([`detach`]): its rooms are left (each saying where it stood) but
//!   its presence is kept, so nobody sees it leave unless the window ends first
//!   ([`sweep`]). A client `disconnect()` (packet 41) ends the session at once.
//! - [`connect`] resumes it: the socket's trail ([`crate::recovery::trail`]) turns the one
//!   offset the client reports into a position on each channel; the socket takes its old
//!   id and key, rejoins its rooms (no new auth, Echo's re-`subscribe` is then a no-op)
//!   with its live frames held back, reads each channel's history after its position,
//!   and writes the replay, the CONNECT reply, then the held frames the replay did not
//!   cover ([`crate::recovery::gate`]). Events the socket was left out of (`toOthers`,
//!   its own whispers) are left out again.
//! - A client back while herald still holds its old connection (a half-open TCP
//!   connection: a phone that changed networks is not heard from until the ping
//!   timeout) names a session that is open, not kept. The private id proves it is that
//!   session's client (only it was sent the pid), so herald closes the old connection as
//!   a transport close, which keeps the session, and resumes it at once. The reference
//!   server answers this with a new session; herald recovers it.
//! - In a cluster a client may come back to another node ([`handover`]): its session,
//!   presence members included, comes from Redis; that node joins the presence the
//!   session had, and the node that kept it ends its copy once told.
//! - A client that has received no event yet has an offset too: right after a new
//!   CONNECT reply herald sends `42["herald:offset","<mark>"]`, an event Echo ignores.
//! - Engine.IO v3 (socket.io-client 2) has no recovery: nothing of this applies.

use super::engine::{new_id, Session};
use super::packet::{self, json_str};
use super::rooms::Frames;
use super::{echo, handover, Edge};
use crate::broker::{self, Namespace, Offset};
use crate::config::Config;
use crate::laravel::{Envelope, PresenceMember};
use crate::metrics;
use crate::recovery::store::{MemoryStore, SessionStore, Taken};
use crate::recovery::trail::Trail;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The edge's recovery settings and kept sessions.
pub struct Recovery {
    store: Box<dyn SessionStore<Detached>>,
    /// Open sessions: private id → Engine.IO session id.
    pub(super) open: Mutex<HashMap<Box<str>, Box<str>>>,
    pub(super) window: Duration,
    trail: usize,
    /// In a cluster, the open sessions' records as last written ([`handover`]).
    pub(super) written: handover::Open,
}

impl Recovery {
    /// None with `--recovery-window 0`.
    pub fn new(c: &Config) -> Option<Recovery> {
        (!c.recovery_limits.window.is_zero()).then(|| Recovery {
            store: Box::new(MemoryStore::new(
                c.recovery_limits.window,
                c.recovery_max_sessions,
            )),
            open: Mutex::default(),
            window: c.recovery_limits.window,
            trail: c.recovery_trail,
            written: handover::Open::default(),
        })
    }

    /// The session with private id `pid` closed (kept or ended): no longer open.
    pub fn closed(&self, pid: &str) {
        self.open.lock().remove(pid);
    }
}

/// Presence channels with the member a session is on each.
pub(super) type Members = Vec<(Box<str>, Arc<PresenceMember>)>;

/// A session kept for its client to come back to.
pub struct Detached {
    pub(super) sid: Box<str>,
    /// Its socket's key in rooms and presence (its presence memberships are kept); None
    /// for a session kept by another node ([`handover`]).
    pub(super) key: Option<u64>,
    /// Its channels, each with its room's last offset when the session left it.
    pub(super) channels: Vec<(Box<str>, Option<Offset>)>,
    /// Its presence channels' members: what a node that takes it from another joins as.
    pub(super) members: Members,
    /// What was written to it lately; None in an open session's record, read from the
    /// backplane after its node went away without keeping it ([`handover`]).
    pub(super) trail: Option<Trail>,
    /// Its copy on the cluster's backplane.
    pub(super) sharing: Arc<handover::Sharing>,
}

/// Why a session was not recovered (the metric's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The client's offset is not in the session's trail, or a channel's history no
    /// longer reaches back to its position.
    TooOld,
    WindowOver,
    UnknownPid,
}

/// Why herald closes an open session whose client came back on a new connection.
const TAKEN_OVER: &str = "transport close (its client is back on a new connection)";

/// The disconnect reasons after which the reference server keeps a session (its
/// `RECOVERABLE_DISCONNECT_REASONS`), as herald names them, and herald's take-over.
pub fn recoverable(reason: &str) -> bool {
    matches!(
        reason,
        "transport close"
            | "transport error"
            | "ping timeout"
            | "server shutdown"
            | "poll connection closed prematurely"
            | TAKEN_OVER
    )
}

/// What socket.io-client adds to its CONNECT to resume (other auth keys are the app's).
#[derive(Deserialize)]
struct Resume {
    pid: Option<String>,
    offset: Option<String>,
}

/// The main-namespace CONNECT of a v4 socket with recovery on: resume the session the
/// client names, or start a new one. Done at once when nothing has to be awaited (a
/// single node); in a cluster the session and the history may have to come from Redis,
/// and the rest is done on a task of its own (the client sends nothing before the reply).
pub fn connect(edge: &Arc<Edge>, s: &Arc<Session>, auth: Option<&RawValue>) {
    let resume = auth.and_then(|a| serde_json::from_str::<Resume>(a.get()).ok());
    let Some(Resume {
        pid: Some(pid),
        offset,
    }) = resume
    else {
        return fresh(edge, s);
    };
    let mut resuming = Box::pin(resume_or_fresh(edge.clone(), s.clone(), pid, offset));
    let mut now = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    if std::future::Future::poll(resuming.as_mut(), &mut now).is_pending() {
        tokio::spawn(resuming);
    }
}

/// Resume the session kept under `pid`, or start a new one.
async fn resume_or_fresh(edge: Arc<Edge>, s: Arc<Session>, pid: String, offset: Option<String>) {
    match restore(&edge, &s, &pid, offset.as_deref()).await {
        Ok(replayed) => {
            metrics::SOCKETIO_RECOVERED.inc();
            metrics::SOCKETIO_REPLAYED.add(replayed as u64);
            tracing::debug!(sid = %s.sid, replayed, "socket.io session recovered");
        }
        Err(why) => {
            let counter = match why {
                Refused::TooOld => &metrics::SOCKETIO_RECOVERY_TOO_OLD,
                Refused::WindowOver => &metrics::SOCKETIO_RECOVERY_WINDOW_OVER,
                Refused::UnknownPid => &metrics::SOCKETIO_RECOVERY_UNKNOWN_PID,
            };
            counter.inc();
            tracing::info!(sid = %s.sid, reason = ?why, "socket.io session not recovered: a new session");
            fresh(&edge, &s);
        }
    }
}

/// A new session: a new socket id (unless a failed recovery gave it its old one), a
/// new private id, and an offset the client holds from the start.
fn fresh(edge: &Edge, s: &Session) {
    let Some(r) = &edge.recovery else {
        return;
    };
    s.socket.set_id(new_id());
    let pid = new_id();
    s.socket.keep_trail(Trail::new(r.trail));
    s.lock().io.pid = Some(pid.clone());
    r.open.lock().insert(pid.clone(), s.sid.clone());
    s.socket.connected.store(true, Ordering::Relaxed);
    s.socket.send(connected(s.socket.id(), &pid));
    let mark = Trail::mark();
    let herald_offset = packet::event("herald:offset", &[&json_str(&mark.to_string())]);
    s.socket.send_marked(&Frames::new(herald_offset), mark);
}

/// `40{"sid":…,"pid":…}`: both ids are base64url, nothing to escape.
fn connected(sid: &str, pid: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!(r#"40{{"sid":"{sid}","pid":"{pid}"}}"#))
}

/// Resume the session kept under `pid` on `s`; returns how many events were replayed.
async fn restore(
    edge: &Arc<Edge>,
    s: &Arc<Session>,
    pid: &str,
    offset: Option<&str>,
) -> Result<usize, Refused> {
    let Some(r) = &edge.recovery else {
        return Err(Refused::UnknownPid);
    };
    let mut taken = r.store.take(pid, Instant::now());
    if matches!(taken, Taken::Unknown) {
        let old = r.open.lock().get(pid).cloned();
        let old = old.filter(|sid| *sid != s.sid);
        if let Some(old) = old.and_then(|sid| edge.sessions.get(&sid)) {
            edge.close(&old, TAKEN_OVER);
            metrics::SOCKETIO_RECOVERY_TAKEN_OVER.inc();
            taken = r.store.take(pid, Instant::now());
        }
    }
    if matches!(taken, Taken::Kept(_)) {
        metrics::SOCKETIO_RECOVERY_SESSIONS.dec();
    }
    let d = handover::take(edge, pid, taken).await?;
    let at_leave: Vec<Option<Offset>> = d.channels.iter().map(|(_, o)| *o).collect();
    let last = offset.and_then(|o| o.parse::<Offset>().ok());
    let positions = last.and_then(|last| match &d.trail {
        Some(trail) => {
            let positions = trail.positions(last, &at_leave)?;
            Some(positions.into_iter().map(|p| (p, false)).collect())
        }
        None => handover::open_positions(last, &d.channels),
    });
    let Some(positions) = positions else {
        end(edge, d);
        return Err(Refused::TooOld);
    };
    // Take the old identity, then rejoin with live frames held back.
    let socket = &s.socket;
    if !socket.set_id(d.sid.clone()) {
        end(edge, d);
        return Err(Refused::UnknownPid);
    }
    // Kept by another node: this node joins its presence (keys are per node).
    let from_elsewhere = d.key.is_none();
    if let Some(key) = d.key {
        socket.rekey(key);
    }
    socket.keep_trail(d.trail.unwrap_or_else(|| Trail::new(r.trail)));
    socket.hold();
    let names: Vec<Box<str>> = d.channels.into_iter().map(|(c, _)| c).collect();
    s.lock().io.channels = names.clone();
    for c in &names {
        if edge.rooms.join(c, socket) {
            edge.follow(c);
        }
    }
    if from_elsewhere {
        for (c, member) in d.members {
            if names.contains(&c) {
                echo::rejoin_member(edge, s, &c, member);
            }
        }
    }
    // What each channel published after the client's position, as it was sent.
    let mut replay = Vec::new();
    let mut upto = Vec::with_capacity(names.len());
    // A normal new session if not all of it: the rooms and presence it had are left.
    let give_up = |why| {
        socket.unhold();
        let channels = std::mem::take(&mut s.lock().io.channels);
        echo::leave_all(edge, s, channels);
        Err(why)
    };
    for (c, (pos, nothing_since)) in names.iter().zip(positions) {
        let broker = &*edge.state.broker;
        let missed = broker::missed(broker, &Namespace::Default, c.as_bytes(), pos).await;
        let Some(missed) = missed.ok().filter(|m| !nothing_since || m.is_empty()) else {
            return give_up(Refused::TooOld);
        };
        upto.push(missed.last().and_then(|p| p.offset).unwrap_or(pos));
        for p in &missed {
            let Some(env) = Envelope::decode(&p.payload) else {
                continue;
            };
            if env.socket.as_deref() == Some(socket.id()) {
                continue;
            }
            replay.push(edge.event_frames(c, &env, &env.json_data(), p.offset));
        }
    }
    if edge.sessions.get(&s.sid).is_none() {
        // Its connection closed while the history was read.
        return give_up(Refused::UnknownPid);
    }
    s.lock().io.pid = Some(pid.into());
    r.open.lock().insert(pid.into(), s.sid.clone());
    socket.connected.store(true, Ordering::Relaxed);
    let reply = Frames::new(connected(socket.id(), pid));
    socket.release(&replay, std::slice::from_ref(&reply), &upto);
    if from_elsewhere {
        // After its joins: the node that kept it ends its copy (its presence) once it
        // has heard them, so the user is on some node all along.
        edge.presence.handed_over(pid);
    }
    Ok(replay.len())
}

/// Keep a session that closed uncleanly for its client to come back to: out of its
/// rooms (each saying where it stood then), still in presence.
pub fn detach(edge: &Edge, s: &Session, pid: Box<str>, channels: Vec<Box<str>>) {
    let Some(r) = &edge.recovery else {
        return echo::leave_all(edge, s, channels);
    };
    let key = s.socket.key();
    let channels: Vec<_> = channels
        .into_iter()
        .map(|c| {
            let stream = edge.stream_position(&c);
            let (left, last) = edge.rooms.detach(&c, key);
            if left {
                edge.unfollow(&c);
            }
            (c, last.or(stream))
        })
        .collect();
    let names: Vec<Box<str>> = channels.iter().map(|(c, _)| c.clone()).collect();
    let d = Detached {
        sid: s.socket.id().into(),
        key: Some(key),
        members: echo::memberships(edge, key, &names),
        channels,
        trail: Some(s.socket.take_trail().unwrap_or_else(|| Trail::new(r.trail))),
        sharing: Arc::default(),
    };
    let copy = handover::Copy::of(&d);
    match r.store.keep(&pid, d, Instant::now()) {
        Ok(()) => {
            metrics::SOCKETIO_RECOVERY_SESSIONS.inc();
            copy.share(edge, &pid, r.window);
        }
        Err(d) => {
            metrics::SOCKETIO_RECOVERY_NOT_KEPT.inc();
            tracing::warn!(
                sid = %s.sid,
                "socket.io session not kept for recovery: --recovery-max-sessions reached"
            );
            end(edge, d);
        }
    }
}

/// A kept session that will not come back here: its presence here ends now.
pub(super) fn end(edge: &Edge, d: Detached) {
    let Some(key) = d.key else {
        return;
    };
    for (c, _) in &d.channels {
        echo::forget_member(edge, c, key);
    }
}

/// Why herald closes an open session whose client another node took over.
const TAKEN_ELSEWHERE: &str = "its client is back on another node";

/// Another node took the session kept under `pid` (its client is back there) and joined
/// its presence ([`crate::presence::Listener::taken`]): this node's copy ends now, its
/// presence left while the user is present on that node, so nobody hears it leave. An
/// open session of it here (a connection half-open since its client left) is closed,
/// neither kept nor forgotten on the backplane (the record there is the taker's now).
pub(super) fn taken_elsewhere(edge: &Edge, pid: &str) {
    let Some(r) = &edge.recovery else {
        return;
    };
    if let Taken::Kept(d) = r.store.take(pid, Instant::now()) {
        metrics::SOCKETIO_RECOVERY_SESSIONS.dec();
        tracing::debug!(sid = %d.sid, "socket.io session recovered on another node");
        handover::withdraw(edge, pid, &d);
        return end(edge, d);
    }
    let open = r.open.lock().get(pid).cloned();
    if let Some(s) = open.and_then(|sid| edge.sessions.get(&sid)) {
        s.lock().io.pid = None;
        r.closed(pid);
        edge.close(&s, TAKEN_ELSEWHERE);
    }
}

/// End the sessions whose window closed, a few times per window, until shutdown.
pub async fn sweep(edge: Weak<Edge>, shutdown: Shutdown) {
    let every = match edge
        .upgrade()
        .and_then(|e| e.recovery.as_ref().map(|r| r.window))
    {
        Some(w) => (w / 8).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(edge) = edge.upgrade() else {
            return;
        };
        let Some(r) = &edge.recovery else {
            return;
        };
        for d in r.store.expire(Instant::now()) {
            metrics::SOCKETIO_RECOVERY_SESSIONS.dec();
            tracing::debug!(sid = %d.sid, "socket.io session not recovered within the window");
            end(&edge, d);
        }
        handover::write_open(&edge, r).await;
    }
}
