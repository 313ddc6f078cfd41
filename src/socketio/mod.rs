//! The socket.io edge: Laravel Echo's socket.io connector and socket.io-client 2/3/4.
//!
//! - [`packet`]: Engine.IO and Socket.IO wire formats (both generations).
//! - [`engine`]: sessions, transports, heartbeats.
//! - [`polling`] and [`websocket`]: the two transports and the upgrade between them.
//! - [`cors`]: the CORS headers for the origins [`crate::edge_policy`] allows.
//! - [`rooms`]: channels and the sockets in them.
//! - [`echo`]: subscribe / unsubscribe / whisper with Laravel's authorization, and
//!   presence (kept in [`crate::presence`]) announced as laravel-echo-server did.
//!
//! The edge is one broker subscriber: it subscribes to a channel's stream (default
//! namespace) for each socket that joins the channel, and each publication's envelope
//! is decoded once and its `42["event","channel",data]` packet built once, shared by
//! every member socket (except the publisher's own, `toOthers()`).

mod cors;
mod echo;
mod engine;
pub mod packet;
mod polling;
pub use polling::jsonp_data;
mod handover;
mod recovery;
mod rooms;
mod websocket;

use crate::auth_shield::AuthShield;
use crate::broker::{Namespace, Offset, Publication, StreamSubscriber, SubscriberId};
use crate::config::Config;
use crate::laravel::{self, ChannelKind, Envelope};
use crate::outbox::Closed;
use crate::presence::{Listener, Scope};
use crate::state::State;
use crate::ws::Upgrade;
use bytes::Buf;
use engine::{Session, Sessions, Transport};
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use packet::Eio;
use rooms::{Frames, Rooms};
use std::collections::HashMap;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

/// The socket.io edge's presence namespace: its presence channels are its own, apart
/// from every Pusher app's.
const PRESENCE_NAMESPACE: &str = "socket.io";

/// Everything the socket.io edge shares across its connections.
pub struct Edge {
    state: State,
    /// The edge's id as a broker subscriber.
    id: SubscriberId,
    rooms: Rooms,
    /// The socket.io edge's namespace of the shared presence.
    presence: Scope,
    sessions: Sessions,
    auth: AuthShield,
    /// Connection state recovery; None with `--recovery-window 0`.
    recovery: Option<recovery::Recovery>,
}

impl Edge {
    /// The socket.io edge, or None with `--socketio false`. With
    /// `--socketio-broadcast-public` it hears every channel of the default namespace.
    pub fn start(state: &State) -> Option<Arc<Edge>> {
        if !state.config().socketio {
            tracing::info!("socket.io edge off (--socketio false)");
            return None;
        }
        tracing::info!("socket.io edge on /socket.io/");
        let edge = Arc::new(Edge::new(state.clone()));
        let listener: Arc<dyn Listener> = edge.clone();
        edge.presence.listen(Arc::downgrade(&listener));
        if state.config().socketio_broadcast_public {
            state
                .broker
                .stream_psubscribe(&Namespace::Default, b"*", edge.clone());
        }
        if edge.recovery.is_some() {
            tokio::spawn(recovery::sweep(
                Arc::downgrade(&edge),
                state.shutdown.clone(),
            ));
        }
        Some(edge)
    }

    fn new(state: State) -> Self {
        let c = state.config();
        Edge {
            id: crate::broker::next_subscriber_id(),
            rooms: Rooms::default(),
            presence: Scope::new(state.presence.clone(), PRESENCE_NAMESPACE),
            sessions: Sessions::default(),
            auth: AuthShield::new(&c),
            recovery: recovery::Recovery::new(&c),
            state,
        }
    }

    /// Its sessions open now, and each room with its number of sockets (what the
    /// dashboard shows; read under brief locks, off the delivery path).
    pub fn census(&self) -> (usize, Vec<(String, usize)>) {
        (self.sessions.count(), self.rooms.sizes())
    }

    fn config(&self) -> Arc<Config> {
        self.state.config()
    }

    /// End a session: leave its channels (announcing presence departures), forget it,
    /// and close its outbox so its transport finishes.
    fn close(&self, s: &Session, reason: &'static str) {
        let (channels, pid) = {
            let mut st = s.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            st.unconnected = None;
            if st.transport != engine::Transport::WebSocket {
                crate::metrics::SOCKETIO_POLLING_SESSIONS.dec();
            }
            (std::mem::take(&mut st.io.channels), st.io.pid.take())
        };
        tracing::debug!(sid = %s.sid, "socket.io session closed: {reason}");
        self.sessions.remove(&s.sid);
        if let (Some(r), Some(pid)) = (&self.recovery, &pid) {
            r.closed(pid);
        }
        let connected = s
            .socket
            .connected
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        match pid {
            Some(pid) if connected && recovery::recoverable(reason) => {
                recovery::detach(self, s, pid, channels)
            }
            _ => {
                if let Some(pid) = &pid {
                    handover::forget(self, pid);
                }
                echo::leave_all(self, s, channels)
            }
        }
        s.socket.outbox.close(Closed::Server(reason));
    }

