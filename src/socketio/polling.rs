//! HTTP long-polling: GET waits for packets, POST carries the client's packets.
//!
//! A GET is answered as soon as anything is queued for the session (a publication,
//! a heartbeat ping, a noop during an upgrade), with everything queued joined in one
//! payload. One GET and one POST at a time: a second concurrent one is a 400 that
//! closes the session, as in the reference server. A body over
//! `max_http_buffer_size` is a 413, one not all sent within `http_body_timeout` a 408
//! that closes the session (as the reference server closes it when a POST ends
//! early). JSONP (`j=`) wraps the payload in a script call for the oldest browsers
//! socket.io-client 2 supports. Between requests the session's own task keeps the
//! heartbeat and watches the outbox, so a client that stops polling is dropped by the
//! same output-buffer limits as a WebSocket one.

use super::engine::{Handshake, Session, Transport, CLIENT_CLOSE};
use super::packet::{self, Eio, V3Item};
use super::{Edge, Request};
use crate::outbox::Closed;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::StatusCode;
use std::sync::Arc;
use warp::reply::{Reply, Response};

/// A new polling session: the open packet is the answer.
pub async fn handshake(
    edge: Arc<Edge>,
    eio: Eio,
    handshake: Handshake,
    jsonp: Option<&str>,
) -> Response {
    let s = Session::new(&edge, eio, Transport::Polling, handshake);
    edge.sessions.insert(&s);
    crate::metrics::SOCKETIO_POLLING_SESSIONS.inc();
    s.open(&edge, true);
    edge.state
        .connections
        .spawn(heartbeat(edge.clone(), s.clone()));
    let mut out = Vec::new();
    let _ = s.socket.outbox.take_now(&mut out);
    payload_response(eio, &out, jsonp)
}

/// The session's own task while it is on polling (there is no connection between
/// requests): pings and their timeouts, and the outbox. A client that stops polling
/// misses its pings and is closed at the ping timeout, and sooner if its outbox goes
/// over its limits meanwhile (at once past the hard limit, at the end of the soft
/// window), as a WebSocket subscriber that stops reading is. Counted and logged here,
/// once, whichever request or task closed the session.
async fn heartbeat(edge: Arc<Edge>, s: Arc<Session>) {
    if !watch(&edge, &s).await {
        return; // the WebSocket connection's task keeps the heartbeat and the outbox now
    }
    if let Some(closed) = s.socket.outbox.closed().filter(Closed::is_overflow) {
        crate::metrics::SLOW_CONSUMERS_DROPPED.inc();
        tracing::warn!(sid = %s.sid, "socket.io polling client dropped: {closed}");
    }
}

/// Run the heartbeat until the session ends (true) or moves to WebSocket (false).
async fn watch(edge: &Edge, s: &Session) -> bool {
    let upgraded = s.upgraded.notified();
    tokio::pin!(upgraded);
    upgraded.as_mut().enable();
    let stop = edge.state.shutdown.cancelled();
    tokio::pin!(stop);
    loop {
        if s.lock().transport == Transport::WebSocket {
            return false;
        }
        let Some(due) = s.heartbeat_due() else {
            return true;
        };
        // Biased, the upgrade first: once it happened, the outbox's one watcher is the
        // WebSocket connection's.
        tokio::select! {
            biased;
            _ = &mut upgraded => return false,
            _ = tokio::time::sleep_until(due) => {}
            _ = &mut stop => {
                edge.close(s, "server shutdown");
                return true;
            }
            closed = s.socket.outbox.closing() => {
                edge.close(s, if closed.is_overflow() { "slow consumer" } else { "closed" });
                return true;
            }
        }
        if s.lock().transport == Transport::WebSocket {
            return false;
        }
        if let Err(why) = s.tick(edge) {
            edge.close(s, why);
            return true;
        }
    }
}

/// Clears the one-request-at-a-time flag; a GET dropped before it was answered means
/// the client went away, which ends the session as in the reference server.
struct Active {
    edge: Arc<Edge>,
    s: Arc<Session>,
    get: bool,
    answered: bool,
}

impl Active {
    /// Mark a GET or POST in flight; None if one already was (the session is then closed).
    fn begin(edge: &Arc<Edge>, s: &Arc<Session>, get: bool) -> Option<Active> {
        let mut st = s.lock();
        let flag = if get {
            &mut st.get_active
        } else {
            &mut st.post_active
        };
        if *flag {
            drop(st);
            edge.close(
                s,
                if get {
                    "overlap from client"
                } else {
                    "data request overlap from client"
                },
            );
            return None;
        }
        *flag = true;
        Some(Active {
            edge: edge.clone(),
            s: s.clone(),
            get,
            answered: false,
        })
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut st = self.s.lock();
        if self.get {
            st.get_active = false;
        } else {
            st.post_active = false;
        }
        drop(st);
        if !self.answered {
            self.edge
                .close(&self.s, "poll connection closed prematurely");
        }
    }
}

