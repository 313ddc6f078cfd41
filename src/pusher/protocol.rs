//! Pusher protocol v7 messages: what clients send and the frames the server sends.
//!
//! Every server event's `data` is a JSON-encoded string (the protocol fixes it; pusher-js
//! parses it a second time). Client events are relayed with the `data` the client sent.
//! Each function returns a complete WebSocket text frame, encoded once, ready to be
//! pushed to any number of outboxes.

use crate::ws::frame;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One message from a client: `{"event", "channel"?, "data"?}`.
#[derive(Deserialize)]
pub struct Incoming<'a> {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

impl Incoming<'_> {
    /// The `data` field as `T`, whether sent as an object or as a JSON-encoded string.
    pub fn data_as<T: DeserializeOwned>(&self) -> Option<T> {
        let raw = self.data?.get();
        if raw.starts_with('"') {
            let text: String = serde_json::from_str(raw).ok()?;
            serde_json::from_str(&text).ok()
        } else {
            serde_json::from_str(raw).ok()
        }
    }
}

/// `pusher:subscribe`'s data.
#[derive(Deserialize)]
pub struct Subscribe {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:unsubscribe`'s data.
#[derive(Deserialize)]
pub struct Unsubscribe {
    pub channel: String,
}

/// `pusher:signin`'s data.
#[derive(Deserialize)]
pub struct Signin {
    pub auth: String,
    pub user_data: String,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a RawValue>,
}

fn encode(
    event: &str,
    channel: Option<&str>,
    data: Option<&RawValue>,
    user_id: Option<&RawValue>,
) -> Bytes {
    let json = serde_json::to_vec(&Outgoing {
        event,
        channel,
        data,
        user_id,
    })
    .expect("strings and raw JSON always serialize");
    frame::text(&json)
}

/// A server event whose `data` is `json` (any JSON text), sent as a JSON-encoded string.
pub fn event(event: &str, channel: Option<&str>, json: &str) -> Bytes {
    let quoted = serde_json::to_string(json).expect("a string serializes");
    let data = RawValue::from_string(quoted).expect("a JSON string is valid JSON");
    encode(event, channel, Some(&data), None)
}

/// A server event with no data (`pusher:cache_miss`).
pub fn bare(event: &str, channel: Option<&str>) -> Bytes {
    encode(event, channel, None, None)
}

/// A client event relayed to the other members: the client's own `data`, plus
/// `user_id` on presence channels.
pub fn client_event(
    event: &str,
    channel: &str,
    data: Option<&RawValue>,
    user_id: Option<&RawValue>,
) -> Bytes {
    encode(event, Some(channel), data, user_id)
}

/// `pusher:error` with a code and message, as every Pusher server words it.
pub fn error(code: u16, message: &str) -> Bytes {
    let data = serde_json::json!({ "code": code, "message": message }).to_string();
    event("pusher:error", None, &data)
}

/// `pusher:subscription_error` for one channel, in the shape pusher-js hands to
/// `channel.bind('pusher:subscription_error')` (and Echo's `.error()`).
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Bytes {
    let data = serde_json::json!({ "type": kind, "error": message, "status": status }).to_string();
    event("pusher:subscription_error", Some(channel), &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &Bytes) -> &str {
        std::str::from_utf8(&frame[2..]).unwrap()
    }

    #[test]
    fn server_data_is_a_json_string() {
        let f = event("App\\Events\\Shipped", Some("orders.1"), r#"{"id":1}"#);
        assert_eq!(
            body(&f),
            r#"{"event":"App\\Events\\Shipped","channel":"orders.1","data":"{\"id\":1}"}"#
        );
        assert_eq!(
            body(&error(4001, "nope")),
            r#"{"event":"pusher:error","data":"{\"code\":4001,\"message\":\"nope\"}"}"#
        );
        assert_eq!(
            body(&bare("pusher:cache_miss", Some("cache-x"))),
            r#"{"event":"pusher:cache_miss","channel":"cache-x"}"#
        );
    }

    #[test]
    fn data_as_accepts_object_or_string() {
        let m: Incoming =
            serde_json::from_str(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        assert_eq!(m.data_as::<Subscribe>().unwrap().channel, "a");
        let m: Incoming =
            serde_json::from_str(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
                .unwrap();
        assert_eq!(m.data_as::<Subscribe>().unwrap().channel, "b");
    }
}
