//! Graceful shutdown waits for every connection's goodbye, and no longer.
//!
//! With a connection open on every edge (RESP, socket.io over WebSocket and over
//! long-polling, Pusher), `Running::stopped` resolves well within the grace period
//! (`--shutdown-grace-seconds`), every connection having finished on its own, and each
//! client then reads its protocol's goodbye and the end of the stream. When a goodbye
//! can only be written once a slow client has read a backlog, `stopped` waits for it;
//! a client that never reads is cut when the grace period ends.
//!
//! No test here times the server: the grace period is set far longer than any drain
//! takes (30 s), so only a connection that is not let go can make it count.

use herald::server::{Running, Stopped};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

mod common;
#[path = "raw_ws/mod.rs"]
mod raw_ws;
use common::{cmd, Raw, WAIT};
use raw_ws::RawWs;

/// The grace period these servers give connections at shutdown: far longer than any
/// drain here takes on a busy machine, so the only way to see it end is a connection
/// that was not let go (the tests then see [`Stopped::Cut`], or their wait runs out).
const GRACE: Duration = Duration::from_secs(30);

/// herald on free ports with [`GRACE`].
async fn start() -> Running {
    common::start_with(herald::config::Config {
        shutdown_grace: GRACE,
        ..common::config()
    })
    .await
}

/// Wait for `r` to stop (within the grace period and a wait more), and that its
/// connections finished on their own.
async fn stops_drained(r: Running) {
    let stopped = tokio::time::timeout(GRACE + WAIT, r.stopped())
        .await
        .expect("stopped resolves");
    assert_eq!(
        stopped,
        Stopped::Drained,
        "a connection was cut at the grace period's end"
    );
}

/// The channel every client listens on, as Laravel's redis broadcaster names it (the
/// WebSocket edges strip the prefix).
const CHANNEL: &str = "laravel_database_news";

/// A RESP connection subscribed to [`CHANNEL`].
async fn resp_subscriber(stream: TcpStream) -> TcpStream {
    let mut c = Raw { stream };
    c.roundtrip(
        cmd(&[b"SUBSCRIBE", CHANNEL.as_bytes()]),
        format!(
            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{CHANNEL}\r\n:1\r\n",
            CHANNEL.len()
        ),
    )
    .await;
    c.stream
}

/// A socket.io v4 WebSocket socket on `news`; its TCP stream once subscribed.
async fn socketio(mut ws: RawWs) -> TcpStream {
    assert!(ws.next_text().await.starts_with("0{"));
    ws.send_text("40").await;
    assert!(ws.next_text().await.starts_with("40{"));
    ws.send_text(r#"427["subscribe",{"channel":"news"}]"#).await;
    assert_eq!(ws.next_text().await, "437[]");
    ws.tcp
}

/// A Pusher connection to the default app subscribed to `news`; its TCP stream.
async fn pusher(mut ws: RawWs) -> TcpStream {
    assert!(ws
        .next_text()
        .await
        .contains("pusher:connection_established"));
    ws.send_text(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#)
        .await;
    let ok = ws.next_text().await;
    assert!(
        ok.contains("pusher_internal:subscription_succeeded"),
        "{ok}"
    );
    ws.tcp
}

/// One HTTP/1.1 response on a keep-alive connection: (head, body).
async fn response(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before the response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = buf[head_end..].to_vec();
    let mut rest = vec![0u8; head_end + len - buf.len()];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut rest))
        .await
        .expect("the body in time")
        .unwrap();
    body.extend_from_slice(&rest);
    (head, body)
}

