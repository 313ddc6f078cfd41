//! Engine.IO sessions: ids, protocol generation, transport state and heartbeats.
//!
//! A session outlives its transports: it starts on long-polling or WebSocket, may be
//! upgraded from one to the other, and ends on close, heartbeat timeout or error. Its
//! socket (the [`Socket`]) is what rooms hold. Heartbeats go in each generation's
//! direction: v4 servers ping every `ping_interval` and wait `ping_timeout` for the
//! pong; v3 clients ping and the server closes after `ping_interval + ping_timeout`
//! without one. Nothing runs between deadlines: the transport's task sleeps until the
//! next one.
//!
//! A v4 session must join the main namespace (send its CONNECT) within
//! `--socketio-connect-timeout-ms` (socket.io's `connectTimeout`), holding one of the
//! `--socketio-max-unconnected` places until then.

use super::echo::SocketState;
use super::packet::{self, Eio, EnginePacket};
use super::rooms::Socket;
use super::Edge;
use crate::auth_shield::ClientHeaders;
use crate::outbox::Outbox;
use base64::Engine as _;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a session ends when its client sends the close packet (`1`).
pub const CLIENT_CLOSE: &str = "transport close";

/// Which transport carries the session now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Polling,
    /// A WebSocket is probing; polling still carries packets.
    Upgrading,
    WebSocket,
}

pub struct SessionState {
    pub transport: Transport,
    /// A long-poll GET is waiting / a POST is being read (a second one is an error).
    pub get_active: bool,
    pub post_active: bool,
    pub closed: bool,
    /// v4: when the next ping is due; v3: when the client's ping is overdue.
    ping_due: Instant,
    /// v4: a ping is out and its pong must come by then.
    pong_due: Option<Instant>,
    /// v4, until the client CONNECTs to the main namespace.
    pub unconnected: Option<Unconnected>,
    pub io: SocketState,
}

/// One Engine.IO connection and its Socket.IO socket on the main namespace.
pub struct Session {
    pub sid: Box<str>,
    pub eio: Eio,
    pub socket: Arc<Socket>,
    /// The handshake's headers that may be forwarded to the auth endpoint.
    pub handshake_headers: ClientHeaders,
    /// The client's address (the TCP peer of the handshake), for `X-Forwarded-For`.
    pub peer: Option<IpAddr>,
    st: Mutex<SessionState>,
    /// Wakes a long-poll still pending when the session moves to WebSocket.
    pub upgraded: Notify,
}

/// A random id as base64id makes them: 20 URL-safe characters.
pub fn new_id() -> Box<str> {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into_boxed_str()
}

/// What a session keeps of its handshake request.
pub struct Handshake {
    pub headers: ClientHeaders,
    pub peer: Option<IpAddr>,
    /// v4: the session's place among those not yet connected (v3 connects at once).
    pub slot: Option<UnconnectedSlot>,
}

/// A session that has not sent its CONNECT yet.
pub struct Unconnected {
    /// It is closed then.
    pub by: Instant,
    _slot: UnconnectedSlot,
}

/// One of the `--socketio-max-unconnected` places; given back when dropped.
pub struct UnconnectedSlot(Arc<AtomicUsize>);

