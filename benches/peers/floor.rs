//! The bare fan-out floor: the simplest tokio + tungstenite server that takes RESP
//! `PUBLISH` and writes one pre-encoded socket.io frame to every connection subscribed
//! to the channel. It does nothing herald does beyond that (no envelope decoding rules,
//! no auth, no bounded outboxes), so herald's CPU per delivery is measured against it.
//!
//! It speaks just enough socket.io v4 for herald-bench's subscribers: `0{...}` on open,
//! `40{"sid"}` to `40`, `42["subscribe",{"channel":C}]` joins C, `3` to nothing.
//! Run: `cargo run --release --example floor -- 127.0.0.1:7001 127.0.0.1:7379`.

use futures_util::{SinkExt, StreamExt};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Rooms = Arc<RwLock<HashMap<String, Vec<UnboundedSender<Message>>>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ws_addr = args.get(1).map_or("127.0.0.1:7001", String::as_str);
    let resp_addr = args.get(2).map_or("127.0.0.1:7379", String::as_str);
    let rooms: Rooms = Arc::default();
    let ws = TcpListener::bind(ws_addr).await.expect("bind ws");
    let resp = TcpListener::bind(resp_addr).await.expect("bind resp");
    eprintln!("floor: ws {ws_addr}, resp {resp_addr}");
    let r = rooms.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = resp.accept().await {
            tokio::spawn(publisher(s, r.clone()));
        }
    });
    while let Ok((s, _)) = ws.accept().await {
        tokio::spawn(subscriber(s, rooms.clone()));
    }
}

async fn subscriber(s: TcpStream, rooms: Rooms) {
    let _ = s.set_nodelay(true);
    // Small buffers, as the floor measured in ARCHITECTURE.md (tungstenite's default
    // read buffer is 128 KiB per connection).
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(s, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let open = r#"0{"sid":"floor","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    let _ = tx.send(Message::text(open));
    while let Some(Ok(Message::Text(t))) = stream.next().await {
        let t = t.as_str();
        if t == "40" {
            let _ = tx.send(Message::text(r#"40{"sid":"floor"}"#));
        } else if let Some(rest) = t.strip_prefix(r#"42["subscribe",{"channel":""#) {
            if let Some(end) = rest.find('"') {
                rooms
                    .write()
                    .entry(rest[..end].to_string())
                    .or_default()
                    .push(tx.clone());
            }
        }
    }
}

/// Minimal RESP: multibulk commands; PUBLISH fans out, anything else gets +OK.
async fn publisher(mut s: TcpStream, rooms: Rooms) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some((args, used)) = parse(&buf[at..]) {
            at += used;
            if args.len() == 3 && args[0].eq_ignore_ascii_case(b"publish") {
                let channel = String::from_utf8_lossy(&args[1]);
                let channel = channel
                    .strip_prefix("laravel_database_")
                    .unwrap_or(&channel);
                let n = fan_out(&rooms, channel, &args[2]);
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            } else {
                out.extend_from_slice(b"+OK\r\n");
            }
        }
        buf.drain(..at);
        if s.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

/// Laravel's envelope; `data` is kept as the publisher wrote it (key order included).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

fn fan_out(rooms: &Rooms, channel: &str, payload: &[u8]) -> usize {
    let Ok(v) = serde_json::from_slice::<Envelope>(payload) else {
        return 0;
    };
    let frame = format!(r#"42[{},"{channel}",{}]"#, v.event.get(), v.data.get());
    let msg = Message::Text(Utf8Bytes::from(frame));
    let rooms = rooms.read();
    let Some(subs) = rooms.get(channel) else {
        return 0;
    };
    for tx in subs {
        let _ = tx.send(msg.clone());
    }
    subs.len()
}

fn line(b: &[u8]) -> Option<(&[u8], usize)> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    Some((&b[..end], end + 2))
}

fn parse(b: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let (head, mut at) = line(b)?;
    let count: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (h, used) = line(&b[at..])?;
        let len: usize = std::str::from_utf8(h.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        at += used;
        if b.len() < at + len + 2 {
            return None;
        }
        args.push(b[at..at + len].to_vec());
        at += len + 2;
    }
    Some((args, at))
}
