//! Clients that stop reading are dropped on every transport, also while a write to
//! them is blocked, and everyone else loses nothing.
//!
//! The slow clients are raw TCP WebSockets with a small receive buffer that never read
//! again (and long-polling sessions that never come back to GET). Publications go one
//! at a time, each once a normal subscriber on the same channel has received it, so
//! the normal subscriber's own outbox never fills and every event it must receive is
//! checked in order; a marker published after the drop ends its stream.

use bytes::Bytes;
use herald::config::Config;
use herald::outbox::OutboxLimits;
use herald::server::Running;
use std::time::{Duration, Instant};

mod common;
#[path = "raw_ws/mod.rs"]
mod raw_ws;
use raw_ws::RawWs;

/// The drop counter is process-wide: these tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn dropped() -> u64 {
    herald::metrics::SLOW_CONSUMERS_DROPPED.get()
}

async fn start(set: impl FnOnce(&mut Config)) -> Running {
    let mut c = common::config();
    set(&mut c);
    common::start_with(c).await
}

fn limits(hard: usize, soft: usize, soft_seconds: u64) -> OutboxLimits {
    OutboxLimits {
        hard_bytes: hard,
        soft_bytes: soft,
        soft_window: Duration::from_secs(soft_seconds),
    }
}

fn publish(r: &Running, channel: &str, payload: &str) {
    let p = r.state.prefixes.publication(
        Bytes::copy_from_slice(channel.as_bytes()),
        Bytes::copy_from_slice(payload.as_bytes()),
    );
    r.state.broker.publish(p);
}

/// Event number `i`: its `pad` starts with the token `S{i}E`.
fn event(i: usize, size: usize) -> String {
    format!(
        r#"{{"event":"E","data":{{"pad":"S{i}E{}"}},"socket":null}}"#,
        "x".repeat(size)
    )
}

/// Read `fast` until event `i`; anything that is not an event (a presence departure)
/// goes to `others`. An event out of order fails the test.
async fn receive(fast: &mut RawWs, i: usize, others: &mut Vec<String>) {
    let token = format!("S{i}E");
    loop {
        let text = fast.next_text().await;
        if text.contains("pad") {
            assert!(
                text.contains(&token),
                "expected event {i}, got {:.80}",
                text
            );
            return;
        }
        others.push(text);
    }
}

/// Publish events of `size` bytes to `channel`, each once `fast` has it, until the
/// slow reader is dropped; returns how many were published.
async fn publish_until_dropped(
    r: &Running,
    channel: &str,
    size: usize,
    fast: &mut RawWs,
    others: &mut Vec<String>,
) -> usize {
    let before = dropped();
    let give_up = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        assert!(
            Instant::now() < give_up,
            "the slow reader was never dropped ({i} events of {size} bytes published)"
        );
        publish(r, &format!("laravel_database_{channel}"), &event(i, size));
        receive(fast, i, others).await;
        if dropped() > before {
            return i + 1;
        }
    }
    unreachable!()
}

/// Publish `total` bytes in events of `size` to `channel`, each once `fast` has it.
async fn publish_burst(r: &Running, channel: &str, size: usize, total: usize, fast: &mut RawWs) {
    let mut others = Vec::new();
    for i in 0..total / size {
        publish(r, &format!("laravel_database_{channel}"), &event(i, size));
        receive(fast, i, &mut others).await;
    }
    assert!(others.is_empty(), "{others:?}");
}

/// After a drop: a marker, which `fast` receives next (departures aside).
async fn marker_arrives(r: &Running, channel: &str, fast: &mut RawWs, others: &mut Vec<String>) {
    publish(
        r,
        &format!("laravel_database_{channel}"),
        r#"{"event":"Marker","data":{},"socket":null}"#,
    );
    loop {
        let text = fast.next_text().await;
        assert!(!text.contains("pad"), "an event after the marker");
        if text.contains("Marker") {
            return;
        }
        others.push(text);
    }
}

/// The departure a drop announces: already among `others` (it came before the marker), or
/// next on `fast` (the dropped connection's close path may run after the marker went out).
async fn departure_arrives(fast: &mut RawWs, others: &mut Vec<String>) {
    if others.is_empty() {
        others.push(fast.next_text().await);
    }
}

// ---- socket.io ----