/// A socket.io v4 polling session with a long-poll GET waiting for packets; the
/// connection that GET is on. The GET is sent behind a POST on the same connection
/// and the POST's answer read: the server has the GET in hand once it answered the
/// request before it.
async fn polling(r: &Running) -> TcpStream {
    let mut tcp = TcpStream::connect(r.http_addr).await.unwrap();
    let host = r.http_addr;
    let handshake =
        format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let (head, open) = response(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let open = String::from_utf8(open).unwrap();
    let sid = open
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {open}"));
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    // A noop packet, then the long-poll.
    let requests = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n\
         Content-Length: 1\r\n\r\n6\
         GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    tcp.write_all(requests.as_bytes()).await.unwrap();
    let (head, body) = response(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    tcp
}

/// The rest of the stream, to its end: the server has finished writing once
/// `stopped` resolved (Drained), so the end comes without more from the server; bytes
/// still in flight on loopback (the kernel may deliver them a little later on a busy
/// machine) are waited for, within [`WAIT`].
async fn rest_of_stream(tcp: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("the server ended the stream")
        .expect("read failed");
    got
}

/// A WebSocket close frame as the server sends it (unmasked).
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut f = vec![0x88, 2 + reason.len() as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason.as_bytes());
    f
}

/// A server's unmasked frames, in order, as (opcode, payload); an incomplete last one
/// is left out.
fn frames(mut buf: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    loop {
        let (len, start) = match buf {
            [_, 126, a, b, ..] => (u16::from_be_bytes([*a, *b]) as usize, 4),
            [_, 127, rest @ ..] if rest.len() >= 8 => (
                u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize,
                10,
            ),
            [_, n, ..] if *n < 126 => (*n as usize, 2),
            _ => return out,
        };
        if buf.len() < start + len {
            return out;
        }
        out.push((buf[0] & 0x0f, &buf[start..start + len]));
        buf = &buf[start + len..];
    }
}

/// The Pusher goodbye: `pusher:error` 4200, then the close frame with the same code.
fn assert_pusher_goodbye(got: &[u8]) {
    let frames = frames(got);
    let [.., (1, error), (8, close)] = frames.as_slice() else {
        panic!("no goodbye at the end: {:?}", frames.last());
    };
    let error = String::from_utf8_lossy(error);
    assert!(
        error.contains("pusher:error") && error.contains("4200"),
        "{error}"
    );
    assert_eq!(*close, &close_frame(4200, "Server shutting down")[2..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_connection_open_on_every_edge_shutdown_is_prompt_and_each_gets_its_goodbye() {
    let r = start().await;
    let mut resp = resp_subscriber(TcpStream::connect(r.redis_addr).await.unwrap()).await;
    let mut socketio =
        socketio(RawWs::connect_normal(r.http_addr, "/socket.io/?EIO=4&transport=websocket").await)
            .await;
    let mut pusher =
        pusher(RawWs::connect_normal(r.http_addr, "/app/herald-key?protocol=7").await).await;
    let mut polling = polling(&r).await;

    r.shutdown();
    // Idle connections say goodbye and end at once: one that waited for the grace
    // period (30 s) would outlast this wait.
    let stopped = tokio::time::timeout(WAIT, r.stopped())
        .await
        .expect("stopped resolves well before the grace period ends");
    assert_eq!(stopped, Stopped::Drained);

    let got = rest_of_stream(&mut resp).await;
    assert!(got.is_empty(), "RESP owed nothing: {got:?}");

    let got = rest_of_stream(&mut socketio).await;
    assert_eq!(got, close_frame(1001, "server shutting down"));

    let got = rest_of_stream(&mut pusher).await;
    assert_pusher_goodbye(&got);

    // The long-poll is answered with the close packet, then the connection ends.
    let got = String::from_utf8(rest_of_stream(&mut polling).await).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("\r\n\r\n1"),
        "{got}"
    );
}

/// PUBLISH `payload` to [`CHANNEL`] and wait for the reply (whatever count it gives):
/// the publication is then queued for every subscriber.
async fn publish(c: &mut Raw, payload: &str) {
    c.send(cmd(&[b"PUBLISH", CHANNEL.as_bytes(), payload.as_bytes()]))
        .await;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let b = tokio::time::timeout(WAIT, c.stream.read_u8())
            .await
            .expect("the PUBLISH reply in time")
            .unwrap();
        line.push(b);
    }
    assert!(
        line.starts_with(b":"),
        "{:?}",
        String::from_utf8_lossy(&line)
    );
}

/// A client that begins to read after a pause, then reads as fast as it can until
/// told to stop or the stream ends.
struct Reader {
    began: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(TcpStream, Vec<u8>, bool)>,
}

impl Reader {
    /// Begin reading `tcp` after `pause`, with room for 64 KiB in flight at a time
    /// (the most the window a small buffer set at connect allows).
    fn start(mut tcp: TcpStream, pause: Duration) -> Reader {
        let began = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let flag = began.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            socket2::SockRef::from(&tcp)
                .set_recv_buffer_size(1 << 20)
                .unwrap();
            flag.store(true, Ordering::SeqCst);
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            let ended = loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break false,
                    n = tcp.read(&mut chunk) => match n {
                        Ok(0) | Err(_) => break true,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    },
                }
            };
            (tcp, got, ended)
        });
        Reader { began, stop, task }
    }

    fn began(&self) -> bool {
        self.began.load(Ordering::SeqCst)
    }

    /// Everything it read, to the stream's end.
    async fn finish(self) -> Vec<u8> {
        let _ = self.stop.send(());
        let (mut tcp, mut got, ended) = self.task.await.unwrap();
        if !ended {
            got.extend(rest_of_stream(&mut tcp).await);
        }
        got
    }
}

