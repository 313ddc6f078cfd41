//! herald-bench, the real binary, against a real herald (in-process, on free ports) at
//! small scale: every protocol's subscribers (socket.io v4 over WebSocket and over
//! polling + upgrade, socket.io v2, Pusher) and every way of publishing (RESP
//! `PUBLISH`, Laravel's `EVAL` script, Pusher's signed HTTP API), and Pusher over `wss://`
//! (`--tls-ca`) against a herald serving TLS, judged by the JSON
//! line herald-bench prints: every connection made, none failed, every publication
//! delivered to every subscriber of its channel, none lost.

mod common;

use serde_json::Value;
use std::time::Duration;

/// Subscribers, channels, publications per second, seconds measured: connection i
/// joins channel i mod 4, so each publication reaches 5 connections.
const CONNECTIONS: u64 = 20;
const CHANNELS: u64 = 4;
const RATE: u64 = 20;
const SECONDS: u64 = 2;

/// herald-bench's JSON line and what it said on stderr.
struct Outcome {
    report: Value,
    stderr: String,
}

/// One `herald-bench run` against a fresh herald.
async fn bench(protocol: &str, mode: &str, extra: &[&str]) -> Outcome {
    bench_on(&common::start().await, protocol, mode, extra).await
}

/// One `herald-bench run` against `herald`.
async fn bench_on(
    herald: &herald::server::Running,
    protocol: &str,
    mode: &str,
    extra: &[&str],
) -> Outcome {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["run", "--server", &herald.http_addr.to_string()])
        .args(["--redis", &herald.redis_addr.to_string()])
        .args(["--protocol", protocol, "--mode", mode])
        .args(["-n", &CONNECTIONS.to_string(), "-c", &CHANNELS.to_string()])
        .args(["-r", &RATE.to_string(), "-d", &SECONDS.to_string()])
        .args(["--warmup", "1", "--sources", "2", "--sample-every", "5"])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("herald-bench finishes within a minute")
        .expect("herald-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "herald-bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {stdout:?}; stderr: {stderr}"));
    Outcome {
        report: serde_json::from_str(line).expect("the JSON line parses"),
        stderr,
    }
}

fn number(r: &Value, key: &str) -> u64 {
    r[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a whole number in {r}"))
}

/// Every connection made and every measured publication delivered once to each
/// subscriber of its channel, latency measured on the sampled connections.
async fn assert_all_delivered(protocol: &str, mode: &str) {
    all_delivered(&bench(protocol, mode, &[]).await, protocol, mode);
}

fn all_delivered(o: &Outcome, protocol: &str, mode: &str) {
    let r = &o.report;
    let context = format!("{r}\nstderr: {}", o.stderr);
    assert_eq!(r["protocol"], protocol, "{context}");
    assert_eq!(r["mode"], mode, "{context}");
    assert_eq!(number(r, "connections"), CONNECTIONS, "{context}");
    assert_eq!(number(r, "failed"), 0, "{context}");
    assert_eq!(number(r, "publish_failed"), 0, "{context}");
    let published = number(r, "published");
    let nominal = RATE * SECONDS;
    assert!(
        (nominal - 4..=nominal + 4).contains(&published),
        "about {nominal} measured publications: {context}"
    );
    assert_eq!(
        number(r, "expected"),
        published * (CONNECTIONS / CHANNELS),
        "{context}"
    );
    assert_eq!(number(r, "received"), number(r, "expected"), "{context}");
    assert_eq!(number(r, "lost"), 0, "{context}");
    assert_eq!(number(r, "gaps"), 0, "{context}");
    assert!(
        r["max_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "latency measured: {context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_v4_over_websocket_gets_every_resp_publication() {
    assert_all_delivered("sio4", "publish").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_v4_over_polling_then_upgraded_gets_every_resp_publication() {
    assert_all_delivered("sio4-polling", "publish").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_v2_gets_every_publication_of_laravels_eval_script() {
    assert_all_delivered("sio3", "eval").await;
}

/// `--tls-ca`: the subscribers connect with `wss://` to a herald serving TLS (a
/// certificate of a CA made here), and get every publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_over_wss_gets_every_resp_publication() {
    let dir = std::env::temp_dir().join(format!("herald-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let herald = common::start_with(herald::config::Config {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..common::config()
    })
    .await;
    let ca = cert.to_str().unwrap();
    let o = bench_on(&herald, "pusher", "publish", &["--tls-ca", ca]).await;
    all_delivered(&o, "pusher", "publish");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_gets_every_resp_publication() {
    assert_all_delivered("pusher", "publish").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_gets_every_publication_of_the_signed_http_api() {
    assert_all_delivered("pusher", "http-api").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_publications_herald_refuses_are_reported_not_counted() {
    let o = bench("pusher", "http-api", &["--app-secret", "not-the-secret"]).await;
    let r = &o.report;
    let context = format!("{r}\nstderr: {}", o.stderr);
    assert_eq!(number(r, "connections"), CONNECTIONS, "{context}");
    // Warm-up and measured publications alike were refused.
    assert!(number(r, "publish_failed") >= RATE * SECONDS, "{context}");
    assert_eq!(number(r, "published"), 0, "{context}");
    assert_eq!(number(r, "expected"), 0, "{context}");
    assert_eq!(number(r, "received"), 0, "{context}");
    assert!(
        o.stderr
            .contains("publish error: http-api: 401 Invalid signature"),
        "{context}"
    );
}
