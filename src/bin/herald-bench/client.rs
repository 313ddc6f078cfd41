//! Subscriber connections: a minimal WebSocket client per protocol, lean enough that
//! thousands fit in one process next to the server on a 2-core box.
//!
//! Only sampled connections look inside messages (for latency and sequence gaps);
//! the rest count frames and check the warm-up marker with one byte search.
//! `sio4-polling` connections start on long-polling ([`crate::polling`]) and, once
//! upgraded, run here like every other WebSocket connection.

use crate::net::{self, find, Stream};
use crate::stats::Tally;
use bytes::{Buf, BytesMut};
use clap::ValueEnum;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// socket.io v4 (Engine.IO 4) over WebSocket
    Sio4,
    /// socket.io v4 as a browser connects by default: Engine.IO 4 long-polling
    /// (handshake, CONNECT and subscribe over HTTP), then upgraded to WebSocket
    Sio4Polling,
    /// socket.io v2 (Engine.IO 3) over WebSocket
    Sio3,
    /// Pusher protocol 7
    Pusher,
}

impl Protocol {
    /// The name `--protocol` takes.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    }
}

/// The Engine.IO packet of laravel-echo's socket.io connector joining `channel`.
pub fn echo_subscribe(channel: &str) -> String {
    format!(r#"42["subscribe",{{"channel":"{channel}","auth":{{"headers":{{}}}}}}]"#)
}

/// Whether a Socket.IO packet answers the client's CONNECT: Some(Ok) when accepted,
/// Some(Err) when refused, None for anything else.
pub fn connect_answer(p: &[u8]) -> Option<Result<(), String>> {
    if p.starts_with(b"40") {
        Some(Ok(()))
    } else if p.starts_with(b"44") {
        Some(Err(format!(
            "connect refused: {}",
            String::from_utf8_lossy(p)
        )))
    } else {
        None
    }
}

/// Everything one connection needs to know.
#[derive(Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub protocol: Protocol,
    pub app_key: String,
    pub channel: String,
    pub source: IpAddr,
    pub sampled: bool,
    /// `wss://` with this client (`--tls-ca`); None: `ws://`.
    pub tls: Option<tokio_rustls::TlsConnector>,
}

/// Connect, subscribe, then count deliveries until the process ends.
/// Returns Err when the connection or the subscription failed.
pub async fn run(t: Target, tally: Arc<Tally>, ready: tokio::sync::mpsc::Sender<bool>) {
    let mut conn = match Conn::open(&t).await {
        Ok(c) => c,
        Err(e) => {
            tally.note_error(&e);
            let _ = ready.send(false).await;
            return;
        }
    };
    let _ = ready.send(true).await;
    drop(ready);
    conn.receive(&t, &tally).await;
    tally.closed.inc();
}

/// One WebSocket connection and what it has read but not yet handled.
pub struct Conn {
    io: Stream,
    buf: BytesMut,
}