    /// One more socket in `channel`: the broker counts it. Called with no lock held.
    fn follow(self: &Arc<Self>, channel: &str) {
        let me: Arc<dyn StreamSubscriber> = self.clone();
        let broker = &self.state.broker;
        broker.stream_subscribe(&Namespace::Default, channel.as_bytes(), me);
    }

    /// Where `channel`'s stream stands here: where its room stands until the room's first
    /// delivery (the stream numbered nothing since the room was made, or the room would
    /// have had it; it may have moved to where the cluster's history stands, see
    /// `broker/redis/joins.rs`). Read before the room, so that a delivery between the two
    /// reads shows in the room's.
    fn stream_position(&self, channel: &str) -> Option<Offset> {
        (self.state.broker).position(&Namespace::Default, channel.as_bytes())
    }

    /// One socket fewer in `channel`. Called with no lock held.
    fn unfollow(&self, channel: &str) {
        (self.state.broker).stream_unsubscribe(&Namespace::Default, channel.as_bytes(), self.id);
    }

    /// Send one broadcast to the channel's sockets, and with `--socketio-broadcast-public`
    /// a public one to every connected socket too.
    fn broadcast(&self, name: &str, env: &Envelope, offset: Option<Offset>) -> usize {
        let except = env.socket.as_deref();
        let data = env.json_data();
        let f = self.event_frames(name, env, &data, offset);
        let mut n = self.rooms.deliver(name, except, &f);
        if self.config().socketio_broadcast_public && ChannelKind::of(name) == ChannelKind::Public {
            // The classic tutorial: io.emit(channel + ':' + event, data) to everyone.
            let f = Frames::new(packet::event(&format!("{name}:{}", env.event), &[&data]));
            self.sessions.for_each_connected(|m| {
                if except != Some(m.id()) && m.deliver(&f) {
                    n += 1;
                }
            });
        }
        n
    }

    /// A publication's `42["event","channel",data]`, and with recovery on its offset as
    /// the last argument (socket.io-client keeps an event's last string argument as
    /// the offset to recover from).
    fn event_frames(
        &self,
        name: &str,
        env: &Envelope,
        data: &str,
        offset: Option<Offset>,
    ) -> Frames {
        let channel = packet::json_str(name);
        match offset.filter(|_| self.recovery.is_some()) {
            Some(o) => {
                let o = packet::json_str(&o.to_string());
                Frames::at(packet::event(&env.event, &[&channel, data, &o]), offset)
            }
            None => Frames::new(packet::event(&env.event, &[&channel, data])),
        }
    }
}

impl StreamSubscriber for Edge {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn deliver(&self, p: &Publication) -> usize {
        let n = laravel::broadcast(p, |name, env| self.broadcast(name, env, p.offset));
        crate::metrics::PROTOCOL_DELIVERIES[0].add(n as u64);
        n
    }
}

