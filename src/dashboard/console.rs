//! The debug console: watch one channel's publications pass, publish a test event, list
//! a presence channel's members.
//!
//! Watching subscribes the dashboard connection to the channel's stream as one more
//! [`StreamSubscriber`], as an edge subscribes for its clients: it sees exactly what the
//! edges see, numbered, in order. It counts as no delivery (it is not a client). A test
//! event is made as the Pusher HTTP API makes one (`Envelope::from_pusher_api`, a
//! [`Publication`] of the namespace, shown to RESP in the default one) and published
//! through the broker: the one path every publication takes, so socket.io, Pusher and
//! RESP subscribers (and, with `--cluster`, the other nodes) get it.

use crate::broker::{Broker, Namespace, Origin, Publication, StreamSubscriber, SubscriberId};
use crate::laravel::Envelope;
use crate::outbox::Outbox;
use crate::presence::Presence;
use crate::pusher::apps::Apps;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

/// The most bytes of a payload the console shows (the rest is cut, and said so).
pub const SHOWN_PAYLOAD: usize = 4096;

/// A dashboard connection as a subscriber of the channel it watches.
pub struct Watcher {
    pub id: SubscriberId,
    pub outbox: Arc<Outbox>,
}

impl StreamSubscriber for Watcher {
    fn id(&self) -> SubscriberId {
        self.id
    }

    /// Under the stream's lock: encode one small frame, queue it, return.
    fn deliver(&self, p: &Publication) -> usize {
        self.outbox.push(event_frame(p));
        0
    }
}

/// The console's line for a publication: `{"type":"event",…}` as a WebSocket frame.
pub fn event_frame(p: &Publication) -> Bytes {
    let cut = p.payload.len() > SHOWN_PAYLOAD;
    let shown = &p.payload[..p.payload.len().min(SHOWN_PAYLOAD)];
    let frame = json!({
        "type": "event",
        "namespace": super::figures::namespace_label(&p.namespace),
        "channel": String::from_utf8_lossy(p.channel()),
        "seq": p.offset.map(|o| o.seq),
        "epoch": p.offset.map(|o| o.epoch.0.to_string()),
        "origin": match p.origin { Origin::Server => "server", Origin::Client => "client" },
        "payload": String::from_utf8_lossy(shown),
        "truncated": cut,
    });
    crate::ws::frame::text(frame.to_string().as_bytes())
}

/// A test event the console asks to publish.
pub struct TestEvent<'a> {
    pub namespace: Namespace,
    pub channel: &'a str,
    pub event: &'a str,
    /// The event's data as text (JSON goes in as JSON, as the HTTP API takes it).
    pub data: &'a str,
}

/// Publish `ev` through the broker; how many receivers it reached on this node.
pub fn publish(broker: &dyn Broker, ev: &TestEvent<'_>, max_data: usize) -> Result<usize, String> {
    crate::edge_policy::check_channel_name(ev.channel)
        .map_err(|e| format!("invalid channel name ({e:?})"))?;
    if ev.event.is_empty() || ev.event.len() > 200 {
        return Err("the event name is 1 to 200 bytes".into());
    }
    if ev.data.len() > max_data {
        return Err(format!("data over {max_data} bytes (--max-message-size)"));
    }
    let payload = Envelope::from_pusher_api(ev.event, ev.data, None);
    let name = Bytes::copy_from_slice(ev.channel.as_bytes());
    let mut p = Publication::new(ev.namespace.clone(), name, payload);
    if ev.namespace == Namespace::Default {
        p = p.seen_by_resp();
    }
    Ok(broker.publish(p))
}

/// The presence members of `channel` in `namespace`, each with the presence scope
/// (`socket.io`, `pusher:<app>`) it is in: socket.io and the default Pusher app share
/// the default namespace's channel names, but keep their presence apart.
pub fn members(
    presence: &dyn Presence,
    apps: Option<&Arc<Apps>>,
    socketio: bool,
    namespace: &Namespace,
    channel: &str,
) -> Vec<Value> {
    let mut scopes = Vec::new();
    if socketio && *namespace == Namespace::Default {
        scopes.push("socket.io".to_string());
    }
    for app in apps.map(|a| a.all()).iter().flat_map(|a| a.iter()) {
        if app.namespace == *namespace {
            scopes.push(format!("pusher:{}", app.config().id));
        }
    }
    let mut out = Vec::new();
    for scope in scopes {
        for m in presence.members(&scope, channel) {
            let info: Value = (m.info.as_deref())
                .and_then(|i| serde_json::from_str(i.get()).ok())
                .unwrap_or(Value::Null);
            let user_id: Value = serde_json::from_str(m.user_id.get()).unwrap_or(Value::Null);
            out.push(json!({"scope": scope, "user_id": user_id, "user_info": info}));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{next_subscriber_id, MemoryBroker};
    use crate::outbox::OutboxLimits;

    #[test]
    fn a_watched_channel_shows_each_publication_and_a_test_event_takes_the_one_path() {
        let broker = MemoryBroker::new();
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let w = Arc::new(Watcher {
            id: next_subscriber_id(),
            outbox: outbox.clone(),
        });
        broker.stream_subscribe(&Namespace::Default, b"orders", w.clone());
        let ev = TestEvent {
            namespace: Namespace::Default,
            channel: "orders",
            event: "test",
            data: r#"{"n":1}"#,
        };
        assert_eq!(
            publish(&broker, &ev, 1024),
            Ok(0),
            "a watcher is not a receiver"
        );
        assert_eq!(broker.stats().published.get(), 1);
        let mut frames = Vec::new();
        outbox.take_now(&mut frames).unwrap();
        assert_eq!(frames.len(), 1);
        let text = String::from_utf8_lossy(&frames[0]);
        assert!(text.contains(r#""channel":"orders""#), "{text}");
        assert!(text.contains(r#"\"event\":\"test\""#), "{text}");

        let bad = TestEvent {
            channel: "no spaces",
            ..ev
        };
        assert!(publish(&broker, &bad, 1024).is_err());
        let big = TestEvent {
            channel: "orders",
            data: "xxxx",
            ..bad
        };
        assert!(publish(&broker, &big, 3).is_err());
        assert_eq!(
            broker.stats().published.get(),
            1,
            "refused ones are not published"
        );
    }
}
