//! Shared helpers for the Rust integration tests: start herald in-process on free
//! loopback ports, talk raw bytes to its RESP port, read a WebSocket's text frames.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use herald::config::Config;
use herald::server::Running;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for bytes it expects before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// The defaults, on free loopback ports.
pub fn config() -> Config {
    Config {
        redis_bind: "127.0.0.1:0".parse().unwrap(),
        http_bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// Start herald with the defaults on free ports.
pub async fn start() -> Running {
    start_with(config()).await
}

/// Start herald with this configuration (give it ports of 0).
pub async fn start_with(config: Config) -> Running {
    herald::server::start(config)
        .await
        .expect("herald starts on loopback")
}

/// Send `request` on a fresh connection, expect exactly `reply`, then the server's close.
pub async fn refused(addr: SocketAddr, request: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) {
    let mut c = Raw::connect(addr).await;
    c.roundtrip(request, reply).await;
    c.expect_closed().await;
}

/// A raw TCP client for byte-exact RESP conversations.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("send");
    }

    /// Read exactly `expected.len()` bytes and compare them.
    pub async fn expect(&mut self, expected: impl AsRef<[u8]>) {
        let expected = expected.as_ref();
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {:?}",
                    String::from_utf8_lossy(expected)
                )
            })
            .expect("read");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// Send a request and compare the whole reply.
    pub async fn roundtrip(&mut self, request: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) {
        self.send(request).await;
        self.expect(reply).await;
    }

    /// The server closes the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest))
            .await
            .expect("server did not close the connection")
            .ok();
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Nothing arrives for a short while (and the connection stays open).
    pub async fn expect_silence(&mut self) {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), self.stream.read(&mut b)).await {
            Err(_) => {}
            Ok(Ok(0)) => panic!("connection closed"),
            Ok(r) => panic!("unexpected data: {r:?} {:?}", b),
        }
    }
}

/// A RESP multibulk request from its arguments.
pub fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A RESP bulk string.
pub fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// RESP2 `message` delivery.
pub fn message(channel: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = b"*3\r\n$7\r\nmessage\r\n".to_vec();
    out.extend(bulk(channel));
    out.extend(bulk(payload));
    out
}

/// RESP2 `pmessage` delivery.
pub fn pmessage(pattern: &[u8], channel: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = b"*4\r\n$8\r\npmessage\r\n".to_vec();
    out.extend(bulk(pattern));
    out.extend(bulk(channel));
    out.extend(bulk(payload));
    out
}

/// A RESP2 (un)subscribe confirmation.
pub fn confirm(verb: &str, name: &[u8], count: i64) -> Vec<u8> {
    let mut out = b"*3\r\n".to_vec();
    out.extend(bulk(verb.as_bytes()));
    out.extend(bulk(name));
    out.extend(format!(":{count}\r\n").into_bytes());
    out
}

/// A WebSocket client (tungstenite) connected to herald's HTTP port.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message, skipping control frames; fails the test after `WAIT`.
pub async fn next_text(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return t.to_string();
        }
    }
}
