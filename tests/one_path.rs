//! One path for every publication, in-process: whichever ingress a publication enters
//! by (RESP `PUBLISH`, Laravel's `EVAL`, the Pusher HTTP API's `events` and
//! `batch_events`, a Pusher client event, a socket.io whisper), it reaches the
//! subscribers its namespace says, on both WebSocket edges and over RESP, and nobody
//! else, in one order per channel; the broker numbers it in its channel's stream.
//!
//! Namespaces: RESP, socket.io and the default Pusher app share the default one; the
//! second app here (`other`) is its own. Absence is proved with an ordered marker: each
//! client's frames are read in order and compared whole, the last being a marker sent
//! after everything that must not arrive. (The same with the real npm clients is
//! tests/clients/one_path.test.mjs.)

use futures_util::SinkExt;
use herald::broker::{Namespace, Offset, Publication, StreamSubscriber, SubscriberId};
use herald::config::AppConfig;
use herald::server::Running;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{cmd, message, next_text, pmessage, wait_until, Raw, Ws};

const OTHER: [&str; 3] = ["other", "other-key", "other-secret"];
const DEFAULT: [&str; 3] = herald::config::DEV_APP;

/// Laravel's `/broadcasting/auth` allowing every private channel.
async fn auth_endpoint() -> String {
    use warp::Filter;
    let route = warp::post().map(|| warp::reply::json(&true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://{addr}/broadcasting/auth")
}

async fn start() -> Running {
    let mut c = common::config();
    c.apps.push(AppConfig::new(OTHER[0], OTHER[1], OTHER[2]));
    c.auth_endpoint = Some(auth_endpoint().await);
    common::start_with(c).await
}

/// A socket.io v4 socket subscribed to `channel` (the app authorizes private ones);
/// returns it and its socket id.
async fn socketio(r: &Running, channel: &str) -> (Ws, String) {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", r.http_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with(r#"0{"sid":""#));
    ws.send(Message::text("40")).await.unwrap();
    let connected = next_text(&mut ws).await;
    let id = connected
        .strip_prefix(r#"40{"sid":""#)
        .and_then(|s| s.strip_suffix(r#""}"#))
        .expect("40{\"sid\":…}")
        .to_string();
    let subscribe =
        format!(r#"427["subscribe",{{"channel":"{channel}","auth":{{"headers":{{}}}}}}]"#);
    ws.send(Message::text(subscribe)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "437[]", "subscribed");
    (ws, id)
}

/// A Pusher connection to app `[id, key, secret]` subscribed to `channel` (signed);
/// returns it and its socket id.
async fn pusher(r: &Running, [_, key, secret]: [&str; 3], channel: &str) -> (Ws, String) {
    let url = format!("ws://{}/app/{key}?protocol=7", r.http_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    let data: serde_json::Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_string();
    let sig =
        herald::pusher::signature::hmac_hex(secret, format!("{socket_id}:{channel}").as_bytes());
    let sub = serde_json::json!({"event": "pusher:subscribe",
        "data": {"channel": channel, "auth": format!("{key}:{sig}")}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let ok = next_text(&mut ws).await;
    assert!(
        ok.contains("pusher_internal:subscription_succeeded"),
        "{ok}"
    );
    (ws, socket_id)
}

/// A RESP subscriber to `channels` and `patterns`, confirmations read.
async fn resp(r: &Running, channels: &[&str], patterns: &[&str]) -> Raw {
    let mut c = Raw::connect(r.redis_addr).await;
    let mut n = 0;
    for (verb, names) in [("SUBSCRIBE", channels), ("PSUBSCRIBE", patterns)] {
        for name in names {
            n += 1;
            c.send(cmd(&[verb.as_bytes(), name.as_bytes()])).await;
            c.expect(common::confirm(&verb.to_lowercase(), name.as_bytes(), n))
                .await;
        }
    }
    c
}

/// `PUBLISH channel payload` on a fresh connection; the receivers it reports.
async fn publish(r: &Running, channel: &str, payload: &str) -> i64 {
    let mut c = Raw::connect(r.redis_addr).await;
    c.send(cmd(&[b"PUBLISH", channel.as_bytes(), payload.as_bytes()]))
        .await;
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut b)
            .await
            .unwrap();
        reply.push(b[0]);
    }
    std::str::from_utf8(&reply[1..reply.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

/// Laravel's `EVAL` broadcast to `channels`.
async fn eval(r: &Running, payload: &str, channels: &[&str]) {
    let mut c = Raw::connect(r.redis_addr).await;
    let mut args: Vec<&[u8]> = vec![
        b"EVAL",
        herald::resp::commands::scripting::LARAVEL_SCRIPT.as_bytes(),
        b"0",
        payload.as_bytes(),
    ];
    args.extend(channels.iter().map(|c| c.as_bytes()));
    c.roundtrip(cmd(&args), b"$-1\r\n").await;
}

/// A Pusher HTTP API request to app `[id, key, secret]`, signed as the SDKs sign it.
async fn api(r: &Running, [id, key, secret]: [&str; 3], endpoint: &str, body: &str) {
    use md5::Digest;
    let path = format!("/apps/{id}/{endpoint}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let md5 = hex::encode(md5::Md5::digest(body.as_bytes()));
    let query = format!("auth_key={key}&auth_timestamp={now}&auth_version=1.0&body_md5={md5}");
    let sig =
        herald::pusher::signature::hmac_hex(secret, format!("POST\n{path}\n{query}").as_bytes());
    let url = format!("http://{}{path}?{query}&auth_signature={sig}", r.http_addr);
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// Read `ws`'s next frames and compare them, in order, with `want`.
async fn frames(ws: &mut Ws, want: &[String]) {
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&next_text(ws).await, w, "frame {i}");
    }
}

fn sio(event: &str, channel: &str, data: &str) -> String {
    format!(r#"42["{event}","{channel}",{data}]"#)
}

/// A Pusher server event: `data` is the JSON text, sent as a string.
fn server_event(event: &str, channel: &str, data: &str) -> String {
    let data = serde_json::to_string(data).unwrap();
    format!(r#"{{"event":"{event}","channel":"{channel}","data":{data}}}"#)
}

fn laravel(event: &str, data: &str) -> String {
    format!(r#"{{"event":"{event}","data":{data},"socket":null}}"#)
}

/// Records what the broker hands it: an in-process stream subscriber beside the edges.
struct Recorder {
    id: SubscriberId,
    got: Mutex<Vec<Publication>>,
}

impl Recorder {
    fn on(r: &Running, namespace: Namespace, channel: &str) -> Arc<Recorder> {
        let rec = Arc::new(Recorder {
            id: herald::broker::next_subscriber_id(),
            got: Mutex::new(Vec::new()),
        });
        r.state
            .broker
            .stream_subscribe(&namespace, channel.as_bytes(), rec.clone());
        rec
    }

    fn offsets(&self) -> Vec<Offset> {
        self.got.lock().iter().map(|p| p.offset.unwrap()).collect()
    }

    /// The envelopes' event names, in delivery order.
    fn events(&self) -> Vec<String> {
        self.got
            .lock()
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                v["event"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

impl StreamSubscriber for Recorder {
    fn id(&self) -> SubscriberId {
        self.id
    }
    fn deliver(&self, p: &Publication) -> usize {
        self.got.lock().push(p.clone());
        0
    }
}

/// Offsets one epoch, sequence numbers 1, 2, 3... in delivery order.
fn numbered_in_order(offsets: &[Offset]) {
    assert!(!offsets.is_empty());
    for (i, o) in offsets.iter().enumerate() {
        assert_eq!(o.epoch, offsets[0].epoch, "one stream, one epoch");
        assert_eq!(
            o.seq,
            i as u64 + 1,
            "strictly increasing, none skipped: {offsets:?}"
        );
    }
}

#[tokio::test]
async fn server_publications_reach_their_namespace_on_every_edge_and_resp() {
    let r = start().await;
    let ch = "orders.1";
    let (mut s, _) = socketio(&r, ch).await;
    let (mut p, _) = pusher(&r, DEFAULT, ch).await;
    let (mut o, _) = pusher(&r, OTHER, ch).await;
    let mut raw = resp(&r, &["laravel_database_orders.1", ch], &[]).await;
    let default_stream = Recorder::on(&r, Namespace::Default, ch);
    let other_stream = Recorder::on(&r, Namespace::App(OTHER[0].into()), ch);

    // RESP PUBLISH on the prefixed name: socket.io, the default app, RESP on that name.
    let e1 = laravel("E1", r#"{"n":1}"#);
    assert_eq!(publish(&r, "laravel_database_orders.1", &e1).await, 3);
    // Laravel's EVAL, to the channel and to one nobody listens to.
    let e2 = laravel("E2", r#"{"n":2}"#);
    eval(
        &r,
        &e2,
        &["laravel_database_orders.1", "laravel_database_orders.9"],
    )
    .await;
    // The HTTP API on the default app: both edges now, and RESP under the name as given.
    api(
        &r,
        DEFAULT,
        "events",
        r#"{"name":"E3","channel":"orders.1","data":"{\"n\":3}"}"#,
    )
    .await;
    let batch = r#"{"batch":[{"name":"E4","channel":"orders.1","data":"plain text"},
        {"name":"E5","channel":"orders.2","data":"{}"}]}"#;
    api(&r, DEFAULT, "batch_events", batch).await;
    // The HTTP API on the other app: its clients only. Then the markers.
    api(
        &r,
        OTHER,
        "events",
        r#"{"name":"O1","channel":"orders.1","data":"{}"}"#,
    )
    .await;
    let marker = laravel("Marker", "{}");
    assert_eq!(publish(&r, ch, &marker).await, 3);

    frames(
        &mut s,
        &[
            sio("E1", ch, r#"{"n":1}"#),
            sio("E2", ch, r#"{"n":2}"#),
            sio("E3", ch, r#"{"n":3}"#),
            sio("E4", ch, r#""plain text""#),
            sio("Marker", ch, "{}"),
        ],
    )
    .await;
    frames(
        &mut p,
        &[
            server_event("E1", ch, r#"{"n":1}"#),
            server_event("E2", ch, r#"{"n":2}"#),
            server_event("E3", ch, r#"{"n":3}"#),
            server_event("E4", ch, "plain text"),
            server_event("Marker", ch, "{}"),
        ],
    )
    .await;
    frames(&mut o, &[server_event("O1", ch, "{}")]).await;
    let prefixed = b"laravel_database_orders.1";
    for (channel, payload) in [
        (&prefixed[..], e1.as_bytes()),
        (prefixed, e2.as_bytes()),
        (
            ch.as_bytes(),
            br#"{"event":"E3","data":{"n":3},"socket":null}"#,
        ),
        (
            ch.as_bytes(),
            br#"{"event":"E4","pusher_data":"plain text","socket":null}"#,
        ),
        (ch.as_bytes(), marker.as_bytes()),
    ] {
        raw.expect(message(channel, payload)).await;
    }
    // The other app's marker, after everything the default namespace published.
    api(
        &r,
        OTHER,
        "events",
        r#"{"name":"O2","channel":"orders.1","data":"{}"}"#,
    )
    .await;
    frames(&mut o, &[server_event("O2", ch, "{}")]).await;

    // The broker numbered each stream's publications in the order they were delivered.
    assert_eq!(default_stream.events(), ["E1", "E2", "E3", "E4", "Marker"]);
    numbered_in_order(&default_stream.offsets());
    assert_eq!(other_stream.events(), ["O1", "O2"]);
    numbered_in_order(&other_stream.offsets());
    assert_ne!(
        default_stream.offsets()[0].epoch,
        other_stream.offsets()[0].epoch
    );
    r.shutdown();
}

#[tokio::test]
async fn client_events_and_whispers_reach_the_other_clients_of_their_namespace_only() {
    let r = start().await;
    let ch = "private-chat";
    let (mut s1, _) = socketio(&r, ch).await;
    let (mut s2, _) = socketio(&r, ch).await;
    let (mut p1, _) = pusher(&r, DEFAULT, ch).await;
    let (mut p2, _) = pusher(&r, DEFAULT, ch).await;
    let (mut o1, _) = pusher(&r, OTHER, ch).await;
    let (mut o2, _) = pusher(&r, OTHER, ch).await;
    let mut everything = resp(&r, &[], &["*"]).await;
    let stream = Recorder::on(&r, Namespace::Default, ch);

    // A socket.io whisper from s1.
    s1.send(Message::text(
        r#"42["client event",{"channel":"private-chat","event":"client-typing","data":{"w":1}}]"#,
    ))
    .await
    .unwrap();
    // A Pusher client event from p1 once the whisper is through (p2 heard it).
    let whisper = r#"{"event":"client-typing","channel":"private-chat","data":{"w":1}}"#;
    assert_eq!(next_text(&mut p2).await, whisper);
    p1.send(Message::text(
        r#"{"event":"client-said","channel":"private-chat","data":{"p":1}}"#,
    ))
    .await
    .unwrap();
    // A client event in the other app.
    o1.send(Message::text(
        r#"{"event":"client-other","channel":"private-chat","data":{"o":1}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut o2).await,
        r#"{"event":"client-other","channel":"private-chat","data":{"o":1}}"#
    );
    // The markers: a server event in each namespace, after the client events.
    let said = r#"{"event":"client-said","channel":"private-chat","data":{"p":1}}"#;
    assert_eq!(next_text(&mut p2).await, said);
    api(
        &r,
        DEFAULT,
        "events",
        r#"{"name":"M","channel":"private-chat","data":"{}"}"#,
    )
    .await;
    api(
        &r,
        OTHER,
        "events",
        r#"{"name":"M","channel":"private-chat","data":"{}"}"#,
    )
    .await;

    let (sio_whisper, sio_said) = (
        sio("client-typing", ch, r#"{"w":1}"#),
        sio("client-said", ch, r#"{"p":1}"#),
    );
    let (sio_marker, pusher_marker) = (sio("M", ch, "{}"), server_event("M", ch, "{}"));
    frames(&mut s1, &[sio_said.clone(), sio_marker.clone()]).await;
    frames(&mut s2, &[sio_whisper, sio_said, sio_marker]).await;
    frames(&mut p1, &[whisper.into(), pusher_marker.clone()]).await;
    frames(&mut p2, std::slice::from_ref(&pusher_marker)).await;
    frames(&mut o1, std::slice::from_ref(&pusher_marker)).await;
    frames(&mut o2, &[pusher_marker]).await;
    // RESP sees the server event only.
    everything
        .expect(pmessage(
            b"*",
            ch.as_bytes(),
            br#"{"event":"M","data":{},"socket":null}"#,
        ))
        .await;
    assert_eq!(stream.events(), ["client-typing", "client-said", "M"]);
    numbered_in_order(&stream.offsets());
    r.shutdown();
}

#[tokio::test]
async fn every_publication_is_counted_whatever_its_ingress() {
    let r = start().await;
    let (mut p1, _) = pusher(&r, DEFAULT, "private-c").await;
    let (mut p2, _) = pusher(&r, DEFAULT, "private-c").await;
    let published = || r.state.broker.stats().published.get();
    let before = published();
    api(
        &r,
        DEFAULT,
        "events",
        r#"{"name":"E","channels":["a","b"],"data":"{}"}"#,
    )
    .await;
    api(
        &r,
        OTHER,
        "batch_events",
        r#"{"batch":[{"name":"E","channel":"a","data":"{}"}]}"#,
    )
    .await;
    p1.send(Message::text(
        r#"{"event":"client-x","channel":"private-c","data":{}}"#,
    ))
    .await
    .unwrap();
    assert!(next_text(&mut p2).await.contains("client-x"));
    let (mut s1, _) = socketio(&r, "private-c").await;
    let (mut s2, _) = socketio(&r, "private-c").await;
    s1.send(Message::text(
        r#"42["client event",{"channel":"private-c","event":"client-y","data":1}]"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut s2).await, sio("client-y", "private-c", "1"));
    publish(&r, "a", &laravel("E", "{}")).await;
    assert_eq!(
        published() - before,
        6,
        "2 channels, 1 batch event, 2 client events, 1 PUBLISH"
    );
    let text = reqwest::get(format!("http://{}/metrics", r.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!("herald_publications_total {}", published())),
        "{text}"
    );
    r.shutdown();
}

#[tokio::test]
async fn a_restart_starts_every_stream_in_a_new_epoch() {
    let mut epochs = Vec::new();
    for _ in 0..2 {
        let r = start().await;
        let rec = Recorder::on(&r, Namespace::Default, "orders.1");
        for i in 0..3 {
            publish(
                &r,
                "laravel_database_orders.1",
                &laravel(&format!("E{i}"), "{}"),
            )
            .await;
        }
        wait_until("three numbered", || async { rec.got.lock().len() == 3 }).await;
        numbered_in_order(&rec.offsets());
        let last = rec.offsets()[2];
        assert_eq!(
            r.state.broker.position(&Namespace::Default, b"orders.1"),
            Some(last)
        );
        assert_eq!(
            r.state.broker.since(&Namespace::Default, b"orders.1", last),
            Ok(Vec::new())
        );
        epochs.push(last.epoch);
        r.shutdown();
        r.stopped().await;
    }
    assert_ne!(epochs[0], epochs[1]);
}