/// GET: wait for packets.
pub async fn poll(edge: Arc<Edge>, s: Arc<Session>, jsonp: Option<&str>) -> Response {
    let Some(mut active) = Active::begin(&edge, &s, true) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // Registered before the transport is checked, so an upgrade cannot slip between.
    let upgraded = s.upgraded.notified();
    let mut upgraded = std::pin::pin!(upgraded);
    upgraded.as_mut().enable();
    let moved = s.lock().transport == Transport::WebSocket;
    let mut out = Vec::new();
    // Biased: once the session has moved to WebSocket, the outbox is not ours to drain.
    let drained = tokio::select! {
        biased;
        _ = std::future::ready(()), if moved => {
            out.push(Bytes::from_static(b"6"));
            Ok(())
        }
        _ = upgraded => {
            out.push(Bytes::from_static(b"6"));
            Ok(())
        }
        _ = edge.state.shutdown.cancelled() => Err(Closed::Server("server shutdown")),
        // Observed as the response is handed to HTTP, its write being hyper's.
        r = s.socket.outbox.drain(&mut out) => r.map(|oldest| {
            crate::metrics::DELIVERY_SECONDS.observe_since(oldest);
        }),
    };
    active.answered = true;
    if let Err(closed) = drained {
        // Counted by the heartbeat task if it was for being too slow a reader.
        edge.close(&s, "closed");
        // The client's own close (a POST of `1`) ends its pending poll with a noop, as
        // engine.io does; herald closing the session ends it with the close packet.
        let last: &'static [u8] = if closed == Closed::Server(CLIENT_CLOSE) {
            b"6"
        } else {
            b"1"
        };
        out = vec![Bytes::from_static(last)];
    }
    payload_response(s.eio, &out, jsonp)
}

fn payload_response(eio: Eio, packets: &[Bytes], jsonp: Option<&str>) -> Response {
    let body = packet::encode_payload(eio, packets);
    let body = match jsonp {
        None => body,
        Some(j) => {
            let text = String::from_utf8_lossy(&body);
            let js = serde_json::to_string(&text)
                .expect("strings serialize")
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029");
            let index: String = j.chars().filter(char::is_ascii_digit).collect();
            format!("___eio[{index}]({js});").into_bytes()
        }
    };
    let mut res = Response::new(body.into());
    res.headers_mut()
        .insert("content-type", "text/plain; charset=UTF-8".parse().unwrap());
    res
}

/// POST: the client's packets.
pub async fn data<S, B>(edge: Arc<Edge>, s: Arc<Session>, req: &Request, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let Some(mut active) = Active::begin(&edge, &s, false) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let binary = req.header("content-type") == Some("application/octet-stream");
    if binary && s.eio == Eio::V4 {
        active.answered = true;
        edge.close(&s, "invalid content");
        return StatusCode::BAD_REQUEST.into_response();
    }
    let (max, deadline) = (
        edge.config().max_http_buffer_size,
        edge.config().http_body_timeout,
    );
    let body = match tokio::time::timeout(deadline, read_body(body, max)).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            active.answered = true;
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
        Err(_) => {
            // As the reference server does when a data request ends before its body.
            crate::metrics::HTTP_TIMEOUTS.inc();
            active.answered = true;
            edge.close(&s, "data request timed out");
            let mut res = StatusCode::REQUEST_TIMEOUT.into_response();
            res.headers_mut()
                .insert("connection", "close".parse().unwrap());
            return res;
        }
    };
    active.answered = true;
    if let Err(why) = deliver(&edge, &s, &body, binary, req.q("j").is_some()) {
        edge.close(&s, why);
    }
    let mut res = Response::new("ok".into());
    res.headers_mut()
        .insert("content-type", "text/html".parse().unwrap());
    res
}

/// The body, or None when it exceeds `max` bytes.
async fn read_body<S, B>(body: S, max: usize) -> Option<Bytes>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let Ok(mut chunk) = chunk else {
            return Some(Bytes::new());
        };
        if buf.len() + chunk.remaining() > max {
            return None;
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            let n = c.len();
            buf.extend_from_slice(c);
            chunk.advance(n);
        }
    }
    Some(buf.freeze())
}

/// Hand each packet of a POST body to the session.
fn deliver(
    edge: &Arc<Edge>,
    s: &Arc<Session>,
    body: &[u8],
    binary: bool,
    jsonp: bool,
) -> Result<(), &'static str> {
    if binary {
        for item in packet::split_v3_binary(body).map_err(|_| "parse error")? {
            match item {
                V3Item::Text(t) => s.on_text(edge, &t)?,
                V3Item::Binary => s.on_binary()?,
            }
        }
        return Ok(());
    }
    let text = std::str::from_utf8(body).map_err(|_| "parse error")?;
    let owned;
    let text = if jsonp {
        owned = jsonp_data(text).ok_or("parse error")?;
        owned.as_str()
    } else {
        text
    };
    for p in packet::split_payload(s.eio, text).map_err(|_| "parse error")? {
        s.on_text(edge, p)?;
    }
    Ok(())
}

/// A JSONP POST is a form with the payload in `d`, newlines escaped by the client.
pub fn jsonp_data(form: &str) -> Option<String> {
    let d = super::parse_query(form).remove("d")?;
    // The client sends `\n` for a newline and `\\n` for an escaped one.
    let mut out = String::with_capacity(d.len());
    let mut rest = d.as_str();
    while let Some(i) = rest.find("\\n") {
        if rest[..i].ends_with('\\') {
            out.push_str(&rest[..i - 1]);
            out.push_str("\\n");
        } else {
            out.push_str(&rest[..i]);
            out.push('\n');
        }
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonp_newlines() {
        assert_eq!(jsonp_data("d=5%3A4a%5Cnb").unwrap(), "5:4a\nb");
        assert_eq!(jsonp_data("d=6%3A4a%5C%5Cnb").unwrap(), "6:4a\\nb");
        assert!(jsonp_data("x=1").is_none());
    }
}
