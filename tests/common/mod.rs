//! Shared helpers for the Rust integration tests: start herald in-process on free
//! loopback ports, talk raw bytes to its RESP port, read a WebSocket's text frames.
//!
//! Waiting: every wait has a deadline ([`WAIT`], generous because a passing test returns
//! as soon as what it waits for arrives) and no test sleeps a fixed time before it
//! asserts. [`wait_until`] polls a condition; [`Raw::expect`], [`Raw::expect_next`] and
//! [`next_text`] wait for bytes or a frame.
//!
//! Absence: to show that something did NOT arrive, make herald send a marker after it
//! (publish on the same channel from the same connection, or a PING on the same
//! connection), then expect the marker next: anything that arrived first fails the
//! comparison. A quiet read of some milliseconds proves nothing on a busy machine.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use herald::config::Config;
use herald::server::Running;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for what it expects before failing. Generous: on a busy
/// 2-core machine a delivery may take seconds, and a passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// Poll `check` until it is true; fails the test after [`WAIT`], naming `what`.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Deadline::new();
    while !check().await {
        deadline.retry(what).await;
    }
}

/// A retry loop's deadline, for conditions [`wait_until`] cannot borrow for (a check
/// that needs `&mut` a connection):
/// `let d = Deadline::new(); while !check(&mut c).await { d.retry("what").await }`.
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    /// [`WAIT`] from now.
    pub fn new() -> Self {
        Deadline(tokio::time::Instant::now() + WAIT)
    }

    /// Fail the test if the deadline has passed, else pause briefly before the next try.
    pub async fn retry(&self, what: &str) {
        assert!(
            tokio::time::Instant::now() < self.0,
            "timed out after {WAIT:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The defaults on free loopback ports, but with socket.io recovery off: on (the
/// default) it adds a `pid` to the CONNECT reply, a `herald:offset` event after it and an
/// offset to every event, and keeps an uncleanly dropped socket's rooms and presence for
/// the window, which the tests of everything else would each have to allow for. The
/// recovery tests (`tests/clients/socketio_recovery.test.mjs`, `socketio.test.mjs`,
/// `payment_recovery.test.mjs`) run with it on.
pub fn config() -> Config {
    let defaults = Config::default();
    Config {
        redis_bind: "127.0.0.1:0".parse().unwrap(),
        http_bind: "127.0.0.1:0".parse().unwrap(),
        recovery_limits: herald::config::RecoveryLimits {
            window: Duration::ZERO,
            ..defaults.recovery_limits
        },
        ..defaults
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

    /// The marker check: the next bytes are exactly `marker`. Send the marker after
    /// whatever must not arrive; anything that did arrive comes first and fails here.
    pub async fn expect_next(&mut self, marker: impl AsRef<[u8]>) {
        self.expect(marker).await;
    }

    /// `PING` on this connection and its `+PONG` as the very next bytes: nothing was
    /// queued for this connection before the PING was read (a RESP2 connection not in
    /// subscribed mode).
    pub async fn expect_nothing_queued(&mut self) {
        self.roundtrip(b"PING\r\n", b"+PONG\r\n").await;
    }

    /// `HELLO 3` and its whole reply (the map's last entry is `modules`, an empty array).
    pub async fn hello3(&mut self) {
        self.send(b"HELLO 3\r\n").await;
        let tail: &[u8] = b"$7\r\nmodules\r\n*0\r\n";
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(tail) {
            tokio::time::timeout(WAIT, self.stream.read_exact(&mut b))
                .await
                .expect("the HELLO 3 reply in time")
                .expect("read");
            got.push(b[0]);
        }
        assert!(
            got.starts_with(b"%7\r\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
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

    /// Nothing arrives for 200 ms (and the connection stays open). This proves nothing
    /// about absence on a busy machine: use a marker and [`Raw::expect_next`] instead.
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

/// The next message of any kind; fails the test after [`WAIT`] or if the stream ended.
pub async fn next_message(ws: &mut Ws) -> Message {
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("no error")
}

/// The next text message, skipping control frames; fails the test after [`WAIT`].
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        if let Message::Text(t) = next_message(ws).await {
            return t.to_string();
        }
    }
}

/// The marker check for WebSockets: the next text message is exactly `marker`.
pub async fn expect_next_text(ws: &mut Ws, marker: &str) {
    assert_eq!(
        next_text(ws).await,
        marker,
        "something arrived before the marker"
    );
}

/// Text messages up to the server's close frame, and the close code (None: no code,
/// or the connection ended without a close frame). Fails the test after [`WAIT`].
pub async fn texts_until_close(ws: &mut Ws) -> (Vec<String>, Option<u16>) {
    use futures_util::StreamExt;
    let mut texts = Vec::new();
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server's close in time");
        match next {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(frame))) => return (texts, frame.map(|f| f.code.into())),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (texts, None),
        }
    }
}

/// A socket.io v4 WebSocket socket, connected and subscribed to `channel` (the
/// subscribe's acknowledgement has arrived); returns it and its socket id.
pub async fn socketio_socket(addr: SocketAddr, channel: &str) -> (Ws, String) {
    use futures_util::SinkExt;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await;
    assert!(open.starts_with(r#"0{"sid":""#), "{open}");
    assert!(
        open.ends_with(
            r#"","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        ),
        "{open}"
    );
    ws.send(Message::text("40")).await.unwrap();
    let connected = next_text(&mut ws).await;
    let id = connected
        .strip_prefix(r#"40{"sid":""#)
        .and_then(|s| s.strip_suffix(r#""}"#))
        .expect("40{\"sid\":…}")
        .to_string();
    ws.send(Message::text(format!(
        r#"427["subscribe",{{"channel":"{channel}"}}]"#
    )))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, "437[]");
    (ws, id)
}
