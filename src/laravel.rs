//! Laravel's broadcasting conventions, in one place.
//!
//! Laravel's `redis` broadcaster publishes `{"event":E,"data":D,"socket":S}` on the
//! channel name with the Redis connection's key prefix in front (`laravel_database_`
//! by default; since Laravel 12 derived from APP_NAME, e.g. `laravel-database-`).
//! Channel kinds are spelled in the name: `private-`, `private-encrypted-`,
//! `presence-`. `socket` names the connection to leave out (`toOthers()`).
//!
//! Every ingress makes its publication's payload such an envelope: RESP carries
//! Laravel's own, with the prefix stripped from the channel name by
//! [`Prefixes::publication`]; the Pusher HTTP API, Pusher client events and socket.io
//! whispers build one ([`Envelope::from_pusher_api`], [`Envelope::from_client`]). Each
//! WebSocket edge decodes it once per publication ([`broadcast`]) and encodes its
//! frame once for all its clients.
//!
//! A prefix herald was not told about must never make a private channel public: a name
//! behind any Laravel-shaped prefix (`<slug>_database_`, `<slug>-database-`) keeps the
//! kind of the name after it, for subscribers ([`ChannelKind::of`]) and for
//! publications, whose prefix is learned from the first private or presence broadcast,
//! logged once with the flag to set, and stripped from then on like a configured one.
//!
//! Who a presence member is comes from Laravel too: [`PresenceMember`] reads the
//! `channel_data` of the app's auth answer, with one key for user id `7` and `"7"`.

