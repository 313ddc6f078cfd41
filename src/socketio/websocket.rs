//! The WebSocket transport: direct connections and the polling → WebSocket upgrade.
//!
//! A direct connection opens its session on the WebSocket. An upgrade probes first:
//! the client sends `2probe` on the new WebSocket, herald answers `3probe` and sends a
//! noop `6` to the pending long-poll so the client can pause polling, then the
//! client's `5` moves the session: what is queued is reframed for the WebSocket and
//! the connection is driven by [`ws::drive`] from then on. A message the client began
//! right after `5` must be complete within the ping timeout (no heartbeat runs until
//! it is), or the session is closed.

use super::engine::{Handshake, Session, Transport};
use super::packet::Eio;
use super::Edge;
use crate::ws::frame::{self, Decoder};
use crate::ws::{self, Flow, Message, Upgrade, WsStream};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use warp::reply::{Reply, Response};

/// How long a probing WebSocket may take to send `5` (engine.io's upgradeTimeout).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// A new session directly on a WebSocket.
///
/// What the closure captures stays in the connection's task for the connection's
/// whole life, so the handshake is boxed (8 bytes there instead of 64, freed once the
/// session has it), and the closure returns the connection's future itself rather
/// than an `async` wrapper holding a second copy of the stream.
pub fn handshake(edge: Arc<Edge>, eio: Eio, up: Upgrade, handshake: Handshake) -> Response {
    let handshake = Box::new(handshake);
    up.reply(move |io| {
        let s = Session::new(&edge, eio, Transport::WebSocket, *handshake);
        edge.sessions.insert(&s);
        s.open(&edge, false);
        drive(SessionHandler::new(edge, s), io)
    })
    .into_response()
}

/// Accept a WebSocket herald will not use and close it at once, as engine.io does with
/// one for a session that is upgrading or has upgraded, or for the polling transport.
pub fn turn_away(up: Upgrade) -> Response {
    up.reply(|mut io| async move { close(&mut io).await })
        .into_response()
}

/// A close frame, then the connection ends.
async fn close(io: &mut WsStream) {
    let mut bye = vec![frame::close(1000, "")];
    let _ = crate::net_write::write_all(io, &mut bye).await;
}

/// Probe a polling session's WebSocket and move the session onto it; a WebSocket for a
/// session that is already upgrading or upgraded is turned away.
pub fn upgrade_session(edge: Arc<Edge>, s: Arc<Session>, up: Upgrade) -> Response {
    up.reply(move |mut io| async move {
        // Claimed once the WebSocket exists, so a handshake that never completes cannot
        // leave the session stuck half-upgraded; a second probe in parallel is turned away.
        let claimed = {
            let mut st = s.lock();
            let free = st.transport == Transport::Polling && !st.closed;
            if free {
                st.transport = Transport::Upgrading;
            }
            free
        };
        if !claimed {
            return close(&mut io).await;
        }
        let mut rbuf = BytesMut::new();
        let mut decoder = Decoder::default();
        let upgraded = tokio::time::timeout(
            UPGRADE_TIMEOUT,
            probe(&edge, &s, &mut io, &mut rbuf, &mut decoder),
        )
        .await
        .unwrap_or(false);
        let moved = {
            let mut st = s.lock();
            if upgraded && !st.closed {
                st.transport = Transport::WebSocket;
                crate::metrics::SOCKETIO_POLLING_SESSIONS.dec();
                true
            } else {
                if st.transport == Transport::Upgrading {
                    st.transport = Transport::Polling;
                }
                false
            }
        };
        if !moved {
            return close(&mut io).await;
        }
        // Release a long-poll still waiting (clients normally pause polling first),
        // then reframe what is queued for the WebSocket.
        s.upgraded.notify_waiters();
        s.socket.switch_to_websocket();
        let mut conn = SessionHandler::new(edge.clone(), s.clone());
        // Packets the client sent right after `5`, possibly in the same segment.
        let rest = leftovers(&mut conn, &mut io, &mut rbuf, &mut decoder);
        let rest = tokio::time::timeout(edge.config().ping_timeout, rest)
            .await
            .unwrap_or(Err("incomplete message after upgrade"));
        if let Err(why) = rest {
            edge.close(&s, why);
            return;
        }
        drive(conn, io).await
    })
    .into_response()
}