/// The payload of each publication in [`behind_a_backlog`].
fn big_event() -> String {
    format!(
        r#"{{"event":"E","data":{{"pad":"{}"}},"socket":null}}"#,
        "x".repeat(256 * 1024)
    )
}

/// How many [`big_event`]s: 6 MB, of which about half fits in the sockets' buffers; the
/// rest keeps the connection's write blocked (well under the output limits and the
/// write timeout).
const EVENTS: usize = 24;

/// The backlog tests move megabytes: one at a time.
static BACKLOGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One client of herald's with a small receive buffer, which does not read until
/// after shutdown has begun, with megabytes published to it before: its goodbye can be
/// written only once it has read them (within the grace period). What it
/// got, to the stream's end.
async fn behind_a_backlog(r: Running, client: TcpStream) -> Vec<u8> {
    let _one_at_a_time = BACKLOGS.lock().await;
    let mut publisher = Raw::connect(r.redis_addr).await;
    let payload = big_event();
    for _ in 0..EVENTS {
        publish(&mut publisher, &payload).await;
    }
    r.shutdown();
    // The client begins to read half a second later: `stopped` resolves after that
    // (its goodbye cannot be written before), not meanwhile. The backlog then comes in
    // a few dozen reads, well within the grace period.
    let reader = Reader::start(client, Duration::from_millis(500));
    stops_drained(r).await;
    assert!(
        reader.began(),
        "stopped resolved before the client began to read"
    );
    reader.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_waits_for_a_resp_subscriber_to_get_what_it_is_owed() {
    let r = start().await;
    let client = resp_subscriber(raw_ws::tcp(r.redis_addr).await).await;
    let got = behind_a_backlog(r, client).await;
    // Every publication, then the end of the stream (RESP has no goodbye frame).
    let payload = big_event();
    let message = format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{CHANNEL}\r\n${}\r\n{payload}\r\n",
        CHANNEL.len(),
        payload.len()
    );
    assert_eq!(got.len(), message.len() * EVENTS, "all {EVENTS} delivered");
    assert!(got.chunks(message.len()).all(|m| m == message.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_waits_for_a_socketio_goodbye_written_behind_a_backlog() {
    let r = start().await;
    let path = "/socket.io/?EIO=4&transport=websocket";
    let client = socketio(RawWs::connect(r.http_addr, path).await).await;
    let got = behind_a_backlog(r, client).await;
    let frames = frames(&got);
    assert_eq!(
        frames.last().copied(),
        Some((8, &close_frame(1001, "server shutting down")[2..])),
        "the goodbye closes the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_waits_for_a_pusher_goodbye_written_behind_a_backlog() {
    let r = start().await;
    let client = pusher(RawWs::connect(r.http_addr, "/app/herald-key?protocol=7").await).await;
    let got = behind_a_backlog(r, client).await;
    assert_pusher_goodbye(&got);
}

/// `--shutdown-grace-seconds` bounds the wait: a client owed megabytes that never
/// reads is closed when the grace period ends, and `stopped` says it was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_when_the_grace_period_ends() {
    let _one_at_a_time = BACKLOGS.lock().await;
    let r = common::start_with(herald::config::Config {
        shutdown_grace: Duration::from_secs(1),
        ..common::config()
    })
    .await;
    let path = "/socket.io/?EIO=4&transport=websocket";
    let _never_reads = socketio(RawWs::connect(r.http_addr, path).await).await;
    let mut publisher = Raw::connect(r.redis_addr).await;
    let payload = big_event();
    for _ in 0..EVENTS {
        publish(&mut publisher, &payload).await;
    }
    r.shutdown();
    let stopped = tokio::time::timeout(WAIT, r.stopped())
        .await
        .expect("stopped resolves once the 1 s grace period ends");
    assert_eq!(stopped, Stopped::Cut);
}