impl Drop for UnconnectedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// A new session on `transport`; not yet registered.
    pub fn new(edge: &Edge, eio: Eio, transport: Transport, handshake: Handshake) -> Arc<Session> {
        let sid = new_id();
        let socket = Arc::new(Socket::new(
            crate::broker::next_subscriber_id(),
            Arc::new(Outbox::new(edge.config().outbox)),
            transport == Transport::WebSocket,
        ));
        // Socket.IO v2 names the main-namespace socket after the Engine.IO session;
        // v3+ give it an id of its own when it connects (a recovered one, its old id).
        if eio == Eio::V3 {
            socket.set_id(sid.clone());
        }
        let now = Instant::now();
        let c = edge.config();
        let ping_due = match eio {
            Eio::V4 => now + c.ping_interval,
            Eio::V3 => now + c.ping_interval + c.ping_timeout,
        };
        Arc::new(Session {
            sid,
            eio,
            socket,
            handshake_headers: handshake.headers,
            peer: handshake.peer,
            upgraded: Notify::new(),
            st: Mutex::new(SessionState {
                transport,
                get_active: false,
                post_active: false,
                closed: false,
                ping_due,
                pong_due: None,
                unconnected: handshake.slot.map(|slot| Unconnected {
                    by: now + c.socketio_connect_timeout,
                    _slot: slot,
                }),
                io: SocketState::default(),
            }),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.st.lock()
    }

    /// Queue the open packet (and for v3 the implicit main-namespace CONNECT).
    pub fn open(&self, edge: &Edge, upgrades: bool) {
        let c = edge.config();
        self.socket.send(packet::open(
            self.eio,
            &self.sid,
            upgrades,
            c.ping_interval.as_millis() as u64,
            c.ping_timeout.as_millis() as u64,
            c.max_http_buffer_size,
        ));
        if self.eio == Eio::V3 {
            super::echo::connect(edge, self, None);
        }
    }

    /// When the heartbeat needs attention next; None once closed.
    pub fn heartbeat_due(&self) -> Option<Instant> {
        let st = self.st.lock();
        if st.closed {
            return None;
        }
        let heartbeat = st.pong_due.unwrap_or(st.ping_due);
        Some(
            st.unconnected
                .as_ref()
                .map_or(heartbeat, |u| u.by.min(heartbeat)),
        )
    }

    /// Run the heartbeat: send a due ping, or fail with the reason to close.
    pub fn tick(&self, edge: &Edge) -> Result<(), &'static str> {
        if let Some(closed) = self.socket.outbox.closed() {
            return Err(if closed.is_overflow() {
                "slow consumer"
            } else {
                "closed"
            });
        }
        let now = Instant::now();
        let mut st = self.st.lock();
        if st.unconnected.as_ref().is_some_and(|u| now >= u.by) {
            return Err("connect timeout");
        }
        match (self.eio, st.pong_due) {
            (Eio::V4, Some(due)) if now >= due => Err("ping timeout"),
            (Eio::V4, None) if now >= st.ping_due => {
                st.pong_due = Some(now + edge.config().ping_timeout);
                drop(st);
                self.socket.send(Bytes::from_static(b"2"));
                Ok(())
            }
            (Eio::V3, _) if now >= st.ping_due => Err("ping timeout"),
            _ => Ok(()),
        }
    }

    /// One text Engine.IO packet from the client.
    pub fn on_text(self: &Arc<Self>, edge: &Arc<Edge>, text: &str) -> Result<(), &'static str> {
        match packet::parse_engine(text).map_err(|_| "parse error")? {
            EnginePacket::Close => Err(CLIENT_CLOSE),
            EnginePacket::Ping(data) => {
                if self.eio == Eio::V4 {
                    return Err("invalid heartbeat direction");
                }
                let c = edge.config();
                self.st.lock().ping_due = Instant::now() + c.ping_interval + c.ping_timeout;
                self.socket.send(Bytes::from(format!("3{data}")));
                Ok(())
            }
            EnginePacket::Pong(_) => {
                if self.eio == Eio::V3 {
                    return Err("invalid heartbeat direction");
                }
                let mut st = self.st.lock();
                st.pong_due = None;
                st.ping_due = Instant::now() + edge.config().ping_interval;
                Ok(())
            }
            EnginePacket::Message(m) => super::echo::on_packet(edge, self, m),
            EnginePacket::Binary => self.on_binary(),
            EnginePacket::Upgrade | EnginePacket::Noop | EnginePacket::Open => Ok(()),
        }
    }

    /// A binary message: a Socket.IO attachment, expected only after a binary packet.
    pub fn on_binary(&self) -> Result<(), &'static str> {
        let mut st = self.st.lock();
        if st.io.attachments == 0 {
            return Err("parse error");
        }
        st.io.attachments -= 1;
        Ok(())
    }
}

