//! Laravel's broadcasting conventions, in one place.
//!
//! Laravel's `redis` broadcaster publishes `{"event":E,"data":D,"socket":S}` on the
//! channel name with the Redis connection's key prefix in front (`laravel_database_`
//! by default; since Laravel 12 derived from APP_NAME, e.g. `laravel-database-`).
//! Channel kinds are spelled in the name: `private-`, `private-encrypted-`,
//! `presence-`. `socket` names the connection to leave out (`toOthers()`).
//!
//! [`Broadcasts`] is the one broker tap that turns publications into broadcasts for
//! every WebSocket edge: the prefix is stripped and the envelope decoded once per
//! publication, and only when some edge has a listener on that channel.

use crate::broker::Tap;
use crate::readmostly::ReadMostly;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

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
        #[cfg(test)]
        tests::DECODES.with(|n| n.set(n.get() + 1));
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

/// A WebSocket edge that delivers Laravel broadcasts to its own clients.
pub trait Audience: Send + Sync {
    /// Could a broadcast on `channel` (prefix stripped) reach anyone here? A publication
    /// no edge listens to is never decoded.
    fn listens(&self, channel: &str) -> bool;
    /// Deliver one decoded broadcast; returns how many connections it reached.
    fn deliver(&self, channel: &str, broadcast: &Envelope) -> usize;
}

/// The broker tap shared by the edges: strip, decode once, hand to each audience.
pub struct Broadcasts {
    prefixes: Prefixes,
    audiences: ReadMostly<dyn Audience>,
}

impl Broadcasts {
    pub fn new(prefixes: &[String]) -> Self {
        Broadcasts {
            prefixes: Prefixes::new(prefixes),
            audiences: ReadMostly::default(),
        }
    }

    pub fn add(&self, audience: Arc<dyn Audience>) {
        self.audiences.push(audience);
    }
}

impl Tap for Broadcasts {
    fn publish(&self, channel: &Bytes, payload: &Bytes) -> usize {
        let Ok(name) = std::str::from_utf8(self.prefixes.strip(channel)) else {
            return 0;
        };
        let audiences = self.audiences.load();
        if !audiences.iter().any(|a| a.listens(name)) {
            return 0;
        }
        let Some(broadcast) = Envelope::decode(payload) else {
            crate::metrics::NON_LARAVEL_PAYLOADS.inc();
            return 0;
        };
        audiences.iter().map(|a| a.deliver(name, &broadcast)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Calls of [`Envelope::decode`] on this thread (each test runs on its own).
        pub(super) static DECODES: Cell<usize> = const { Cell::new(0) };
    }

    fn decodes() -> usize {
        DECODES.with(Cell::get)
    }

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

    /// Listens on one channel; records what it was given.
    struct Listener(&'static str, parking_lot::Mutex<Vec<String>>);

    impl Audience for Listener {
        fn listens(&self, channel: &str) -> bool {
            channel == self.0
        }
        fn deliver(&self, channel: &str, b: &Envelope) -> usize {
            self.1
                .lock()
                .push(format!("{channel} {} {}", b.event, b.data.get()));
            1
        }
    }

    #[test]
    fn broadcasts_decode_once_for_every_audience() {
        let tap = Broadcasts::new(&["laravel_database_".into()]);
        let (a, b) = (
            Arc::new(Listener("orders.1", Default::default())),
            Arc::new(Listener("orders.2", Default::default())),
        );
        tap.add(a.clone());
        tap.add(b.clone());
        let payload = Bytes::from_static(br#"{"event":"E","data":{"x":1},"socket":null}"#);
        let before = decodes();
        assert_eq!(
            tap.publish(&Bytes::from_static(b"laravel_database_orders.1"), &payload),
            2
        );
        assert_eq!(decodes() - before, 1, "one decode for both audiences");
        assert_eq!(*a.1.lock(), ["orders.1 E {\"x\":1}"]);
        assert_eq!(*b.1.lock(), ["orders.1 E {\"x\":1}"]);
        let junk = Bytes::from_static(b"not json");
        let before = decodes();
        assert_eq!(tap.publish(&Bytes::from_static(b"nobody"), &junk), 0);
        assert_eq!(decodes(), before, "unheard: never decoded");
        let non_laravel = crate::metrics::NON_LARAVEL_PAYLOADS.get();
        assert_eq!(tap.publish(&Bytes::from_static(b"orders.2"), &junk), 0);
        assert_eq!(decodes() - before, 1);
        assert!(crate::metrics::NON_LARAVEL_PAYLOADS.get() > non_laravel);
    }
}
