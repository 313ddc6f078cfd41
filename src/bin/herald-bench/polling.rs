//! socket.io v4 the way a browser's socket.io-client connects by default: Engine.IO 4
//! over HTTP long-polling first, then upgraded to WebSocket.
//!
//! Over one keep-alive HTTP connection: the handshake GET (the open packet and its
//! sid), the CONNECT `40` in a POST, GETs until the CONNECT is answered, the Echo
//! `subscribe` event in a POST, and one more GET left pending, as engine.io-client
//! always keeps a poll open. Then the upgrade as engine.io-client does it: a WebSocket
//! on `transport=websocket&sid=…`, `2probe` → `3probe`, pause polling (wait for the
//! pending GET, which the server answers with a noop `6`), and `5`. The HTTP
//! connection is closed and the WebSocket carries on as [`Conn`] does for `sio4`.
//! Pings met while polling are answered with a POST `3`.

use crate::client::{connect_answer, echo_subscribe, Conn, Target};
use crate::net;
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Engine.IO 4 joins the packets of a polling payload with the record separator.
const SEPARATOR: char = '\u{1e}';

/// Handshake, CONNECT and subscribe over long-polling, then upgrade; the upgraded
/// WebSocket is returned.
pub async fn connect(t: &Target) -> Result<Conn, String> {
    let mut p = Polling {
        io: net::connect(t.source, t.server).await?,
        buf: BytesMut::new(),
        server: t.server,
        path: "/socket.io/?EIO=4&transport=polling".to_string(),
    };
    p.send_get().await?;
    let open = p.payload().await?;
    let sid = sid(&open)?;
    p.path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    p.post("40").await?;
    p.poll_until(false, |packet| connect_answer(packet.as_bytes()))
        .await??;
    p.post(&echo_subscribe(&t.channel)).await?;
    p.send_get().await?;
    let io = net::Stream::Plain(net::connect(t.source, t.server).await?);
    let mut ws = Conn::websocket(
        io,
        t.server,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
    )
    .await?;
    ws.send("2probe").await?;
    let answer = ws.next_text().await?;
    if &answer[..] != b"3probe" {
        return Err(format!(
            "probe answered {:?}",
            String::from_utf8_lossy(&answer)
        ));
    }
    p.poll_until(true, |packet| (packet == "6").then_some(()))
        .await?;
    ws.send("5").await?;
    Ok(ws)
}

/// The sid from the open packet `0{"sid":"…",…}`.
fn sid(payload: &str) -> Result<String, String> {
    let open = payload.split(SEPARATOR).next().unwrap_or("");
    let json = open
        .strip_prefix('0')
        .ok_or_else(|| format!("bad open: {open:.80}"))?;
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|_| format!("bad open: {open:.80}"))?;
    v["sid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("open without sid: {open:.80}"))
}

/// One session's keep-alive HTTP connection.
struct Polling {
    io: TcpStream,
    buf: BytesMut,
    server: SocketAddr,
    /// The request target: the handshake's, then with the session's sid.
    path: String,
}

impl Polling {
    async fn send_get(&mut self) -> Result<(), String> {
        let req = net::request("GET", &self.path, self.server, "", b"");
        self.io.write_all(&req).await.map_err(|e| e.to_string())
    }

    /// The answer to the GET sent last: its payload.
    async fn payload(&mut self) -> Result<String, String> {
        let r = net::response(&mut self.io, &mut self.buf).await?;
        if r.status != 200 {
            return Err(format!("poll refused: {}", r.excerpt()));
        }
        String::from_utf8(r.body.to_vec()).map_err(|_| "poll payload is not UTF-8".to_string())
    }

    /// Send `packet` in a POST; the server answers `ok`.
    async fn post(&mut self, packet: &str) -> Result<(), String> {
        let req = net::request(
            "POST",
            &self.path,
            self.server,
            "Content-Type: text/plain;charset=UTF-8\r\n",
            packet.as_bytes(),
        );
        self.io.write_all(&req).await.map_err(|e| e.to_string())?;
        let r = net::response(&mut self.io, &mut self.buf).await?;
        if r.status != 200 || &r.body[..] != b"ok" {
            return Err(format!("post {packet:.20} refused: {}", r.excerpt()));
        }
        Ok(())
    }

    /// Poll (the first GET already sent when `pending`) until `wanted` recognises a
    /// packet; pings on the way are answered, a close packet is an error.
    async fn poll_until<T>(
        &mut self,
        mut pending: bool,
        wanted: impl Fn(&str) -> Option<T>,
    ) -> Result<T, String> {
        loop {
            if !pending {
                self.send_get().await?;
            }
            pending = false;
            let payload = self.payload().await?;
            let mut found = None;
            for packet in payload.split(SEPARATOR) {
                match packet {
                    "1" => return Err("session closed while polling".into()),
                    "2" => self.post("3").await?,
                    p => found = found.or_else(|| wanted(p)),
                }
            }
            if let Some(f) = found {
                return Ok(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sid_comes_from_the_open_packet() {
        let open = "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}";
        assert_eq!(sid(open).unwrap(), "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(
            sid(&format!("{open}\u{1e}40")).unwrap(),
            "lv_VI97HAXpY6yYWAAAC"
        );
        assert!(sid("4hello").is_err());
        assert!(sid("0{\"upgrades\":[]}").is_err());
    }
}
