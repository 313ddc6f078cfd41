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
//!
//! A prefix herald was not told about must never make a private channel public: a name
//! behind any Laravel-shaped prefix (`<slug>_database_`, `<slug>-database-`) keeps the
//! kind of the name after it, for subscribers ([`ChannelKind::of`]) and for
//! publications, whose prefix is learned from the first private or presence broadcast,
//! logged once with the flag to set, and stripped from then on like a configured one.
//!
//! Who a presence member is comes from Laravel too: [`PresenceMember`] reads the
//! `channel_data` of the app's auth answer, with one key for user id `7` and `"7"`.

use crate::broker::Tap;
use crate::readmostly::ReadMostly;
use bytes::Bytes;
use parking_lot::Mutex;
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
    /// The kind `channel` denotes. Behind a Laravel-shaped Redis key prefix a name keeps
    /// the kind of the name after it: `my_shop_database_private-orders.1` is private, so
    /// a client that subscribes to the prefixed name must be authorized as for
    /// `private-orders.1`.
    pub fn of(channel: &str) -> ChannelKind {
        let kind = ChannelKind::spelled(channel);
        if kind != ChannelKind::Public {
            return kind;
        }
        laravel_prefix_ends(channel)
            .map(|end| ChannelKind::spelled(&channel[end..]))
            .find(|k| k.needs_auth())
            .unwrap_or(ChannelKind::Public)
    }

    /// The kind spelled at the start of the name.
    fn spelled(channel: &str) -> ChannelKind {
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

/// Where the name proper starts after each Laravel-shaped Redis key prefix at the start of
/// `name`, shortest prefix first. config/database.php builds the prefix from APP_NAME:
/// `Str::slug(APP_NAME, '_').'_database_'` (Laravel up to 11) or
/// `Str::slug(APP_NAME).'-database-'` (newer skeletons).
fn laravel_prefix_ends(name: &str) -> impl Iterator<Item = usize> + '_ {
    const WORD: &str = "database";
    name.match_indices(WORD).filter_map(move |(at, _)| {
        let sep = *name.as_bytes().get(at.checked_sub(1)?)?;
        let end = at + WORD.len() + 1;
        let shaped = matches!(sep, b'_' | b'-')
            && name.as_bytes().get(end - 1) == Some(&sep)
            && is_slug(&name[..at - 1], sep as char);
        shaped.then_some(end)
    })
}

/// What `Str::slug` can make: lowercase letters and digits, in words joined by single
/// separators; empty when APP_NAME has neither.
fn is_slug(s: &str, sep: char) -> bool {
    s.is_empty()
        || s.split(sep).all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_alphanumeric() && !c.is_uppercase())
        })
}

/// The most prefixes learned from publications; past this, private and presence names
/// are still recognised one publication at a time, but public ones keep their prefix.
const MAX_LEARNED: usize = 16;

/// The Redis key prefixes stripped from published channel names: the configured ones,
/// and those learned from Laravel-shaped private and presence publications.
pub struct Prefixes {
    configured: Vec<String>,
    learned: ReadMostly<str>,
    /// Held while a prefix is learned, so that it is added and logged once.
    learning: Mutex<()>,
}

impl Prefixes {
    pub fn new(prefixes: &[String]) -> Self {
        // Longest first, so a prefix that extends another wins.
        let mut v: Vec<String> = prefixes.iter().filter(|p| !p.is_empty()).cloned().collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Prefixes {
            configured: v,
            learned: ReadMostly::default(),
            learning: Mutex::new(()),
        }
    }

