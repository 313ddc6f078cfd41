//! What both WebSocket edges allow a browser to do, decided in one place.
//!
//! socket.io (Echo's socket.io connector) and Pusher (Echo's reverb/pusher connectors,
//! pusher-js) face the same browsers and the same attackers, so they apply one policy:
//! which channel names exist, which origins may connect, how fast a connection may
//! subscribe ([`Subscribes`]), and which client events (whispers) are relayed (who a presence member is, Laravel's rule, is in
//! [`crate::laravel::PresenceMember`]). Each edge only words the verdict in its own protocol: `subscription_error` / `client_event_error` on socket.io, Pusher's
//! error codes on Pusher ([`ClientEventRefusal`] carries both wordings).
//!
//! What stays per protocol is the transport's own frame limit (Engine.IO's
//! `--max-http-buffer-size`, Pusher's frame limit derived from the app's
//! `max_message_size`): those bound what is read at all; the payload caps here bound
//! what is relayed to others.

use crate::laravel::ChannelKind;
use crate::token_bucket::{Bucket, Rate};
use std::time::{Duration, Instant};

/// The longest channel name, in bytes (Pusher's limit, applied on both edges).
pub const MAX_CHANNEL_NAME: usize = 200;

/// Why a channel name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadChannelName {
    Empty,
    TooLong,
    /// A byte outside Pusher's set `A-Za-z0-9_-=@,.;#`.
    BadCharacter,
}

/// A channel name both edges accept: 1–200 bytes of `A-Za-z0-9_-=@,.;` (and `#`, for
/// Pusher's `#server-to-user-` channels).
pub fn check_channel_name(name: &str) -> Result<(), BadChannelName> {
    if name.is_empty() {
        Err(BadChannelName::Empty)
    } else if name.len() > MAX_CHANNEL_NAME {
        Err(BadChannelName::TooLong)
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;#".contains(&b))
    {
        Err(BadChannelName::BadCharacter)
    } else {
        Ok(())
    }
}

pub fn valid_channel_name(name: &str) -> bool {
    check_channel_name(name).is_ok()
}

/// Whether a browser page at `origin` may connect, given the allowed list (the
/// server-wide `--allowed-origins`, or a Pusher app's own). No `Origin` header: not a
/// browser, allowed. An empty list or `*` allows any. An entry with a scheme
/// (`https://shop.test`) must equal the origin; an entry without one (`shop.test`,
/// `shop.test:8443`) names a host, or host and port, under any scheme. Case never
/// matters (browsers lowercase schemes and hosts, people write them as they like).
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let host = authority.split(':').next().unwrap_or(authority);
    allowed.is_empty()
        || allowed.iter().any(|a| {
            a == "*"
                || a.eq_ignore_ascii_case(origin)
                || (!a.contains("://")
                    && (a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(authority)))
        })
}

/// The client-event (whisper) rules one connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct ClientEvents {
    /// Off for a Pusher app with `client_events = false`.
    pub enabled: bool,
    /// Client events per second per connection (`--client-event-rate`); 0: client
    /// events are off.
    pub rate: u32,
    /// Largest `data` relayed, in bytes of its JSON text (a Pusher app's
    /// `max_message_size`, socket.io's `--max-message-size`).
    pub max_bytes: usize,
}

/// One client event as the policy sees it.
pub struct ClientEvent<'a> {
    pub event: &'a str,
    pub channel: &'a str,
    /// Whether the sender is a member of `channel`.
    pub subscribed: bool,
    /// Bytes of the `data` JSON text.
    pub data_len: usize,
}

/// Why a client event is not relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEventRefusal {
    Disabled,
    NotClientEvent,
    ChannelKind,
    NotSubscribed,
    TooLarge,
    RateLimited,
}

impl ClientEventRefusal {
    /// The `message` of socket.io's `client_event_error`.
    pub fn socketio_message(self) -> &'static str {
        match self {
            Self::Disabled => "client events are disabled",
            Self::NotClientEvent => "client event names start with client-",
            Self::ChannelKind => "client events are allowed on private and presence channels only",
            Self::NotSubscribed => "not subscribed to this channel",
            Self::TooLarge => "client event data is too large",
            Self::RateLimited => "client event rate limit exceeded",
        }
    }

    /// Pusher's `pusher:error` code and message.
    pub fn pusher_error(self) -> (u16, &'static str) {
        let message = match self {
            Self::Disabled => {
                "To send client events, you must enable this feature in the Settings."
            }
            Self::NotClientEvent => "Client event names must start with client-",
            Self::ChannelKind => "Client events are only allowed on private and presence channels",
            Self::NotSubscribed => "Client events need a subscription to the channel",
            Self::TooLarge => "Client event data is too large",
            Self::RateLimited => "Client event rejected due to rate limit",
        };
        (4301, message)
    }
}

/// How fast one connection may subscribe to channels it is not on (`--subscribe-burst`,
/// `--subscribe-rate`): each subscription makes the node work (in a cluster, Redis round
/// trips), so a client that subscribes and leaves in a loop is refused with 429 (counted)
/// once its bucket is empty, while a page subscribing to its channels at once is not.
#[derive(Debug)]
pub struct Subscribes {
    rate: Rate,
    bucket: Bucket,
}

impl Subscribes {
    pub fn new(rate: Rate) -> Self {
        Subscribes {
            rate,
            bucket: Bucket::default(),
        }
    }

