//! Laravel's broadcasting conventions, in one place.
//!
//! Laravel's `redis` broadcaster publishes `{"event":E,"data":D,"socket":S}` on the
//! channel name with the Redis connection's key prefix in front (`laravel_database_`
//! by default; since Laravel 12 derived from APP_NAME, e.g. `laravel-database-`).
//! Channel kinds are spelled in the name: `private-`, `private-encrypted-`,
//! `presence-`. `socket` names the connection to leave out (`toOthers()`).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What kind of channel a name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
}

impl ChannelKind {
    pub fn of(channel: &str) -> ChannelKind {
        if channel.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if channel.starts_with("private-") {
            ChannelKind::Private
        } else if channel.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// Private, encrypted and presence channels need the app's authorization.
    pub fn needs_auth(self) -> bool {
        self != ChannelKind::Public
    }
}

/// The configured Redis key prefixes, stripped from published channel names.
#[derive(Clone, Debug)]
pub struct Prefixes(Vec<String>);

impl Prefixes {
    pub fn new(prefixes: &[String]) -> Self {
        // Longest first, so a prefix that extends another wins.
        let mut v: Vec<String> = prefixes.iter().filter(|p| !p.is_empty()).cloned().collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Prefixes(v)
    }

    /// The channel name as the app's clients know it; unprefixed names pass as they are.
    pub fn strip<'a>(&self, channel: &'a [u8]) -> &'a [u8] {
        for p in &self.0 {
            if let Some(rest) = channel.strip_prefix(p.as_bytes()) {
                return rest;
            }
        }
        channel
    }
}

/// A decoded broadcast: the event name, its data (raw JSON, never re-parsed) and the
/// socket id to exclude.
#[derive(Debug)]
pub struct Envelope {
    pub event: String,
    pub data: Box<RawValue>,
    pub socket: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    event: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    socket: Option<serde_json::Value>,
}

impl Envelope {
    /// Decode a published payload; None when it is not a Laravel broadcast.
    pub fn decode(payload: &Bytes) -> Option<Envelope> {
        let w: Wire = serde_json::from_slice(payload).ok()?;
        let socket = match w.socket {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        Some(Envelope {
            event: w.event,
            data: w
                .data
                .unwrap_or_else(|| RawValue::from_string("null".into()).unwrap()),
            socket,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(ChannelKind::of("orders.1"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("private-user.1"), ChannelKind::Private);
        assert_eq!(
            ChannelKind::of("private-encrypted-x"),
            ChannelKind::PrivateEncrypted
        );
        assert_eq!(ChannelKind::of("presence-room"), ChannelKind::Presence);
        assert!(!ChannelKind::Public.needs_auth());
    }

    #[test]
    fn strips_configured_prefixes() {
        let p = Prefixes::new(&["laravel_database_".into(), "laravel-database-".into()]);
        assert_eq!(p.strip(b"laravel_database_orders.1"), b"orders.1");
        assert_eq!(p.strip(b"laravel-database-private-x"), b"private-x");
        assert_eq!(p.strip(b"orders.1"), b"orders.1");
    }

    #[test]
    fn decodes_envelopes() {
        let e = Envelope::decode(&Bytes::from_static(
            br#"{"event":"OrderShipped","data":{"id":1,"socket":null},"socket":"abc"}"#,
        ))
        .unwrap();
        assert_eq!(e.event, "OrderShipped");
        assert_eq!(e.data.get(), r#"{"id":1,"socket":null}"#);
        assert_eq!(e.socket.as_deref(), Some("abc"));
        let e = Envelope::decode(&Bytes::from_static(
            br#"{"event":"E","data":[],"socket":null}"#,
        ))
        .unwrap();
        assert_eq!(e.socket, None);
        assert!(Envelope::decode(&Bytes::from_static(b"plain text")).is_none());
        assert!(Envelope::decode(&Bytes::from_static(br#"{"data":1}"#)).is_none());
    }
}