/// A v4 socket.io WebSocket socket (small receive buffer if `slow`) on `channel`.
async fn socketio(r: &Running, channel: &str, slow: bool) -> RawWs {
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut ws = if slow {
        RawWs::connect(r.http_addr, path).await
    } else {
        RawWs::connect_normal(r.http_addr, path).await
    };
    assert!(ws.next_text().await.starts_with("0{"));
    ws.send_text("40").await;
    assert!(ws.next_text().await.starts_with("40{"));
    ws.send_text(&format!(r#"427["subscribe",{{"channel":"{channel}"}}]"#))
        .await;
    assert_eq!(ws.next_text().await, "437[]");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_subscriber_that_stops_reading_is_dropped_at_the_hard_limit() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.outbox = limits(256 * 1024, 0, 0);
        c.write_timeout = Duration::from_secs(120);
    })
    .await;
    let mut slow = socketio(&r, "news", true).await;
    let mut fast = socketio(&r, "news", false).await;
    let mut others = Vec::new();
    let n = publish_until_dropped(&r, "news", 32 * 1024, &mut fast, &mut others).await;
    marker_arrives(&r, "news", &mut fast, &mut others).await;
    assert!(others.is_empty(), "{others:?}");
    // Dropped while its write was blocked: the connection is closed, mid-frame.
    slow.expect_closed(raw_ws::WAIT).await;
    eprintln!("dropped after {n} events of 32 KiB");
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_subscriber_over_the_soft_limit_is_dropped_when_its_window_ends() {
    let _serial = SERIAL.lock().await;
    let window = 3;
    let r = start(|c| {
        c.outbox = limits(0, 1024 * 1024, window);
        c.write_timeout = Duration::from_secs(120);
    })
    .await;
    let mut slow = socketio(&r, "news", true).await;
    let mut fast = socketio(&r, "news", false).await;
    let before = dropped();
    // More than the socket buffers can hold (4 MiB here at most) plus the soft limit,
    // quickly; then nothing more is published, so no push checks the limit again.
    let started = Instant::now();
    publish_burst(&r, "news", 256 * 1024, 6 * 1024 * 1024, &mut fast).await;
    assert!(
        started.elapsed() < Duration::from_secs(window) && dropped() == before,
        "the burst must end inside the soft window for this test to mean anything"
    );
    wait_dropped(
        before,
        Duration::from_secs(window + 10),
        "not dropped after the soft window",
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(window),
        "dropped before the window ended: {:?}",
        started.elapsed()
    );
    slow.expect_closed(raw_ws::WAIT).await;
    let mut others = Vec::new();
    marker_arrives(&r, "news", &mut fast, &mut others).await;
    assert!(others.is_empty(), "{others:?}");
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_makes_no_progress_for_the_write_timeout_drops_the_client() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.outbox = limits(0, 0, 0);
        c.write_timeout = Duration::from_millis(1000);
    })
    .await;
    let mut slow = socketio(&r, "news", true).await;
    let mut fast = socketio(&r, "news", false).await;
    let before = dropped();
    publish_burst(&r, "news", 256 * 1024, 6 * 1024 * 1024, &mut fast).await;
    wait_dropped(
        before,
        Duration::from_secs(10),
        "a stalled write was never given up",
    )
    .await;
    slow.expect_closed(raw_ws::WAIT).await;
    let mut others = Vec::new();
    marker_arrives(&r, "news", &mut fast, &mut others).await;
    assert!(others.is_empty(), "{others:?}");
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_blocked_write_is_cut_when_the_grace_period_ends_and_the_others_get_their_goodbye(
) {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.outbox = limits(0, 0, 0);
        c.write_timeout = Duration::from_secs(120);
        c.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    let mut slow = socketio(&r, "news", true).await;
    let mut fast = socketio(&r, "news", false).await;
    publish_burst(&r, "news", 256 * 1024, 6 * 1024 * 1024, &mut fast).await;
    r.shutdown();
    // The reader that keeps up is told goodbye (1001, going away) ...
    assert_eq!(fast.expect_closed(raw_ws::WAIT).await, Some(1001));
    // ... and the one that does not read is cut off when the grace period (1 s) ends:
    // read once herald has stopped, its stream ends mid-frame, with no goodbye after it.
    tokio::time::timeout(raw_ws::WAIT, r.stopped())
        .await
        .expect("herald stops once the grace period ends");
    assert_eq!(slow.expect_closed(raw_ws::WAIT).await, None);
}