/// `/socket.io/`: the Engine.IO endpoint for both transports; none (404) without the
/// edge (`--socketio false`).
pub fn routes(edge: Option<Arc<Edge>>) -> BoxedFilter<(Response,)> {
    let Some(edge) = edge else {
        return warp::any()
            .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
            .boxed();
    };
    let upgrade = crate::ws::upgrade(&edge.state.connections)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path("socket.io")
        .and(warp::path::tail())
        .and_then(|tail: warp::path::Tail| async move {
            if tail.as_str().is_empty() {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(crate::http_server::peer_addr())
        .and(upgrade)
        .and(warp::body::stream())
        .then(move |method, query: String, headers, peer, upgrade, body| {
            let edge = edge.clone();
            async move {
                let req = Request {
                    method,
                    query: parse_query(&query),
                    headers,
                    peer,
                    upgrade,
                };
                handle(edge, req, body).await
            }
        })
        .boxed()
}

/// One HTTP request to the endpoint, parsed.
struct Request {
    method: Method,
    query: HashMap<String, String>,
    headers: HeaderMap,
    /// The TCP peer: the client, or the reverse proxy in front of herald.
    peer: Option<std::net::SocketAddr>,
    upgrade: Option<Upgrade>,
}

impl Request {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Engine.IO's error codes, with the reference server's messages.
#[derive(Clone, Copy, Debug)]
enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl EngineError {
    fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// As engine.io answers: JSON with status 400 (403 for Forbidden) to HTTP
    /// requests, a bare `400 Bad Request` with the message to WebSocket upgrades.
    fn reply(self, upgrade: bool) -> Response {
        let mut res = if upgrade {
            let mut r = Response::new(self.message().into());
            r.headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            r.headers_mut()
                .insert("connection", "close".parse().unwrap());
            r
        } else {
            let body = format!(
                r#"{{"code":{},"message":"{}"}}"#,
                self as u8,
                self.message()
            );
            let mut r = Response::new(body.into());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        };
        *res.status_mut() = match (self, upgrade) {
            (EngineError::Forbidden, false) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        res
    }
}

async fn handle<S, B>(edge: Arc<Edge>, req: Request, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let origin = req.header("origin").map(str::to_owned);
    if let Some(o) = &origin {
        if !crate::edge_policy::origin_allowed(&edge.config().allowed_origins, Some(o)) {
            tracing::debug!(origin = o, "socket.io request from a disallowed origin");
            return EngineError::Forbidden.reply(req.upgrade.is_some());
        }
    }
    if req.method == Method::OPTIONS {
        return cors::preflight(
            origin.as_deref(),
            req.header("access-control-request-headers"),
        );
    }
    let mut res = match route(edge, req, body).await {
        Ok(res) => res,
        Err((e, upgrade)) => e.reply(upgrade),
    };
    cors::decorate(&mut res, origin.as_deref());
    res
}

async fn route<S, B>(
    edge: Arc<Edge>,
    mut req: Request,
    body: S,
) -> Result<Response, (EngineError, bool)>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let upgrade = req.upgrade.take();
    let upgrading = upgrade.is_some();
    let fail = |e| Err((e, upgrading));
    let websocket = match req.q("transport") {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return fail(EngineError::UnknownTransport),
    };
    if let Some(sid) = req.q("sid") {
        let Some(s) = edge.sessions.get(sid) else {
            return fail(EngineError::UnknownSid);
        };
        let current = s.lock().transport;
        let on_websocket = current == Transport::WebSocket;
        if !upgrading && on_websocket != websocket {
            return fail(EngineError::BadRequest);
        }
        if !upgrading && !on_websocket {
            // A request that comes after the session's heartbeat deadline finds it gone,
            // even if the session's task has not woken to close it yet.
            if let Err(why) = s.tick(&edge) {
                edge.close(&s, why);
                return fail(EngineError::UnknownSid);
            }
        }
        return match (upgrade, websocket) {
            // One that is upgrading or has upgraded turns a second WebSocket away there.
            (Some(up), true) => Ok(websocket::upgrade_session(edge, s, up)),
            // As engine.io: a WebSocket for a session, but not for the WebSocket
            // transport, is accepted and closed (polling takes no upgrades).
            (Some(up), false) => Ok(websocket::turn_away(up)),
            (None, _) => Ok(match req.method {
                Method::GET => polling::poll(edge, s, req.q("j")).await,
                Method::POST => polling::data(edge, s, &req, body).await,
                _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }),
        };
    }
    if req.method != Method::GET {
        return fail(EngineError::BadHandshakeMethod);
    }
    if websocket != upgrading {
        return fail(EngineError::BadRequest);
    }
    // engine.io takes a missing or unknown `EIO` for 3, which it refuses by default
    // (allowEIO3); herald refuses it whether or not it accepts v3.
    let eio = match req.q("EIO") {
        Some("4") => Eio::V4,
        Some("3") if edge.config().socketio_eio3 => Eio::V3,
        _ => return fail(EngineError::UnsupportedProtocolVersion),
    };
    let slot = match eio {
        Eio::V3 => None,
        Eio::V4 => {
            let max = edge.config().socketio_max_unconnected;
            let Some(slot) = edge.sessions.reserve_unconnected(max) else {
                crate::metrics::SOCKETIO_HANDSHAKES_REFUSED.inc();
                tracing::warn!(
                    "socket.io handshake refused: {max} sessions have not sent CONNECT \
                     (--socketio-max-unconnected)"
                );
                return fail(EngineError::Forbidden);
            };
            Some(slot)
        }
    };
    let handshake = engine::Handshake {
        headers: edge.auth.from_handshake(&req.headers),
        peer: req.peer.map(|a| a.ip()),
        slot,
    };
    Ok(match upgrade {
        Some(up) => websocket::handshake(edge, eio, up, handshake),
        None => polling::handshake(edge, eio, handshake, req.q("j")).await,
    })
}

/// Query string → map, percent-decoded; the first value of a key wins.
fn parse_query(q: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = parse_query("EIO=4&transport=polling&t=N8&j=0&d=a%20b+c%ZZ&EIO=3");
        assert_eq!(q["EIO"], "4");
        assert_eq!(q["d"], "a b c%ZZ");
        assert_eq!(parse_query("d=%e2%80%a8")["d"], "\u{2028}");
        assert_eq!(parse_query("d=100%")["d"], "100%");
    }
}
