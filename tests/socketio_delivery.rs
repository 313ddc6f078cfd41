//! The socket.io edge in-process: a publication on the broker reaches WebSocket and
//! long-polling sockets as the exact bytes `42["event","channel",data]`, once per
//! socket, without the publisher's own socket, and non-Laravel payloads go nowhere.

use bytes::Bytes;
use herald::config::Config;
use herald::server::Running;

mod common;
use common::{next_text, socketio_socket};

async fn start(args: impl FnOnce(&mut Config)) -> Running {
    let mut c = common::config();
    args(&mut c);
    common::start_with(c).await
}

fn publish(r: &Running, channel: &str, payload: &str) -> usize {
    let p = r.state.prefixes.publication(
        Bytes::copy_from_slice(channel.as_bytes()),
        Bytes::copy_from_slice(payload.as_bytes()),
    );
    r.state.broker.publish(p)
}

#[tokio::test]
async fn websocket_sockets_get_exact_bytes_and_to_others_is_honoured() {
    let r = start(|_| {}).await;
    let (mut a, a_id) = socketio_socket(r.http_addr, "orders.1").await;
    let (mut b, _) = socketio_socket(r.http_addr, "orders.1").await;
    let envelope =
        r#"{"event":"OrderShipped","data":{"id":1,"name":"\u00e9","socket":null},"socket":null}"#;
    assert_eq!(publish(&r, "laravel_database_orders.1", envelope), 2);
    let want = r#"42["OrderShipped","orders.1",{"id":1,"name":"\u00e9","socket":null}]"#;
    assert_eq!(next_text(&mut a).await, want);
    assert_eq!(next_text(&mut b).await, want);

    // toOthers(): the socket named in the envelope is left out.
    let from_a = format!(r#"{{"event":"E","data":[],"socket":"{a_id}"}}"#);
    assert_eq!(publish(&r, "laravel-database-orders.1", &from_a), 1);
    assert_eq!(next_text(&mut b).await, r#"42["E","orders.1",[]]"#);

    // Not a Laravel envelope, or another channel: nobody.
    assert_eq!(publish(&r, "laravel_database_orders.1", "plain text"), 0);
    assert_eq!(publish(&r, "laravel_database_orders.2", envelope), 0);
    // A channel without a configured prefix is used as it is.
    assert_eq!(publish(&r, "orders.1", r#"{"event":"Raw","data":1}"#), 2);
    assert_eq!(next_text(&mut a).await, r#"42["Raw","orders.1",1]"#);
    r.shutdown();
}

#[tokio::test]
async fn polling_sockets_get_the_same_packet_in_a_payload() {
    let r = start(|_| {}).await;
    let base = format!("http://{}/socket.io/?EIO=4&transport=polling", r.http_addr);
    let http = reqwest::Client::new();
    let open = http.get(&base).send().await.unwrap().text().await.unwrap();
    let sid = open
        .strip_prefix(r#"0{"sid":""#)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert!(open.contains(r#""upgrades":["websocket"]"#), "{open}");
    let url = format!("{base}&sid={sid}");
    let post = |body: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let res = http.post(&url).body(body).send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.text().await.unwrap(), "ok");
        }
    };
    post("40\x1e42[\"subscribe\",{\"channel\":\"orders.9\"}]").await;
    let got = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(got.starts_with(r#"40{"sid":""#), "{got}");
    let (mut w, _) = socketio_socket(r.http_addr, "orders.9").await;
    let envelope = r#"{"event":"E","data":{"n":1},"socket":null}"#;
    assert_eq!(publish(&r, "laravel_database_orders.9", envelope), 2);
    assert_eq!(publish(&r, "laravel_database_orders.9", envelope), 2);
    let got = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        got,
        "42[\"E\",\"orders.9\",{\"n\":1}]\x1e42[\"E\",\"orders.9\",{\"n\":1}]"
    );
    assert_eq!(next_text(&mut w).await, r#"42["E","orders.9",{"n":1}]"#);
    r.shutdown();
}

#[tokio::test]
async fn broadcast_public_emits_channel_colon_event_to_everyone() {
    let r = start(|c| c.socketio_broadcast_public = true).await;
    let url = format!("ws://{}/socket.io/?EIO=3&transport=websocket", r.http_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await;
    assert!(
        open.starts_with(r#"0{"sid":""#) && !open.contains("maxPayload"),
        "{open}"
    );
    assert_eq!(
        next_text(&mut ws).await,
        "40",
        "EIO=3 sockets join / at once"
    );
    let envelope = r#"{"event":"wechat.login","data":{"user":"u"},"socket":null}"#;
    assert_eq!(publish(&r, "laravel_database_wechat", envelope), 1);
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["wechat:wechat.login",{"user":"u"}]"#
    );
    // Never for private or presence channels.
    assert_eq!(publish(&r, "laravel_database_private-x", envelope), 0);
    r.shutdown();
}
