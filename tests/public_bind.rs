//! No well-known secret opens anything (issue 10, point 1): on a non-loopback HTTP
//! address herald does not serve the built-in Pusher app (herald / herald-key /
//! herald-secret) nor any app whose secret is still herald-secret. The Pusher edge then
//! refuses connections with 4001, the HTTP API answers 404 even to requests signed with
//! the well-known secret, socket.io keeps working, and one start-up line says how to
//! configure an app. `--protected-mode no` keeps the old behaviour; `--socketio false`
//! and `--pusher false` unmount an edge (404).
//!
//! herald binds 0.0.0.0 on a free port here and the tests connect through 127.0.0.1.

use herald::config::{AppConfig, Config};
use herald::server::Running;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{next_text, start_with, Ws, WAIT};

/// The defaults on a public (0.0.0.0) HTTP address, free ports.
fn public() -> Config {
    Config {
        http_bind: "0.0.0.0:0".parse().unwrap(),
        ..common::config()
    }
}

/// herald's HTTP port, reached through loopback.
fn local(running: &Running) -> String {
    format!("127.0.0.1:{}", running.http_addr.port())
}

/// Open a Pusher connection to `key`: the socket, or the HTTP status if not upgraded.
async fn pusher(running: &Running, key: &str) -> Result<Ws, u16> {
    let url = format!("ws://{}/app/{key}?protocol=7&client=js", local(running));
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The connection is refused as Pusher refuses an unknown key: `pusher:error` 4001, then
/// a close frame with the same code.
async fn expect_4001(mut ws: Ws) {
    use futures_util::StreamExt;
    assert_eq!(
        next_text(&mut ws).await,
        r#"{"event":"pusher:error","data":"{\"code\":4001,\"message\":\"App key not in this cluster\"}"}"#
    );
    let close = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a close frame in time");
    match close {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Library(4001)),
        other => panic!("expected close 4001, got {other:?}"),
    }
}

async fn expect_established(ws: Result<Ws, u16>) {
    let mut ws = ws.expect("upgraded");
    let hello = next_text(&mut ws).await;
    assert!(
        hello.starts_with(r#"{"event":"pusher:connection_established""#),
        "{hello}"
    );
}

/// A Pusher HTTP API request signed as the `pusher` SDKs sign it.
async fn api(running: &Running, app: &str, key: &str, secret: &str, body: &str) -> (u16, String) {
    use md5::Digest;
    let path = format!("/apps/{app}/events");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let md5 = hex::encode(md5::Md5::digest(body.as_bytes()));
    let query = format!("auth_key={key}&auth_timestamp={now}&auth_version=1.0&body_md5={md5}");
    let sig =
        herald::pusher::signature::hmac_hex(secret, format!("POST\n{path}\n{query}").as_bytes());
    let url = format!(
        "http://{}{path}?{query}&auth_signature={sig}",
        local(running)
    );
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

const EVENT: &str = r#"{"name":"E","channels":["private-App.Models.User.1"],"data":"{}"}"#;

/// The socket.io handshake over polling: status and body.
async fn socketio_handshake(running: &Running) -> (u16, String) {
    let url = format!(
        "http://{}/socket.io/?EIO=4&transport=polling",
        local(running)
    );
    let res = reqwest::get(url).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Start a server and keep the log lines it writes while starting (start-up logging is
/// synchronous, on this thread).
async fn start_logged(config: Config) -> (Running, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let running = {
        let _guard = tracing::subscriber::set_default(subscriber);
        start_with(config).await
    };
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (running, text)
}

#[tokio::test]
async fn public_address_without_an_app_serves_no_pusher_app() {
    let (running, log) = start_logged(public()).await;
    assert!(running.http_addr.ip().is_unspecified());
    // The built-in key opens nothing; neither does a request signed with its secret.
    expect_4001(pusher(&running, "herald-key").await.unwrap()).await;
    let (status, body) = api(&running, "herald", "herald-key", "herald-secret", EVENT).await;
    assert_eq!((status, body.as_str()), (404, "Unknown app id herald"));
    // socket.io is not affected.
    let (status, body) = socketio_handshake(&running).await;
    assert_eq!(status, 200);
    assert!(body.starts_with(r#"0{"sid":""#), "{body}");
    // One line says how to configure an app.
    let how: Vec<&str> = log.lines().filter(|l| l.contains("--app-secret")).collect();
    assert_eq!(how.len(), 1, "{log}");
    assert!(how[0].contains("[[apps]]"), "{log}");
}

#[tokio::test]
async fn public_address_refuses_an_app_with_the_well_known_secret() {
    let mut config = public();
    config.apps = vec![
        AppConfig::new("mine", "mine-key", "a-real-secret"),
        AppConfig::new("lazy", "lazy-key", "herald-secret"),
    ];
    config.builtin_app = false;
    let (running, log) = start_logged(config).await;
    expect_4001(pusher(&running, "lazy-key").await.unwrap()).await;
    let (status, _) = api(&running, "lazy", "lazy-key", "herald-secret", EVENT).await;
    assert_eq!(status, 404);
    assert!(
        log.contains(r#"Pusher app "lazy" refused: its secret is the well-known "herald-secret""#),
        "{log}"
    );
    // The app with a secret of its own is served, HTTP API included.
    expect_established(pusher(&running, "mine-key").await).await;
    let (status, body) = api(&running, "mine", "mine-key", "a-real-secret", EVENT).await;
    assert_eq!((status, body.as_str()), (200, "{}"));
}

#[tokio::test]
async fn protected_mode_no_and_loopback_keep_the_builtin_app() {
    let running = start_with(Config {
        protected_mode: false,
        ..public()
    })
    .await;
    expect_established(pusher(&running, "herald-key").await).await;
    let (status, _) = api(&running, "herald", "herald-key", "herald-secret", EVENT).await;
    assert_eq!(status, 200);
    let running = start_with(common::config()).await;
    expect_established(pusher(&running, "herald-key").await).await;
}

#[tokio::test]
async fn each_edge_can_be_switched_off() {
    let running = start_with(Config {
        socketio: false,
        ..common::config()
    })
    .await;
    assert_eq!(socketio_handshake(&running).await.0, 404);
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        local(&running)
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 404),
        other => panic!("socket.io WebSocket not refused: {:?}", other.map(|_| ())),
    }
    expect_established(pusher(&running, "herald-key").await).await;

    let running = start_with(Config {
        pusher: false,
        ..common::config()
    })
    .await;
    assert_eq!(pusher(&running, "herald-key").await.err(), Some(404));
    let (status, _) = api(&running, "herald", "herald-key", "herald-secret", EVENT).await;
    assert_eq!(status, 404);
    assert_eq!(socketio_handshake(&running).await.0, 200);
}