use crate::broker::Publication;
use crate::readmostly::ReadMostly;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

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

    /// A publication made over RESP (`PUBLISH`, Laravel's `EVAL`) on `channel`: RESP
    /// subscribers see it under that name; in the default namespace it is on the
    /// channel named without its Redis key prefix.
    pub fn publication(&self, channel: Bytes, payload: Bytes) -> Publication {
        let prefix = match std::str::from_utf8(&channel) {
            Ok(name) => name.len() - self.strip(name).len(),
            Err(_) => 0,
        };
        Publication::published_as(channel, prefix, payload)
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

/// A decoded broadcast: the event name, its data (raw JSON, never re-parsed), the socket
/// id to exclude, and what herald's own ingresses add to Laravel's three fields.
#[derive(Debug)]
pub struct Envelope {
    pub event: String,
    data: Option<Box<RawValue>>,
    /// herald's `pusher_data`: the Pusher HTTP API's data string when it is not JSON
    /// text as it stands (`"plain string"`); it then takes the place of `data`.
    pusher_data: Option<String>,
    pub socket: Option<String>,
    /// herald's `user_id`: a client event's sender on a presence channel, as Pusher
    /// relays it (a JSON string).
    pub user_id: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Wire {
    event: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    pusher_data: Option<String>,
    #[serde(default)]
    socket: Option<serde_json::Value>,
    #[serde(default)]
    user_id: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct Out<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pusher_data: Option<&'a str>,
    socket: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a RawValue>,
}

impl Out<'_> {
    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("strings and raw JSON always serialize"))
    }
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
            data: w.data,
            pusher_data: w.pusher_data,
            socket,
            user_id: w.user_id,
        })
    }

    /// The broadcast of a Pusher HTTP API event whose data string is `data`. JSON text
    /// goes in as `data`, as Laravel's own (so a Pusher client gets the same string
    /// back, and a socket.io client the value pusher-js would parse from it); anything
    /// else as `pusher_data`.
    pub fn from_pusher_api(event: &str, data: &str, socket: Option<&str>) -> Bytes {
        let json = serde_json::from_str::<&RawValue>(data)
            .ok()
            .filter(|raw| raw.get().len() == data.len());
        Out {
            event,
            data: json,
            pusher_data: json.is_none().then_some(data),
            socket,
            user_id: None,
        }
        .encode()
    }

    /// The broadcast of a client event (a Pusher client event, a socket.io whisper) by
    /// `socket`: its data as the client sent it, and on presence channels the sender's
    /// user id for Pusher's `user_id`.
    pub fn from_client(
        event: &str,
        data: Option<&RawValue>,
        socket: &str,
        user_id: Option<&RawValue>,
    ) -> Bytes {
        Out {
            event,
            data,
            pusher_data: None,
            socket: Some(socket),
            user_id,
        }
        .encode()
    }

    /// The data as a JSON value (what socket.io sends): `null` when there is none, and
    /// `pusher_data` as pusher-js hands it to its listeners: parsed when it is JSON,
    /// else the string.
    pub fn json_data(&self) -> Cow<'_, str> {
        match (&self.data, &self.pusher_data) {
            (Some(data), _) => Cow::Borrowed(data.get()),
            (None, Some(text)) => match serde_json::from_str::<&RawValue>(text) {
                Ok(json) => Cow::Borrowed(json.get()),
                Err(_) => Cow::Owned(serde_json::to_string(text).expect("a string serializes")),
            },
            (None, None) => Cow::Borrowed("null"),
        }
    }

    /// The data as Pusher's data string for a server event: the JSON text, or
    /// `pusher_data` as it is.
    pub fn pusher_data(&self) -> &str {
        match (&self.data, &self.pusher_data) {
            (Some(data), _) => data.get(),
            (None, Some(text)) => text,
            (None, None) => "null",
        }
    }

    /// The data as a client sent it, for relaying a client event (None: it sent none).
    pub fn client_data(&self) -> Option<&RawValue> {
        self.data.as_deref()
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

    /// The member as `channel_data` text again, `{"user_id":…,"user_info":…}` (user_info
    /// null when absent): what [`Self::from_channel_data`] reads back.
    pub fn channel_data(&self) -> String {
        format!(
            r#"{{"user_id":{},"user_info":{}}}"#,
            self.user_id.get(),
            self.info.as_deref().map_or("null", |i| i.get())
        )
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

/// How a WebSocket edge takes a publication: `deliver` gets the channel's name and the
/// envelope, decoded once for the whole edge, and returns how many connections it
/// reached. A payload that is not a Laravel broadcast reaches nobody and is counted.
pub fn broadcast(p: &Publication, deliver: impl FnOnce(&str, &Envelope) -> usize) -> usize {
    let Ok(channel) = std::str::from_utf8(p.channel()) else {
        return 0;
    };
    match Envelope::decode(&p.payload) {
        Some(envelope) => deliver(channel, &envelope),
        None => {
            crate::metrics::NON_LARAVEL_PAYLOADS.inc();
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{
        next_subscriber_id, Broker, MemoryBroker, Namespace, StreamSubscriber, SubscriberId, ToResp,
    };
    use std::cell::Cell;
    use std::sync::Arc;

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

    /// An edge with `clients` connections on its streams; records what it was given.
    struct Listener {
        id: SubscriberId,
        clients: usize,
        got: parking_lot::Mutex<Vec<String>>,
    }

    impl Listener {
        fn new(clients: usize) -> Arc<Self> {
            Arc::new(Listener {
                id: next_subscriber_id(),
                clients,
                got: Default::default(),
            })
        }
    }

    impl StreamSubscriber for Listener {
        fn id(&self) -> SubscriberId {
            self.id
        }
        fn deliver(&self, p: &Publication) -> usize {
            broadcast(p, |channel, b| {
                let line = format!("{channel} {} {}", b.event, b.json_data());
                self.got.lock().push(line);
                self.clients
            })
        }
    }

    #[test]
    fn a_publication_behind_an_unknown_prefix_is_delivered_on_the_private_channel() {
        let prefixes = Prefixes::new(&["laravel_database_".into()]);
        let broker = MemoryBroker::new();
        let (prefixed, private) = (Listener::new(1), Listener::new(1));
        let ns = Namespace::Default;
        broker.stream_subscribe(&ns, b"my_shop_database_private-orders.1", prefixed.clone());
        broker.stream_subscribe(&ns, b"private-orders.1", private.clone());
        let payload = Bytes::from_static(br#"{"event":"E","data":{},"socket":null}"#);
        let channel = Bytes::from_static(b"my_shop_database_private-orders.1");
        let p = prefixes.publication(channel.clone(), payload);
        assert_eq!(p.channel(), b"private-orders.1");
        assert_eq!((p.name(), p.resp), (&channel, ToResp::Channel));
        assert_eq!(broker.publish(p), 1);
        assert!(prefixed.got.lock().is_empty(), "not on the prefixed name");
        assert_eq!(*private.got.lock(), ["private-orders.1 E {}"]);
    }

    #[test]
    fn decodes_envelopes() {
        let e = Envelope::decode(&Bytes::from_static(
            br#"{"event":"OrderShipped","data":{"id":1,"socket":null},"socket":"abc"}"#,
        ))
        .unwrap();
        assert_eq!(e.event, "OrderShipped");
        assert_eq!(e.json_data(), r#"{"id":1,"socket":null}"#);
        assert_eq!(e.pusher_data(), r#"{"id":1,"socket":null}"#);
        assert_eq!(e.socket.as_deref(), Some("abc"));
        let e = Envelope::decode(&Bytes::from_static(
            br#"{"event":"E","data":[],"socket":null}"#,
        ))
        .unwrap();
        assert_eq!(e.socket, None);
        let e = Envelope::decode(&Bytes::from_static(br#"{"event":"E"}"#)).unwrap();
        assert_eq!((&*e.json_data(), e.pusher_data()), ("null", "null"));
        assert!(e.client_data().is_none());
        assert!(Envelope::decode(&Bytes::from_static(b"plain text")).is_none());
        assert!(Envelope::decode(&Bytes::from_static(br#"{"data":1}"#)).is_none());
    }

    #[test]
    fn pusher_api_data_gives_pusher_the_same_string_and_socketio_what_pusher_js_parses() {
        // (data string given to the API, what socket.io sends as the value)
        for (given, socketio) in [
            (
                r#"{"id":1,"note":"caf\u00e9"}"#,
                r#"{"id":1,"note":"caf\u00e9"}"#,
            ),
            ("[1,2]", "[1,2]"),
            ("123", "123"),
            (r#""quoted""#, r#""quoted""#),
            ("plain string", r#""plain string""#),
            (r#" {"padded":true} "#, r#"{"padded":true}"#),
            ("", r#""""#),
        ] {
            let payload = Envelope::from_pusher_api("E", given, Some("1.2"));
            let e = Envelope::decode(&payload).unwrap();
            assert_eq!(e.pusher_data(), given, "{payload:?}");
            assert_eq!(e.json_data(), socketio, "{payload:?}");
            assert_eq!(e.socket.as_deref(), Some("1.2"));
        }
        // What RESP subscribers of the default app's channel see: Laravel's shape.
        assert_eq!(
            Envelope::from_pusher_api("E", r#"{"a":1}"#, None),
            r#"{"event":"E","data":{"a":1},"socket":null}"#
        );
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

    #[test]
    fn client_events_keep_their_data_as_sent() {
        let data = RawValue::from_string(r#"{ "typing" : true }"#.into()).unwrap();
        let user = RawValue::from_string(r#""7""#.into()).unwrap();
        let payload = Envelope::from_client("client-typing", Some(&data), "9.9", Some(&user));
        let e = Envelope::decode(&payload).unwrap();
        assert_eq!(e.client_data().unwrap().get(), r#"{ "typing" : true }"#);
        assert_eq!(e.user_id.as_deref().unwrap().get(), r#""7""#);
        assert_eq!(e.socket.as_deref(), Some("9.9"));
        let e = Envelope::decode(&Envelope::from_client("client-x", None, "9.9", None)).unwrap();
        assert!(e.client_data().is_none() && e.user_id.is_none());
        assert_eq!(e.json_data(), "null");
    }

    #[test]
    fn each_edge_decodes_a_publication_once_whatever_its_clients() {
        let prefixes = Prefixes::new(&["laravel_database_".into()]);
        let broker = MemoryBroker::new();
        let ns = Namespace::Default;
        // Two edges (socket.io and a Pusher app), three and two clients on the channel.
        let (a, b) = (Listener::new(3), Listener::new(2));
        for l in [&a, &b] {
            broker.stream_subscribe(&ns, b"orders.1", l.clone());
        }
        let payload = Bytes::from_static(br#"{"event":"E","data":{"x":1},"socket":null}"#);
        let publish = |channel: &'static str, payload: &Bytes| {
            broker.publish(
                prefixes.publication(Bytes::from_static(channel.as_bytes()), payload.clone()),
            )
        };
        let before = decodes();
        assert_eq!(publish("laravel_database_orders.1", &payload), 5);
        assert_eq!(decodes() - before, 2, "one decode per edge, not per client");
        assert_eq!(*a.got.lock(), ["orders.1 E {\"x\":1}"]);
        assert_eq!(*b.got.lock(), ["orders.1 E {\"x\":1}"]);
        let junk = Bytes::from_static(b"not json");
        let before = decodes();
        assert_eq!(publish("laravel_database_nobody", &junk), 0);
        assert_eq!(decodes(), before, "unheard: never decoded");
        let non_laravel = crate::metrics::NON_LARAVEL_PAYLOADS.get();
        assert_eq!(publish("laravel_database_orders.1", &junk), 0);
        assert_eq!(decodes() - before, 2);
        assert!(crate::metrics::NON_LARAVEL_PAYLOADS.get() >= non_laravel + 2);
    }
}