    /// The channel name as the app's clients know it; unprefixed names pass as they are.
    pub fn strip<'a>(&self, channel: &'a str) -> &'a str {
        if let Some(rest) = self
            .configured
            .iter()
            .find_map(|p| channel.strip_prefix(p.as_str()))
        {
            return rest;
        }
        if let Some(end) = laravel_prefix_ends(channel)
            .find(|&end| ChannelKind::spelled(&channel[end..]).needs_auth())
        {
            self.learn(&channel[..end]);
            return &channel[end..];
        }
        let learned = self.learned.load();
        learned
            .iter()
            .find_map(|p| channel.strip_prefix(&**p))
            .unwrap_or(channel)
    }

    /// Remember `prefix` (seen in front of a private or presence channel) and say so once.
    fn learn(&self, prefix: &str) {
        let known = |learned: &[std::sync::Arc<str>]| learned.iter().any(|p| **p == *prefix);
        if known(&self.learned.load()) {
            return;
        }
        let _one = self.learning.lock();
        let learned = self.learned.load();
        if known(&learned) || learned.len() >= MAX_LEARNED {
            return;
        }
        self.learned.push(prefix.into());
        tracing::warn!(
            prefix,
            "publications use the Redis key prefix {prefix:?}, which herald was not told: \
             its private and presence channels stay private, and it is stripped from now on; \
             set --redis-prefix {prefix} (HERALD_REDIS_PREFIXES, redis_prefixes) with your other prefixes"
        );
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

/// A presence channel's member as Laravel names it: the `channel_data` of the app's
/// auth answer, `{"user_id":…,"user_info":…}` (what the channel's callback in
/// routes/channels.php returned), or a Pusher signed-in user.
#[derive(Debug)]
pub struct PresenceMember {
    /// Who the member is ([`presence_key`]): one key for user id `7` and `"7"`.
    pub key: Box<str>,
    /// The user id as the app wrote it (a number stays a number for Echo).
    pub user_id: Box<RawValue>,
    /// `user_info`; None when absent or null.
    pub info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ChannelData {
    user_id: Box<RawValue>,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct AuthAnswer {
    channel_data: Option<Box<RawValue>>,
}

impl PresenceMember {
    /// From `channel_data` text; None without a usable `user_id` ([`presence_key`]).
    pub fn from_channel_data(text: &str) -> Option<Self> {
        let data: ChannelData = serde_json::from_str(text).ok()?;
        let key = presence_key(&serde_json::from_str(data.user_id.get()).ok()?)?;
        Some(PresenceMember {
            key,
            user_id: data.user_id,
            info: data.user_info,
        })
    }

    /// From the body of the app's answer to `/broadcasting/auth`, whose `channel_data`
    /// is an object or a JSON string of one (Laravel's Pusher broadcaster sends it so).
    pub fn from_auth_answer(body: &[u8]) -> Option<Self> {
        let data = serde_json::from_slice::<AuthAnswer>(body)
            .ok()?
            .channel_data?;
        match serde_json::from_str::<String>(data.get()) {
            Ok(text) => Self::from_channel_data(&text),
            Err(_) => Self::from_channel_data(data.get()),
        }
    }

    /// A user signed in with Pusher's `pusher:signin` (whose ids are strings).
    pub fn signed_in(id: &str) -> Self {
        let quoted = serde_json::to_string(id).expect("a string serializes");
        PresenceMember {
            key: id.into(),
            user_id: RawValue::from_string(quoted).expect("valid JSON"),
            info: None,
        }
    }
}

/// The key a presence member is known by: user id `7` and `"7"` are one member, as
/// Laravel (`$user->id` or its string) and Pusher (ids are strings) treat them. A
/// string is itself, a number is its decimal text; anything else (an empty string,
/// null, an object) names no one.
pub fn presence_key(user_id: &serde_json::Value) -> Option<Box<str>> {
    match user_id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.as_str().into()),
        serde_json::Value::Number(n) => Some(n.to_string().into()),
        _ => None,
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
        let Ok(name) = std::str::from_utf8(channel) else {
            return 0;
        };
        let name = self.prefixes.strip(name);
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
        assert_eq!(p.strip("laravel_database_orders.1"), "orders.1");
        assert_eq!(p.strip("laravel-database-private-x"), "private-x");
        assert_eq!(p.strip("orders.1"), "orders.1");
    }

    #[test]
    fn a_laravel_prefixed_name_keeps_its_kind() {
        use ChannelKind::*;
        for (name, kind) in [
            ("my_shop_database_private-orders.1", Private),
            ("my-shop-database-presence-room", Presence),
            ("laravel_database_private-encrypted-x", PrivateEncrypted),
            ("shop2_database_private-x", Private),
            ("_database_private-x", Private), // APP_NAME with no letters or digits
            ("-database-presence-x", Presence),
            ("my_database_database_private-x", Private), // APP_NAME "My Database"
            ("my_shop_database_orders.1", Public),
            ("My_Shop_database_private-x", Public), // Str::slug lowercases
            ("my__shop_database_private-x", Public), // nor doubles a separator
            ("my-shop_database_private-x", Public), // nor mixes them
            ("my_shop_database-private-x", Public),
            ("xdatabase_private-x", Public),
            ("database_private-x", Public),
        ] {
            assert_eq!(ChannelKind::of(name), kind, "{name}");
        }
    }

    #[test]
    fn prefixes_are_learned_from_private_publications_then_stripped() {
        let p = Prefixes::new(&["laravel_database_".into()]);
        // Before anything private was seen, a public name is left as it is.
        assert_eq!(
            p.strip("my_shop_database_orders.1"),
            "my_shop_database_orders.1"
        );
        assert_eq!(
            p.strip("my_shop_database_private-orders.1"),
            "private-orders.1"
        );
        assert_eq!(
            p.strip("my_shop_database_private-orders.1"),
            "private-orders.1"
        );
        assert_eq!(p.strip("my_shop_database_orders.1"), "orders.1");
        assert_eq!(p.strip("other_database_presence-r"), "presence-r");
        assert_eq!(p.learned.load().len(), 2, "each learned once");
        assert_eq!(p.strip("laravel_database_orders.1"), "orders.1");
        assert_eq!(p.strip("orders.1"), "orders.1");
        for i in 0..2 * MAX_LEARNED {
            let name = format!("app{i}_database_private-x");
            assert_eq!(p.strip(&name), "private-x", "past the cap too");
        }
        assert_eq!(p.learned.load().len(), MAX_LEARNED);
    }

    #[test]
    fn a_publication_behind_an_unknown_prefix_is_delivered_on_the_private_channel() {
        let tap = Broadcasts::new(&["laravel_database_".into()]);
        let prefixed = Arc::new(Listener(
            "my_shop_database_private-orders.1",
            Default::default(),
        ));
        tap.add(prefixed.clone());
        let payload = Bytes::from_static(br#"{"event":"E","data":{},"socket":null}"#);
        let channel = Bytes::from_static(b"my_shop_database_private-orders.1");
        assert_eq!(
            tap.publish(&channel, &payload),
            0,
            "no one listens on the prefixed name"
        );
        let private = Arc::new(Listener("private-orders.1", Default::default()));
        tap.add(private.clone());
        tap.publish(&channel, &payload);
        assert_eq!(*private.1.lock(), ["private-orders.1 E {}"]);
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

    #[test]
    fn presence_keys() {
        use serde_json::json;
        assert_eq!(presence_key(&json!(7)), presence_key(&json!("7")));
        assert_eq!(presence_key(&json!(7)).as_deref(), Some("7"));
        assert_eq!(presence_key(&json!("u-1")).as_deref(), Some("u-1"));
        assert_eq!(presence_key(&json!("")), None);
        assert_eq!(presence_key(&json!(null)), None);
        assert_eq!(presence_key(&json!({"id": 7})), None);
    }

    #[test]
    fn presence_members_from_channel_data_and_auth_answers() {
        let m = PresenceMember::from_channel_data(r#"{"user_id":7,"user_info":{"name":"Ann"}}"#)
            .unwrap();
        assert_eq!((&*m.key, m.user_id.get()), ("7", "7"));
        assert_eq!(m.info.unwrap().get(), r#"{"name":"Ann"}"#);
        let m = PresenceMember::from_channel_data(r#"{"user_id":"7","user_info":null}"#).unwrap();
        assert_eq!((&*m.key, m.user_id.get()), ("7", r#""7""#));
        assert!(m.info.is_none());
        // The auth answer's channel_data: an object, or a JSON string of one.
        let m = PresenceMember::from_auth_answer(
            br#"{"channel_data":{"user_id":7,"user_info":{"name":"Ann"}}}"#,
        )
        .unwrap();
        assert_eq!(&*m.key, "7");
        let m = PresenceMember::from_auth_answer(
            br#"{"auth":"k:s","channel_data":"{\"user_id\":\"u1\"}"}"#,
        )
        .unwrap();
        assert_eq!((&*m.key, m.info.is_none()), ("u1", true));
        for bad in [
            &b"true"[..],
            br#"{"channel_data":{"user_info":1}}"#,
            br#"{}"#,
        ] {
            assert!(PresenceMember::from_auth_answer(bad).is_none());
        }
        assert!(PresenceMember::from_channel_data(r#"{"user_id":""}"#).is_none());
        let u = PresenceMember::signed_in("u\"1");
        assert_eq!((&*u.key, u.user_id.get()), ("u\"1", r#""u\"1""#));
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
