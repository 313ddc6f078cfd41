//! The soft output limit end to end (Redis's `client-output-buffer-limit pubsub` soft
//! part): a subscriber that stops reading and stays above the soft limit for longer
//! than its window is dropped, on RESP and on a WebSocket edge, while a subscriber
//! that reads loses nothing. The hard limit is off here, so only the soft limit can
//! drop anyone; the window is the subject of the test, so it is real time (1 s).

mod common;

use common::{cmd, confirm, message, Raw};
use herald::outbox::OutboxLimits;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const WINDOW: Duration = Duration::from_secs(1);

async fn start() -> herald::server::Running {
    let mut config = common::config();
    config.outbox = OutboxLimits {
        hard_bytes: 0,
        soft_bytes: 256 * 1024,
        soft_window: WINDOW,
    };
    common::start_with(config).await
}

/// A RESP subscriber to `feed` that reads everything, in the background, until the
/// message `end`; returns all it read.
fn fast_reader(mut fast: Raw, end: Vec<u8>) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !got.ends_with(&end) {
            let n = tokio::time::timeout(Duration::from_secs(30), fast.stream.read(&mut buf))
                .await
                .expect("the fast subscriber keeps receiving")
                .unwrap();
            assert!(n > 0, "the fast subscriber was disconnected");
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
}

/// Publish `payload` on `feed`, a little at a time, until one receiver fewer than
/// `receivers` takes it; returns how many publications went out and how long after
/// the first the drop came. Fails the test after 20 s (the window is 1 s).
async fn publish_until_one_is_dropped(
    publisher: &mut Raw,
    payload: &[u8],
    receivers: usize,
) -> (usize, Duration) {
    let publish = cmd(&[b"PUBLISH", b"feed", payload]);
    let all = format!(":{receivers}\r\n");
    let fewer = format!(":{}\r\n", receivers - 1);
    let started = Instant::now();
    let mut rounds = 0;
    loop {
        publisher.send(&publish).await;
        let mut reply = vec![0u8; all.len()];
        tokio::time::timeout(common::WAIT, publisher.stream.read_exact(&mut reply))
            .await
            .expect("PUBLISH answered")
            .unwrap();
        rounds += 1;
        if reply == fewer.as_bytes() {
            return (rounds, started.elapsed());
        }
        assert_eq!(String::from_utf8_lossy(&reply), all);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the slow subscriber was not dropped in 20 s"
        );
        // Pacing, not waiting for an outcome: about 16 MB/s, so the kernel's socket
        // buffers fill within the first second and the fast reader keeps up.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_resp_subscriber_above_the_soft_limit_for_its_window_is_dropped() {
    let h = start().await;
    let dropped_before = herald::metrics::SLOW_CONSUMERS_DROPPED.get();
    let mut slow = Raw::connect(h.redis_addr).await;
    slow.roundtrip(b"SUBSCRIBE feed\r\n", confirm("subscribe", b"feed", 1))
        .await;
    let mut fast = Raw::connect(h.redis_addr).await;
    fast.roundtrip(b"SUBSCRIBE feed\r\n", confirm("subscribe", b"feed", 1))
        .await;
    let reader = fast_reader(fast, message(b"feed", b"end"));
    let mut publisher = Raw::connect(h.redis_addr).await;
    let payload = vec![b'x'; 32 * 1024];
    let (rounds, after) = publish_until_one_is_dropped(&mut publisher, &payload, 2).await;
    assert!(
        after >= WINDOW,
        "dropped after {after:?}, before the soft window ({WINDOW:?}) could pass"
    );
    assert!(herald::metrics::SLOW_CONSUMERS_DROPPED.get() > dropped_before);
    publisher
        .roundtrip(b"PUBSUB NUMSUB feed\r\n", b"*2\r\n$4\r\nfeed\r\n:1\r\n")
        .await;
    // The reader lost nothing.
    publisher
        .roundtrip(cmd(&[b"PUBLISH", b"feed", b"end"]), b":1\r\n")
        .await;
    let got = reader.await.unwrap();
    let expected = [
        message(b"feed", &payload).repeat(rounds),
        message(b"feed", b"end"),
    ]
    .concat();
    assert!(
        got == expected,
        "the fast subscriber got every message intact"
    );
    // The slow subscriber's socket ends after what the kernel had buffered.
    let mut rest = Vec::new();
    tokio::time::timeout(common::WAIT, slow.stream.read_to_end(&mut rest))
        .await
        .expect("the slow subscriber was disconnected")
        .ok();
    assert!(rest.len() < expected.len(), "it did not get everything");
}

#[tokio::test]
async fn a_websocket_subscriber_above_the_soft_limit_for_its_window_is_dropped() {
    let h = start().await;
    let (mut slow, _) = common::socketio_socket(h.http_addr, "feed").await;
    let mut fast = Raw::connect(h.redis_addr).await;
    fast.roundtrip(b"SUBSCRIBE feed\r\n", confirm("subscribe", b"feed", 1))
        .await;
    let reader = fast_reader(fast, message(b"feed", b"end"));
    let mut publisher = Raw::connect(h.redis_addr).await;
    let data = "x".repeat(32 * 1024);
    let payload = format!(r#"{{"event":"E","data":"{data}","socket":null}}"#);
    let (rounds, after) = publish_until_one_is_dropped(&mut publisher, payload.as_bytes(), 2).await;
    assert!(
        after >= WINDOW,
        "dropped after {after:?}, before the soft window ({WINDOW:?}) could pass"
    );
    publisher
        .roundtrip(cmd(&[b"PUBLISH", b"feed", b"end"]), b":1\r\n")
        .await;
    let got = reader.await.unwrap();
    let expected = [
        message(b"feed", payload.as_bytes()).repeat(rounds),
        message(b"feed", b"end"),
    ]
    .concat();
    assert!(
        got == expected,
        "the RESP subscriber got every message intact"
    );
    // The WebSocket gets what was written before the drop, then herald's close
    // (1008, slow consumer) or, if the close frame could not be written, the end.
    let (texts, code) = common::texts_until_close(&mut slow).await;
    assert!(
        texts.len() < rounds,
        "{} of {rounds} delivered",
        texts.len()
    );
    let event = format!(r#"42["E","feed","{data}"]"#);
    assert!(texts.iter().all(|t| *t == event));
    assert!(matches!(code, Some(1008) | None), "{code:?}");
}