/// A tiny Laravel `/broadcasting/auth`: the user is the `Authorization: Bearer <id>`.
async fn auth_endpoint() -> String {
    use warp::Filter;
    let route = warp::post()
        .and(warp::header::<String>("authorization"))
        .map(|auth: String| {
            let id = auth.trim_start_matches("Bearer ").to_string();
            warp::reply::json(&serde_json::json!({
                "channel_data": {"user_id": id, "user_info": {"name": format!("user-{id}")}}
            }))
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://{addr}/broadcasting/auth")
}

/// A socket.io member of `presence-room` as user `id`.
async fn socketio_member(r: &Running, id: u32, slow: bool) -> RawWs {
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut ws = if slow {
        RawWs::connect(r.http_addr, path).await
    } else {
        RawWs::connect_normal(r.http_addr, path).await
    };
    assert!(ws.next_text().await.starts_with("0{"));
    ws.send_text("40").await;
    assert!(ws.next_text().await.starts_with("40{"));
    ws.send_text(&format!(
        r#"42["subscribe",{{"channel":"presence-room","auth":{{"headers":{{"Authorization":"Bearer {id}"}}}}}}]"#
    ))
    .await;
    let joined = ws.next_text().await;
    assert!(
        joined.starts_with(r#"42["presence:subscribed","presence-room""#),
        "{joined}"
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_presence_member_that_stops_reading_is_announced_as_leaving() {
    let _serial = SERIAL.lock().await;
    let endpoint = auth_endpoint().await;
    let r = start(|c| {
        c.outbox = limits(256 * 1024, 0, 0);
        c.write_timeout = Duration::from_secs(120);
        c.auth_endpoint = Some(endpoint);
    })
    .await;
    let mut fast = socketio_member(&r, 1, false).await;
    let mut slow = socketio_member(&r, 2, true).await;
    let joining = fast.next_text().await;
    assert!(joining.starts_with(r#"42["presence:joining""#), "{joining}");
    let mut others = Vec::new();
    publish_until_dropped(&r, "presence-room", 32 * 1024, &mut fast, &mut others).await;
    marker_arrives(&r, "presence-room", &mut fast, &mut others).await;
    departure_arrives(&mut fast, &mut others).await;
    assert_eq!(others.len(), 1, "{others:?}");
    assert!(
        others[0].starts_with(r#"42["presence:leaving","presence-room""#)
            && others[0].contains("user-2"),
        "{others:?}"
    );
    slow.expect_closed(raw_ws::WAIT).await;
    r.shutdown();
}

// ---- Pusher ----

/// A Pusher connection to the default app; returns it and its socket id.
async fn pusher(r: &Running, slow: bool) -> (RawWs, String) {
    let path = "/app/herald-key?protocol=7";
    let mut ws = if slow {
        RawWs::connect(r.http_addr, path).await
    } else {
        RawWs::connect_normal(r.http_addr, path).await
    };
    let hello: serde_json::Value = serde_json::from_str(&ws.next_text().await).unwrap();
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: serde_json::Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_string();
    (ws, socket_id)
}

async fn pusher_subscriber(r: &Running, channel: &str, slow: bool) -> RawWs {
    let (mut ws, _) = pusher(r, slow).await;
    ws.send_text(&format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#
    ))
    .await;
    let ok = ws.next_text().await;
    assert!(
        ok.contains("pusher_internal:subscription_succeeded"),
        "{ok}"
    );
    ws
}

/// A member of `presence-room` as user `id`, signed with the default app's secret.
async fn pusher_member(r: &Running, id: u32, slow: bool) -> RawWs {
    use hmac::{Hmac, Mac};
    let (mut ws, socket_id) = pusher(r, slow).await;
    let channel_data = format!(r#"{{"user_id":"{id}","user_info":{{"name":"user-{id}"}}}}"#);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"herald-secret").unwrap();
    mac.update(format!("{socket_id}:presence-room:{channel_data}").as_bytes());
    let auth = format!("herald-key:{}", hex::encode(mac.finalize().into_bytes()));
    let subscribe = serde_json::json!({
        "event": "pusher:subscribe",
        "data": {"channel": "presence-room", "auth": auth, "channel_data": channel_data},
    });
    ws.send_text(&subscribe.to_string()).await;
    let ok = ws.next_text().await;
    assert!(
        ok.contains("pusher_internal:subscription_succeeded"),
        "{ok}"
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_subscriber_that_stops_reading_is_dropped_at_the_hard_limit() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.outbox = limits(256 * 1024, 0, 0);
        c.write_timeout = Duration::from_secs(120);
    })
    .await;
    let mut slow = pusher_subscriber(&r, "news", true).await;
    let mut fast = pusher_subscriber(&r, "news", false).await;
    let mut others = Vec::new();
    publish_until_dropped(&r, "news", 32 * 1024, &mut fast, &mut others).await;
    marker_arrives(&r, "news", &mut fast, &mut others).await;
    assert!(others.is_empty(), "{others:?}");
    slow.expect_closed(raw_ws::WAIT).await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_presence_member_that_stops_reading_is_announced_as_removed() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.outbox = limits(256 * 1024, 0, 0);
        c.write_timeout = Duration::from_secs(120);
    })
    .await;
    let mut fast = pusher_member(&r, 1, false).await;
    let mut slow = pusher_member(&r, 2, true).await;
    let added = fast.next_text().await;
    assert!(added.contains("pusher_internal:member_added"), "{added}");
    let mut others = Vec::new();
    publish_until_dropped(&r, "presence-room", 32 * 1024, &mut fast, &mut others).await;
    marker_arrives(&r, "presence-room", &mut fast, &mut others).await;
    departure_arrives(&mut fast, &mut others).await;
    assert_eq!(
        others,
        [
            r#"{"event":"pusher_internal:member_removed","channel":"presence-room","data":"{\"user_id\":\"2\"}"}"#
        ],
    );
    slow.expect_closed(raw_ws::WAIT).await;
    r.shutdown();
}

// ---- long-polling ----

/// Raw HTTP/1.1 on a fresh connection; the status and body.
async fn http(r: &Running, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(r.http_addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(raw_ws::WAIT, tcp.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// A v4 polling session subscribed to `channel`; returns its sid. It never polls again.
async fn polling_subscriber(r: &Running, channel: &str) -> String {
    let (status, open) = http(r, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{open}");
    let sid = open
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(r, "POST", &path, "40").await, (200, "ok".into()));
    let subscribe = format!(r#"42["subscribe",{{"channel":"{channel}"}}]"#);
    assert_eq!(http(r, "POST", &path, &subscribe).await, (200, "ok".into()));
    sid
}

/// Engine.IO's answer to a sid it does not know (the session is gone).
async fn session_is_gone(r: &Running, sid: &str) {
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        http(r, "GET", &path, "").await,
        (400, r#"{"code":1,"message":"Session ID unknown"}"#.into())
    );
}

/// Wait until the slow-consumer counter moves past `before`; fail with `what` after `within`.
async fn wait_dropped(before: u64, within: Duration, what: &str) {
    let give_up = Instant::now() + within;
    while dropped() == before {
        assert!(Instant::now() < give_up, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_client_that_never_polls_again_is_closed_at_the_ping_timeout() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.ping_timeout = Duration::from_millis(300);
    })
    .await;
    let sid = polling_subscriber(&r, "news").await;
    let since = Instant::now();
    let open = herald::metrics::SOCKETIO_POLLING_SESSIONS.get();
    // The server's ping goes unanswered: closed one interval plus one timeout later.
    let give_up = since + Duration::from_secs(10);
    while herald::metrics::SOCKETIO_POLLING_SESSIONS.get() == open {
        assert!(
            Instant::now() < give_up,
            "the session outlived its ping timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        since.elapsed() >= Duration::from_millis(500),
        "{:?}",
        since.elapsed()
    );
    session_is_gone(&r, &sid).await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_client_between_requests_is_dropped_at_the_hard_limit_at_once() {
    let _serial = SERIAL.lock().await;
    let r = start(|c| {
        c.outbox = limits(256 * 1024, 0, 0);
        // The heartbeat would not notice for a minute.
        c.ping_interval = Duration::from_secs(60);
    })
    .await;
    let sid = polling_subscriber(&r, "news").await;
    let before = dropped();
    for i in 0..9 {
        publish(&r, "laravel_database_news", &event(i, 32 * 1024));
    }
    wait_dropped(before, Duration::from_secs(5), "not dropped in time").await;
    session_is_gone(&r, &sid).await;
    r.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_client_over_the_soft_limit_is_dropped_when_its_window_ends() {
    let _serial = SERIAL.lock().await;
    let window = 1;
    let r = start(|c| {
        c.outbox = limits(0, 64 * 1024, window);
        c.ping_interval = Duration::from_secs(60);
    })
    .await;
    let sid = polling_subscriber(&r, "news").await;
    let before = dropped();
    // Over the soft limit with one publication, then nothing more.
    publish(&r, "laravel_database_news", &event(0, 100 * 1024));
    let published = Instant::now();
    wait_dropped(
        before,
        Duration::from_secs(window + 5),
        "not dropped in time",
    )
    .await;
    assert!(
        published.elapsed() >= Duration::from_millis(window * 1000 - 50),
        "dropped before the window ended: {:?}",
        published.elapsed()
    );
    session_is_gone(&r, &sid).await;
    r.shutdown();
}