/// The probe exchange; true once the client sent `5`.
async fn probe(
    edge: &Edge,
    s: &Session,
    io: &mut WsStream,
    rbuf: &mut BytesMut,
    decoder: &mut Decoder,
) -> bool {
    let max = edge.config().max_http_buffer_size;
    loop {
        loop {
            match decoder.decode(rbuf, max) {
                Ok(None) => break,
                Ok(Some(Message::Text(t))) if &t[..] == b"2probe" => {
                    let mut out = vec![frame::text(b"3probe")];
                    if crate::net_write::write_all(io, &mut out).await.is_err() {
                        return false;
                    }
                    // Lets the pending long-poll return so the client can pause it.
                    s.socket.send(Bytes::from_static(b"6"));
                }
                Ok(Some(Message::Text(t))) if &t[..] == b"5" => return true,
                Ok(Some(Message::Ping(p))) => {
                    let mut out = vec![frame::pong(&p)];
                    if crate::net_write::write_all(io, &mut out).await.is_err() {
                        return false;
                    }
                }
                Ok(Some(Message::Pong(_))) => {}
                _ => return false,
            }
        }
        match io.read_buf(rbuf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let closed = s.lock().closed;
        if closed {
            return false;
        }
    }
}

/// Handle complete messages already read; read on until a message boundary.
async fn leftovers(
    conn: &mut SessionHandler,
    io: &mut WsStream,
    rbuf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<(), &'static str> {
    let max = conn.edge.config().max_http_buffer_size;
    let mut out = Vec::new();
    while !rbuf.is_empty() {
        match decoder.decode(rbuf, max) {
            Ok(Some(Message::Close(_))) | Err(_) => return Err("transport error"),
            Ok(Some(msg)) => {
                if let Message::Ping(p) = &msg {
                    out.push(frame::pong(p));
                }
                if let Flow::Close(..) = ws::Handler::on_message(conn, msg, &mut out) {
                    return Err("parse error");
                }
            }
            Ok(None) => match io.read_buf(rbuf).await {
                Ok(0) | Err(_) => return Err("transport close"),
                Ok(_) => {}
            },
        }
    }
    if !out.is_empty() {
        crate::net_write::write_all(io, &mut out)
            .await
            .map_err(|_| "transport error")?;
    }
    Ok(())
}

/// The connection's future from here on: a plain function returning [`ws::drive`]'s
/// future, so the task holds that future and not a wrapper with copies of its arguments.
fn drive(conn: SessionHandler, io: WsStream) -> impl std::future::Future<Output = ()> + Send {
    let (outbox, max, shutdown) = (
        conn.s.socket.outbox.clone(),
        conn.edge.config().max_http_buffer_size,
        conn.edge.state.shutdown.clone(),
    );
    ws::drive(io, outbox, conn, max, shutdown)
}

/// The session as a [`ws::Handler`]: replies go through the session's outbox, so
/// they stay in order with publications. Counted in `WS_CONNECTIONS` while it lives.
struct SessionHandler {
    edge: Arc<Edge>,
    s: Arc<Session>,
}

impl SessionHandler {
    fn new(edge: Arc<Edge>, s: Arc<Session>) -> Self {
        crate::metrics::SOCKETIO_WS_CONNECTIONS.inc();
        SessionHandler { edge, s }
    }
}

impl Drop for SessionHandler {
    fn drop(&mut self) {
        crate::metrics::SOCKETIO_WS_CONNECTIONS.dec();
    }
}

impl ws::Handler for SessionHandler {
    type Awaited = ();

    fn on_message(&mut self, msg: Message, _out: &mut Vec<Bytes>) -> Flow {
        let result = match msg {
            Message::Text(t) => match std::str::from_utf8(&t) {
                Ok(text) => self.s.on_text(&self.edge, text),
                Err(_) => Err("parse error"),
            },
            // v3 prefixes binary messages with their Engine.IO type (4, message).
            Message::Binary(b) => match (self.s.eio, b.first()) {
                (Eio::V3, Some(4)) | (Eio::V4, _) => self.s.on_binary(),
                _ => Err("parse error"),
            },
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Ok(()),
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(why) => {
                self.edge.close(&self.s, why);
                Flow::Close(1000, why.into())
            }
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        self.s.heartbeat_due()
    }

    fn on_tick(&mut self, _out: &mut Vec<Bytes>) -> Flow {
        match self.s.tick(&self.edge) {
            Ok(()) => Flow::Continue,
            Err(why) => {
                self.edge.close(&self.s, why);
                Flow::Close(1000, why.into())
            }
        }
    }

    fn on_close(&mut self, _why: &str) {
        self.edge.close(&self.s, "transport close");
    }
}
