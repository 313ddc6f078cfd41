//! The redis-driver path into the Pusher edge, in-process: a publication as Laravel's
//! redis broadcaster makes it (prefixed channel, `{"event","data","socket"}`) reaches the
//! default app's Pusher clients with the prefix stripped, `data` as a JSON string, and
//! the `socket` named in the envelope left out. (The same path over real RESP with
//! redis-cli and PHP is in tests/clients/pusher_redis.test.mjs.)

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{next_text, start, Ws};

/// Connect and subscribe to `channel` (signed as the default app signs, which private
/// channels need and public ones ignore); returns the socket and its socket_id.
async fn client(running: &herald::server::Running, channel: &str) -> (Ws, String) {
    let url = format!("ws://{}/app/herald-key?protocol=7", running.http_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_string();
    let sig = herald::pusher::signature::hmac_hex(
        "herald-secret",
        format!("{socket_id}:{channel}").as_bytes(),
    );
    let sub = serde_json::json!({"event": "pusher:subscribe",
        "data": {"channel": channel, "auth": format!("herald-key:{sig}")}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let ok = next_text(&mut ws).await;
    assert!(
        ok.contains("pusher_internal:subscription_succeeded"),
        "{ok}"
    );
    (ws, socket_id)
}

fn publish(running: &herald::server::Running, channel: &str, payload: String) -> usize {
    let state = &running.state;
    let p = state
        .prefixes
        .publication(Bytes::from(channel.to_string()), Bytes::from(payload));
    state.broker.publish(p)
}

#[tokio::test]
async fn laravel_publication_reaches_pusher_clients_prefix_stripped() {
    let running = start().await;
    let (mut a, _) = client(&running, "orders.1").await;
    let payload =
        r#"{"event":"App\\Events\\OrderShipped","data":{"id":1,"socket":null},"socket":null}"#;
    assert_eq!(
        publish(&running, "laravel_database_orders.1", payload.into()),
        1
    );
    assert_eq!(
        next_text(&mut a).await,
        r#"{"event":"App\\Events\\OrderShipped","channel":"orders.1","data":"{\"id\":1,\"socket\":null}"}"#
    );
    // Laravel 12's dashed prefix, and no prefix at all, land on the same channel.
    publish(
        &running,
        "laravel-database-orders.1",
        r#"{"event":"B","data":[]}"#.into(),
    );
    assert!(next_text(&mut a).await.contains(r#""event":"B""#));
    publish(&running, "orders.1", r#"{"event":"C","data":{}}"#.into());
    assert!(next_text(&mut a).await.contains(r#""event":"C""#));
    running.shutdown();
    running.stopped().await;
}

#[tokio::test]
async fn socket_in_the_envelope_is_left_out() {
    let running = start().await;
    let (mut a, a_id) = client(&running, "private-chat").await;
    let (mut b, _) = client(&running, "private-chat").await;
    let payload = format!(r#"{{"event":"Said","data":{{"m":1}},"socket":"{a_id}"}}"#);
    assert_eq!(
        publish(&running, "laravel_database_private-chat", payload),
        1
    );
    assert!(next_text(&mut b).await.contains(r#""event":"Said""#));
    publish(
        &running,
        "laravel_database_private-chat",
        r#"{"event":"Marker","data":{}}"#.into(),
    );
    assert!(
        next_text(&mut a).await.contains(r#""event":"Marker""#),
        "a's first message after the exclusion is the marker"
    );
    running.shutdown();
    running.stopped().await;
}

#[tokio::test]
async fn non_laravel_payloads_are_not_sent() {
    let running = start().await;
    let (mut a, _) = client(&running, "raw").await;
    assert_eq!(publish(&running, "raw", "plain text".into()), 0);
    assert_eq!(
        publish(&running, "nobody-listens", r#"{"event":"E"}"#.into()),
        0
    );
    publish(&running, "raw", r#"{"event":"Real","data":{}}"#.into());
    assert!(next_text(&mut a).await.contains(r#""event":"Real""#));
    running.shutdown();
    running.stopped().await;
}