fn mask_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 14);
    v.push(0x80 | opcode);
    if payload.len() < 126 {
        v.push(0x80 | payload.len() as u8);
    } else {
        v.push(0x80 | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    // A fixed mask is allowed by the protocol and keeps this client cheap.
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    v
}

impl Conn {
    /// Connect, handshake and subscribe, within 15 s.
    async fn open(t: &Target) -> Result<Conn, String> {
        tokio::time::timeout(Duration::from_secs(15), Conn::establish(t))
            .await
            .map_err(|_| "handshake or subscribe timed out".to_string())?
    }

    async fn establish(t: &Target) -> Result<Conn, String> {
        let path = match t.protocol {
            Protocol::Sio4Polling => return crate::polling::connect(t).await,
            Protocol::Sio4 => "/socket.io/?EIO=4&transport=websocket".to_string(),
            Protocol::Sio3 => "/socket.io/?EIO=3&transport=websocket".to_string(),
            Protocol::Pusher => format!(
                "/app/{}?protocol=7&client=herald-bench&version=1",
                t.app_key
            ),
        };
        let io = Stream::connect(t.source, t.server, t.tls.as_ref()).await?;
        let mut c = Conn::websocket(io, t.server, &path).await?;
        c.subscribe(t).await?;
        Ok(c)
    }

    /// The WebSocket opening handshake on `io` for `path`.
    pub async fn websocket(mut io: Stream, server: SocketAddr, path: &str) -> Result<Conn, String> {
        let req = net::request(
            "GET",
            path,
            server,
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            b"",
        );
        io.write_all(&req).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::new();
        let answer = net::response(&mut io, &mut buf).await?;
        if answer.status != 101 {
            return Err(format!("upgrade refused: {}", answer.excerpt()));
        }
        Ok(Conn { io, buf })
    }

    async fn fill(&mut self) -> Result<(), String> {
        net::read_more(&mut self.io, &mut self.buf).await
    }

    pub async fn send(&mut self, text: &str) -> Result<(), String> {
        self.io
            .write_all(&mask_frame(0x1, text.as_bytes()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next complete server frame's (opcode, payload); server frames are unmasked.
    async fn next_frame(&mut self) -> Result<(u8, BytesMut), String> {
        loop {
            if let Some(f) = take_frame(&mut self.buf) {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Drop the connection abruptly, as a network failure does: a TCP reset (SO_LINGER
    /// 0), no WebSocket close frame, no FIN.
    pub fn reset(self) {
        let _ = socket2::SockRef::from(self.io.tcp()).set_linger(Some(Duration::ZERO));
    }

    /// The next text frame's payload (cancel-safe: what was read stays buffered).
    pub async fn next_text(&mut self) -> Result<BytesMut, String> {
        loop {
            let (op, payload) = self.next_frame().await?;
            match op {
                0x1 => return Ok(payload),
                0x8 => return Err(format!("closed: {}", String::from_utf8_lossy(&payload))),
                _ => continue,
            }
        }
    }

    async fn subscribe(&mut self, t: &Target) -> Result<(), String> {
        let first = self.next_text().await?;
        match t.protocol {
            Protocol::Sio4 | Protocol::Sio3 | Protocol::Sio4Polling => {
                if !first.starts_with(b"0{") {
                    return Err(format!("bad open: {}", String::from_utf8_lossy(&first)));
                }
                if t.protocol != Protocol::Sio3 {
                    self.send("40").await?;
                }
                loop {
                    let p = self.next_text().await?;
                    if let Some(answer) = connect_answer(&p) {
                        answer?;
                        break;
                    }
                }
                self.send(&echo_subscribe(&t.channel)).await
            }
            Protocol::Pusher => {
                if find(&first, b"pusher:connection_established").is_none() {
                    return Err(format!("bad open: {}", String::from_utf8_lossy(&first)));
                }
                let sub = format!(
                    r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
                    t.channel
                );
                self.send(&sub).await?;
                loop {
                    let p = self.next_text().await?;
                    if find(&p, b"subscription_succeeded").is_some() {
                        return Ok(());
                    }
                    if find(&p, b"error").is_some() {
                        return Err(format!(
                            "subscribe refused: {}",
                            String::from_utf8_lossy(&p)
                        ));
                    }
                }
            }
        }
    }

    async fn receive(&mut self, t: &Target, tally: &Tally) {
        let mut last_seq: Option<u64> = None;
        let mut v3_ping = tokio::time::interval(Duration::from_secs(20));
        v3_ping.tick().await;
        loop {
            while let Some((op, payload)) = take_frame(&mut self.buf) {
                if op != 0x1 {
                    if op == 0x8 {
                        tally.note_error("server closed the connection");
                        return;
                    }
                    continue;
                }
                if self
                    .on_text(t, tally, &payload, &mut last_seq)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let read = if t.protocol == Protocol::Sio3 {
                tokio::select! {
                    r = self.fill() => r,
                    _ = v3_ping.tick() => self.send("2").await,
                }
            } else {
                self.fill().await
            };
            if let Err(e) = read {
                tally.note_error(&e);
                return;
            }
            if self.buf.is_empty() && self.buf.capacity() > 8192 {
                self.buf = BytesMut::new();
            }
        }
    }

    async fn on_text(
        &mut self,
        t: &Target,
        tally: &Tally,
        p: &[u8],
        last_seq: &mut Option<u64>,
    ) -> Result<(), String> {
        let heartbeat = match t.protocol {
            Protocol::Sio4 | Protocol::Sio4Polling => (p == b"2").then_some("3"),
            Protocol::Sio3 => None,
            Protocol::Pusher => {
                find(p, b"pusher:ping").map(|_| r#"{"event":"pusher:pong","data":{}}"#)
            }
        };
        if let Some(reply) = heartbeat {
            return self.send(reply).await;
        }
        // The marker sits near the front of every bench payload, so a short search
        // tells bench messages (and warm-up ones) from anything else.
        let Some(warm) = warm_marker(p) else {
            return Ok(());
        };
        if warm {
            tally.warm.inc();
            return Ok(());
        }
        tally.received.inc();
        if t.sampled {
            if let (Some(seq), Some(ts)) = (number_after(p, b"seq"), number_after(p, b"ts")) {
                tally.record_latency(ts);
                if let Some(prev) = *last_seq {
                    if seq > prev + 1 {
                        tally.gaps.add(seq - prev - 1);
                    }
                }
                *last_seq = Some(seq);
            }
        }
        Ok(())
    }
}

fn take_frame(buf: &mut BytesMut) -> Option<(u8, BytesMut)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0F;
    let (len, hdr) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < hdr + len {
        return None;
    }
    buf.advance(hdr);
    Some((op, buf.split_to(len)))
}

/// Bench payloads start `{"w":W,` (JSON data) or `{\"w\":W,` (Pusher's string-encoded
/// data) within the first bytes of the frame: Some(true) during warm-up, Some(false)
/// when measured, None for anything else.
fn warm_marker(p: &[u8]) -> Option<bool> {
    let head = &p[..p.len().min(96)];
    let at = find(head, b"w\":").or_else(|| find(head, b"w\\\":"))?;
    let flag = head[at..].iter().find(|b| b.is_ascii_digit())?;
    Some(*flag == b'1')
}

/// The integer after `"key":` (or `\"key\":` inside a JSON-encoded string).
pub fn number_after(p: &[u8], key: &[u8]) -> Option<u64> {
    let mut pat = Vec::with_capacity(key.len() + 2);
    pat.push(b'"');
    pat.extend_from_slice(key);
    let mut at = find(p, &pat)? + pat.len();
    while at < p.len() && matches!(p[at], b'\\' | b'"' | b':' | b' ') {
        at += 1;
    }
    let digits = p[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&p[at..at + digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_both_encodings() {
        assert_eq!(
            number_after(br#"42["bench","c",{"w":0,"seq":12,"ts":99}]"#, b"seq"),
            Some(12)
        );
        assert_eq!(
            number_after(br#"{"data":"{\"w\":0,\"seq\":7,\"ts\":5}"}"#, b"seq"),
            Some(7)
        );
        assert_eq!(number_after(b"nothing", b"ts"), None);
    }

    #[test]
    fn warm_marker_in_both_encodings() {
        assert_eq!(
            warm_marker(br#"42["bench","c",{"w":1,"seq":0}]"#),
            Some(true)
        );
        assert_eq!(
            warm_marker(br#"{"event":"bench","channel":"bench.0","data":"{\"w\":0,\"seq\":7}"}"#),
            Some(false)
        );
        assert_eq!(warm_marker(br#"{"event":"pusher:ping","data":{}}"#), None);
    }
}