const SHARDS: usize = 16;

/// Every live session by sid.
pub struct Sessions {
    shards: Vec<Mutex<HashMap<Box<str>, Arc<Session>>>>,
    /// Sessions (and handshakes under way) that have not sent their CONNECT yet.
    unconnected: Arc<AtomicUsize>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            unconnected: Arc::default(),
        }
    }
}

impl Sessions {
    fn shard(&self, sid: &str) -> &Mutex<HashMap<Box<str>, Arc<Session>>> {
        let h = sid
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[h % SHARDS]
    }

    /// A place for a new v4 session that has yet to CONNECT; None when `max` (0: no
    /// limit) are taken.
    pub fn reserve_unconnected(&self, max: usize) -> Option<UnconnectedSlot> {
        self.unconnected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| UnconnectedSlot(self.unconnected.clone()))
    }

    pub fn insert(&self, s: &Arc<Session>) {
        self.shard(&s.sid).lock().insert(s.sid.clone(), s.clone());
    }

    pub fn get(&self, sid: &str) -> Option<Arc<Session>> {
        self.shard(sid).lock().get(sid).cloned()
    }

    pub fn remove(&self, sid: &str) {
        self.shard(sid).lock().remove(sid);
    }

    /// Sessions open now, whatever their transport and whether connected yet.
    pub fn count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Every socket connected to the main namespace (for broadcast-to-all).
    pub fn for_each_connected(&self, mut f: impl FnMut(&Socket)) {
        for shard in &self.shards {
            for s in shard.lock().values() {
                if s.socket.is_connected() {
                    f(&s.socket);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::Shared;

    fn edge() -> Edge {
        Edge::new(Shared::new(Config::default()))
    }

    fn handshake(edge: &Edge, eio: Eio) -> Handshake {
        Handshake {
            headers: ClientHeaders::default(),
            peer: None,
            slot: match eio {
                Eio::V4 => Some(edge.sessions.reserve_unconnected(2).unwrap()),
                Eio::V3 => None,
            },
        }
    }

    #[tokio::test]
    async fn a_v4_session_that_never_connects_times_out() {
        let edge = Arc::new(edge());
        let s = Session::new(
            &edge,
            Eio::V4,
            Transport::WebSocket,
            handshake(&edge, Eio::V4),
        );
        let due = s.heartbeat_due().unwrap();
        assert!(
            due <= Instant::now() + edge.config().socketio_connect_timeout,
            "the connect deadline is watched"
        );
        assert_eq!(s.tick(&edge), Ok(()));
        s.lock().unconnected.as_mut().unwrap().by = Instant::now();
        assert_eq!(s.tick(&edge), Err("connect timeout"));
        // Once connected, only heartbeats matter, and the slot is given back.
        super::super::echo::connect(&edge, &s, None);
        assert!(s.lock().unconnected.is_none());
        assert_eq!(s.tick(&edge), Ok(()));
        // v3 sockets are connected to / from the start.
        let v3 = Session::new(
            &edge,
            Eio::V3,
            Transport::WebSocket,
            handshake(&edge, Eio::V3),
        );
        assert!(v3.lock().unconnected.is_none());
    }

    #[test]
    fn unconnected_sessions_are_capped() {
        let edge = edge();
        let a = edge.sessions.reserve_unconnected(2).unwrap();
        let _b = edge.sessions.reserve_unconnected(2).unwrap();
        assert!(edge.sessions.reserve_unconnected(2).is_none());
        drop(a);
        assert!(edge.sessions.reserve_unconnected(2).is_some());
        assert!(
            edge.sessions.reserve_unconnected(0).is_some(),
            "0: no limit"
        );
    }
}
