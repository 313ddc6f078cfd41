//! The HTTP port's deadlines and caps against raw TCP clients (slow-loris and
//! friends), and RESP's `timeout`.
//!
//! Time is the subject here, so some waits are about it: each checks that the close
//! came neither before its deadline (with a margin) nor long after (within a generous
//! bound), and the deadlines are made short through the settings.

use herald::config::Config;
use herald::server::Running;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod common;
#[path = "raw_ws/mod.rs"]
mod raw_ws;
use raw_ws::RawWs;

/// The counters are process-wide: these tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a test waits for what should happen before failing.
const WAIT: Duration = Duration::from_secs(10);

async fn start(set: impl FnOnce(&mut Config)) -> Running {
    let mut c = common::config();
    set(&mut c);
    common::start_with(c).await
}

/// The server closes `tcp` within `WAIT`; what it sent before closing, and when.
async fn closed(tcp: &mut TcpStream) -> (String, Instant) {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
        .await
        .expect("the server closed the connection in time")
        .ok();
    (String::from_utf8_lossy(&rest).into_owned(), Instant::now())
}

/// Read one response (head and `content-length` body) off a kept-alive connection.
async fn response(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-response: {text}");
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response in time")
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < give_up, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn timeouts() -> u64 {
    herald::metrics::HTTP_TIMEOUTS.get()
}

fn refused() -> u64 {
    herald::metrics::HTTP_REFUSED.get()
}

/// Assert a deadline of `ms` was kept: not before it (less a margin for timer
/// granularity), and well within the test's wait.
fn kept(ms: u64, since: Instant, at: Instant) {
    let took = at - since;
    assert!(
        took >= Duration::from_millis(ms - ms / 10),
        "too early: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_or_silence_is_closed_at_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.http_header_timeout = Duration::from_millis(500)).await;
    let before = timeouts();
    let since = Instant::now();
    let mut half = TcpStream::connect(r.http_addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(r.http_addr).await.unwrap();
    let (said, at) = closed(&mut half).await;
    assert_eq!(said, "", "closed without an answer");
    kept(500, since, at);
    let (said, at) = closed(&mut silent).await;
    assert_eq!(said, "");
    kept(500, since, at);
    wait_until("the half request counted as a timeout", || {
        timeouts() > before
    })
    .await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.http_header_timeout = Duration::from_millis(500)).await;
    let mut tcp = TcpStream::connect(r.http_addr).await.unwrap();
    for _ in 0..2 {
        // Each request within the timeout: the connection is kept for the next one.
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let res = response(&mut tcp).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(res.ends_with(r#"{"status":"ok"}"#), "{res}");
    }
    let idle = Instant::now();
    let (said, at) = closed(&mut tcp).await;
    assert_eq!(said, "");
    kept(500, idle, at);
    r.shutdown();
}

/// A POST announcing 100 bytes of body and sending 10.
async fn half_post(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n0123456789"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_post_that_sends_half_its_body_gets_408_and_its_session_closes() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.http_body_timeout = Duration::from_millis(500)).await;
    let mut tcp = TcpStream::connect(r.http_addr).await.unwrap();
    tcp.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let open = response(&mut tcp).await;
    let sid = open
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let before = timeouts();
    let since = Instant::now();
    let mut post = half_post(r.http_addr, &path).await;
    let (said, at) = closed(&mut post).await;
    assert!(
        said.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{said}"
    );
    kept(500, since, at);
    assert!(timeouts() > before);
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let gone = response(&mut tcp).await;
    assert!(gone.starts_with("HTTP/1.1 400"), "{gone}");
    assert!(
        gone.ends_with(r#"{"code":1,"message":"Session ID unknown"}"#),
        "{gone}"
    );
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_api_post_that_sends_half_its_body_gets_408() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.http_body_timeout = Duration::from_millis(500)).await;
    let before = timeouts();
    let since = Instant::now();
    let mut post = half_post(r.http_addr, "/apps/herald/events").await;
    let (said, at) = closed(&mut post).await;
    assert!(
        said.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{said}"
    );
    assert!(said.ends_with("\r\n\r\nRequest Timeout"), "{said}");
    kept(500, since, at);
    assert!(timeouts() > before);
    r.shutdown();
}

/// A connection from `ip` (any loopback address works on Linux).
async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// A connection past a cap: a 503 at once, before its request is read, then closed.
async fn is_refused(tcp: &mut TcpStream) {
    let asked = Instant::now();
    let _ = tcp
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (said, at) = closed(tcp).await;
    assert!(
        said.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{said:?}"
    );
    assert!(said.contains("\r\nconnection: close\r\n"), "{said}");
    assert!(at - asked < Duration::from_secs(2), "not refused quickly");
}

async fn healthz(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let res = response(tcp).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_at_once_and_resp_still_accepts() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.max_connections = Some(3)).await;
    let before = refused();
    // Three places: a WebSocket holds one as long as it is open, like any connection.
    let mut ws = RawWs::connect_normal(r.http_addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(ws.next_text().await.starts_with("0{"));
    let mut a = TcpStream::connect(r.http_addr).await.unwrap();
    healthz(&mut a).await;
    let mut b = TcpStream::connect(r.http_addr).await.unwrap();
    // The last place taken: /healthz says the listener is full (src/health.rs).
    b.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let res = response(&mut b).await;
    assert!(res.starts_with("HTTP/1.1 503"), "{res}");
    assert!(
        res.contains("at its connection cap (3 of 3, --max-connections)"),
        "{res}"
    );
    let mut fourth = TcpStream::connect(r.http_addr).await.unwrap();
    is_refused(&mut fourth).await;
    assert_eq!(refused(), before + 1);
    // RESP has its own room.
    let mut redis = common::Raw::connect(r.redis_addr).await;
    redis.roundtrip("PING\r\n", "+PONG\r\n").await;
    // A place freed is a place taken again; the refusal is on /metrics.
    drop(ws);
    let give_up = Instant::now() + WAIT;
    let metrics = loop {
        let mut c = TcpStream::connect(r.http_addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let res = response(&mut c).await;
        if res.starts_with("HTTP/1.1 200") {
            break res;
        }
        assert!(
            Instant::now() < give_up,
            "the WebSocket's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line = metrics
        .lines()
        .find(|l| l.starts_with("herald_http_connections_refused_total "))
        .expect("the refusals are on /metrics");
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > before, "{line}");
    assert!(metrics.contains("# TYPE herald_http_connections gauge\n"));
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_ip_cap_are_refused_and_other_addresses_are_not() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.max_connections_per_ip = 2).await;
    let before = refused();
    let mut a = connect_from("127.0.0.1", r.http_addr).await;
    healthz(&mut a).await;
    let mut b = connect_from("127.0.0.1", r.http_addr).await;
    healthz(&mut b).await;
    let mut third = connect_from("127.0.0.1", r.http_addr).await;
    is_refused(&mut third).await;
    assert_eq!(refused(), before + 1);
    let mut elsewhere = connect_from("127.0.0.2", r.http_addr).await;
    healthz(&mut elsewhere).await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_websocket_that_sends_nothing_is_closed_by_its_heartbeat() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.activity_timeout = Duration::from_secs(1)).await;
    let since = Instant::now();
    let mut ws = RawWs::connect_normal(r.http_addr, "/app/herald-key?protocol=7").await;
    assert!(ws
        .next_text()
        .await
        .contains("pusher:connection_established"));
    // Pinged after the activity timeout, closed when the pong wait (as long) ends.
    let ping = ws.next_text().await;
    assert_eq!(ping, r#"{"event":"pusher:ping","data":"{}"}"#);
    let code = ws.expect_closed(WAIT).await;
    assert_eq!(code, Some(4201));
    kept(2000, since, Instant::now());
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socketio_websocket_that_sends_nothing_is_closed_by_its_heartbeat() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.ping_timeout = Duration::from_millis(300);
    })
    .await;
    let since = Instant::now();
    let mut ws = RawWs::connect_normal(r.http_addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(ws.next_text().await.starts_with("0{"));
    assert_eq!(ws.next_text().await, "2");
    let code = ws.expect_closed(WAIT).await;
    assert_eq!(code, Some(1000));
    kept(600, since, Instant::now());
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_timeout_closes_idle_clients_but_not_subscribers() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| c.timeout = Duration::from_secs(1)).await;
    let mut idle = common::Raw::connect(r.redis_addr).await;
    idle.roundtrip(
        common::cmd(&[b"CONFIG", b"GET", b"timeout"]),
        "*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n",
    )
    .await;
    let mut sub = common::Raw::connect(r.redis_addr).await;
    sub.roundtrip(
        common::cmd(&[b"SUBSCRIBE", b"news"]),
        common::confirm("subscribe", b"news", 1),
    )
    .await;
    let since = Instant::now();
    let (said, at) = closed(&mut idle.stream).await;
    assert_eq!(said, "", "Redis closes an idle client without a word");
    kept(1000, since, at);
    // The subscriber, idle as long and then some, still gets what is published.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut publisher = common::Raw::connect(r.redis_addr).await;
    publisher
        .roundtrip(common::cmd(&[b"PUBLISH", b"news", b"hi"]), ":1\r\n")
        .await;
    sub.expect(common::message(b"news", b"hi")).await;
    r.shutdown();
}