    /// Whether one more subscription may be made now.
    pub fn admit(&mut self, now: Instant) -> bool {
        let admitted = self.rate.take(&mut self.bucket, now);
        if !admitted {
            crate::metrics::SUBSCRIBE_RATE_LIMITED.inc();
        }
        admitted
    }
}

/// A connection's client events in the current one-second window.
#[derive(Clone, Copy, Debug)]
pub struct RateWindow {
    start: Instant,
    count: u32,
}

impl RateWindow {
    pub fn new(now: Instant) -> Self {
        RateWindow {
            start: now,
            count: 0,
        }
    }
}

impl ClientEvents {
    /// Whether `ev` may be relayed; an accepted event counts against the rate, a
    /// refused one does not.
    pub fn check(
        &self,
        ev: &ClientEvent<'_>,
        window: &mut RateWindow,
        now: Instant,
    ) -> Result<(), ClientEventRefusal> {
        if !self.enabled || self.rate == 0 {
            return Err(ClientEventRefusal::Disabled);
        }
        if !ev.event.starts_with("client-") {
            return Err(ClientEventRefusal::NotClientEvent);
        }
        if !matches!(
            ChannelKind::of(ev.channel),
            ChannelKind::Private | ChannelKind::Presence
        ) {
            return Err(ClientEventRefusal::ChannelKind);
        }
        if !ev.subscribed {
            return Err(ClientEventRefusal::NotSubscribed);
        }
        if ev.data_len > self.max_bytes {
            return Err(ClientEventRefusal::TooLarge);
        }
        if now.duration_since(window.start) >= Duration::from_secs(1) {
            *window = RateWindow::new(now);
        }
        if window.count >= self.rate {
            return Err(ClientEventRefusal::RateLimited);
        }
        window.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert_eq!(check_channel_name("private-orders.1"), Ok(()));
        assert_eq!(check_channel_name("#server-to-user-7"), Ok(()));
        assert_eq!(check_channel_name(&"a".repeat(200)), Ok(()));
        assert_eq!(
            check_channel_name(&"a".repeat(201)),
            Err(BadChannelName::TooLong)
        );
        assert_eq!(check_channel_name(""), Err(BadChannelName::Empty));
        assert_eq!(
            check_channel_name("has space"),
            Err(BadChannelName::BadCharacter)
        );
        assert_eq!(
            check_channel_name("naïve"),
            Err(BadChannelName::BadCharacter)
        );
    }

    #[test]
    fn origins() {
        let list: Vec<String> = [
            "https://exact.test",
            "host.test",
            "port.test:8443",
            "CASE.test",
        ]
        .map(String::from)
        .to_vec();
        let ok = |o| origin_allowed(&list, Some(o));
        assert!(ok("https://exact.test"));
        assert!(ok("HTTPS://EXACT.TEST"));
        assert!(!ok("http://exact.test"), "an entry with a scheme is exact");
        assert!(!ok("https://exact.test:8443"));
        assert!(ok("http://host.test"));
        assert!(ok("https://host.test:8443"));
        assert!(ok("https://port.test:8443"));
        assert!(!ok("https://port.test"));
        assert!(ok("https://case.test"));
        assert!(!ok("https://evil.test"));
        assert!(!ok("https://host.test.evil.test"));
        assert!(!ok("null"));
        assert!(origin_allowed(&list, None), "not a browser");
        assert!(origin_allowed(&["*".into()], Some("https://evil.test")));
        assert!(origin_allowed(&[], Some("https://evil.test")));
    }

    #[test]
    fn client_events() {
        let policy = ClientEvents {
            enabled: true,
            rate: 2,
            max_bytes: 10,
        };
        let now = Instant::now();
        let mut w = RateWindow::new(now);
        let ev = |channel, subscribed, data_len| ClientEvent {
            event: "client-typing",
            channel,
            subscribed,
            data_len,
        };
        let check = |p: &ClientEvents, e, w: &mut RateWindow, t| p.check(&e, w, t);
        use ClientEventRefusal::*;
        assert_eq!(
            check(&policy, ev("chat", true, 1), &mut w, now),
            Err(ChannelKind)
        );
        assert_eq!(
            check(&policy, ev("private-encrypted-x", true, 1), &mut w, now),
            Err(ChannelKind)
        );
        assert_eq!(
            check(&policy, ev("private-x", false, 1), &mut w, now),
            Err(NotSubscribed)
        );
        assert_eq!(
            check(&policy, ev("presence-x", true, 11), &mut w, now),
            Err(TooLarge)
        );
        assert_eq!(
            check(&policy, ev("presence-x", true, 10), &mut w, now),
            Ok(())
        );
        assert_eq!(
            check(&policy, ev("private-x", true, 0), &mut w, now),
            Ok(())
        );
        assert_eq!(
            check(&policy, ev("private-x", true, 0), &mut w, now),
            Err(RateLimited)
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            check(&policy, ev("private-x", true, 0), &mut w, later),
            Ok(())
        );
        let mut named = ev("private-x", true, 0);
        named.event = "typing";
        assert_eq!(policy.check(&named, &mut w, later), Err(NotClientEvent));
        for off in [
            ClientEvents { rate: 0, ..policy },
            ClientEvents {
                enabled: false,
                ..policy
            },
        ] {
            assert_eq!(
                check(&off, ev("private-x", true, 0), &mut w, later),
                Err(Disabled)
            );
        }
    }
}
