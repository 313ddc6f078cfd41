//! What a socket.io client may make herald send the Laravel app's `/broadcasting/auth`.
//!
//! Every private or presence subscription costs the app a request, and the app trusts
//! herald as its own front end: what herald forwards, the app believes, and every
//! request comes from herald's address. So herald bounds both what a client puts in
//! those requests and how many it causes:
//! - **Headers**: only an allowlist (Authorization, Cookie, X-CSRF-TOKEN, X-XSRF-TOKEN,
//!   X-Requested-With, plus `--auth-forward-header`), taken from the handshake, the
//!   CONNECT packet's `auth.headers` (parsed once, at CONNECT) and the subscription's
//!   own `auth.headers`, later ones replacing earlier ones of the same name. A client's
//!   `X-Forwarded-For`, `Forwarded`, `X-HTTP-Method-Override`, Host… never reach the app;
//!   herald sets `X-Forwarded-For` itself to the client's address. More entries than
//!   `--auth-headers-max-count`, a value over `--auth-header-max-bytes` or more than
//!   `--auth-headers-max-bytes` in all refuse the subscription with 431 (Request Header
//!   Fields Too Large) without asking the app.
//! - **Rate**: a token bucket per connection (`--auth-burst`, `--auth-rate`); an empty
//!   bucket refuses with 429 without asking the app.
//! - **Load**: at most `--auth-max-in-flight` requests to the app at once from all
//!   connections; a subscription that gets no turn within the auth timeout is refused
//!   with 503.
//! - **Retries**: the app's refusal (4xx) of a channel is given again to the same
//!   connection for `--auth-refusal-cache-ms` without asking the app.

use crate::auth_callback::{AuthClient, Refused};
use crate::config::Config;
use crate::laravel::PresenceMember;
use crate::metrics;
use crate::token_bucket::{Bucket, Rate};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Forwarded whatever the configuration: what Laravel's session guard, Sanctum and CSRF
/// middleware read.
const FORWARDED_BY_DEFAULT: [&str; 5] = [
    "authorization",
    "cookie",
    "x-csrf-token",
    "x-xsrf-token",
    "x-requested-with",
];

/// A client's `auth` option: `{headers: {…}}`, the rest ignored.
#[derive(Deserialize)]
pub struct AuthOption {
    #[serde(default)]
    headers: Option<Box<RawValue>>,
}

/// One source's client headers, reduced to the allowlisted ones.
#[derive(Clone, Debug, Default)]
pub struct ClientHeaders {
    /// (slot in the allowlist, value); one entry per slot.
    kept: Vec<(usize, HeaderValue)>,
    /// The source exceeded a cap: the connection's private subscriptions get 431.
    too_large: bool,
}

impl ClientHeaders {
    fn set(&mut self, slot: usize, value: HeaderValue) {
        match self.kept.iter_mut().find(|(s, _)| *s == slot) {
            Some(kept) => kept.1 = value,
            None => self.kept.push((slot, value)),
        }
    }

    fn bytes(&self) -> usize {
        self.kept.iter().map(|(_, v)| v.len()).sum()
    }
}

/// The caps on one source of client headers and on what is forwarded in all.
#[derive(Clone, Copy, Debug)]
struct Caps {
    count: usize,
    value_bytes: usize,
    total_bytes: usize,
}

/// What the shield keeps for each socket.io connection.
#[derive(Debug, Default)]
pub struct PerConnection {
    /// The CONNECT packet's `auth.headers`, parsed once.
    connect: ClientHeaders,
    bucket: Bucket,
    /// The app's refusals: channel, status, until when; oldest first.
    refused: VecDeque<(Box<str>, u16, Instant)>,
}

impl PerConnection {
    /// A (re-)CONNECT's headers; the bucket and the refusals stay, so reconnecting on
    /// the same session resets nothing.
    pub fn set_connect_headers(&mut self, headers: ClientHeaders) {
        self.connect = headers;
    }
}

/// The auth client behind the shield; one per socket.io edge.
pub struct AuthShield {
    client: AuthClient,
    /// Client headers are kept only when there is an app to forward them to.
    keep: bool,
    allow: Box<[HeaderName]>,
    caps: Caps,
    in_flight: Option<Semaphore>,
    wait: Duration,
    rate: Rate,
    refusal_ttl: Duration,
}

impl AuthShield {
    pub fn new(c: &Config) -> Self {
        let client = AuthClient::new(
            c.auth_endpoint.clone(),
            c.auth_timeout,
            c.auth_ca_file.as_deref(),
        )
        .unwrap_or_else(|e| {
            tracing::error!("{e}; trusting the public CAs only");
            AuthClient::new(c.auth_endpoint.clone(), c.auth_timeout, None)
                .expect("a client without extra CAs always builds")
        });
        let allow = FORWARDED_BY_DEFAULT
            .iter()
            .map(|n| n.to_string())
            .chain(c.auth_forward_headers.iter().cloned())
            .map(|n| HeaderName::try_from(n).expect("config checked the names"))
            .fold(Vec::new(), |mut all, n| {
                if !all.contains(&n) {
                    all.push(n);
                }
                all
            });
        AuthShield {
            client,
            keep: c.auth_endpoint.is_some(),
            allow: allow.into(),
            caps: Caps {
                count: c.auth_headers_max_count,
                value_bytes: c.auth_header_max_bytes,
                total_bytes: c.auth_headers_max_bytes,
            },
            in_flight: (c.auth_max_in_flight > 0).then(|| Semaphore::new(c.auth_max_in_flight)),
            wait: c.auth_timeout,
            rate: Rate {
                burst: c.auth_burst,
                per_second: c.auth_rate,
            },
            refusal_ttl: c.auth_refusal_cache,
        }
    }

    /// The allowlisted headers of a handshake request.
    pub fn from_handshake(&self, headers: &HeaderMap) -> ClientHeaders {
        let mut out = ClientHeaders::default();
        if !self.keep {
            return out;
        }
        for (slot, name) in self.allow.iter().enumerate() {
            if let Some(v) = headers.get(name) {
                if v.len() > self.caps.value_bytes {
                    out.too_large = true;
                } else {
                    out.set(slot, v.clone());
                }
            }
        }
        self.check_total(out)
    }

    /// The allowlisted headers of a client's `auth` option, in one pass over its JSON:
    /// entries past the count cap and names not allowed are skipped without a copy.
    pub fn from_auth(&self, auth: Option<&AuthOption>) -> ClientHeaders {
        let Some(raw) = auth
            .and_then(|a| a.headers.as_deref())
            .filter(|_| self.keep)
        else {
            return ClientHeaders::default();
        };
        let seed = Collect {
            allow: &self.allow,
            caps: self.caps,
        };
        let mut de = serde_json::Deserializer::from_str(raw.get());
        match seed.deserialize(&mut de) {
            Ok(h) => self.check_total(h),
            // Not an object: nothing to forward, as before (a shape Echo never sends).
            Err(_) => ClientHeaders::default(),
        }
    }

    /// The headers of a CONNECT packet's `auth`, which serve every later subscription.
    pub fn from_connect(&self, auth: Option<&RawValue>) -> ClientHeaders {
        let auth = auth
            .filter(|_| self.keep)
            .and_then(|a| serde_json::from_str::<AuthOption>(a.get()).ok());
        self.from_auth(auth.as_ref())
    }

    fn check_total(&self, mut h: ClientHeaders) -> ClientHeaders {
        if h.too_large || h.bytes() > self.caps.total_bytes {
            h.too_large = true;
            h.kept = Vec::new();
        }
        h
    }

    /// Whether a subscription may ask the app `now`, and with which headers: the app's
    /// recent refusal is given again, oversized headers are refused with 431 and an
    /// empty bucket with 429, none of them reaching the app.
    pub fn admit(
        &self,
        conn: &mut PerConnection,
        channel: &str,
        (handshake, subscription): (&ClientHeaders, &ClientHeaders),
        peer: Option<IpAddr>,
        now: Instant,
    ) -> Result<HeaderMap, Refused> {
        while conn.refused.front().is_some_and(|r| r.2 <= now) {
            conn.refused.pop_front();
        }
        if let Some(r) = conn.refused.iter().find(|r| *r.0 == *channel) {
            metrics::AUTH_REFUSALS_REUSED.inc();
            return Err(Refused(r.1));
        }
        let Some(headers) = self.forwarded([handshake, &conn.connect, subscription], peer) else {
            metrics::AUTH_HEADERS_TOO_LARGE.inc();
            tracing::debug!(channel, "auth headers over the caps: refused with 431");
            return Err(Refused(431));
        };
        if !self.rate.take(&mut conn.bucket, now) {
            metrics::AUTH_RATE_LIMITED.inc();
            tracing::debug!(channel, "auth rate of this connection exceeded: 429");
            return Err(Refused(429));
        }
        Ok(headers)
    }

    /// The merged headers for the app, or None past a cap. O(headers kept).
    fn forwarded(&self, sources: [&ClientHeaders; 3], peer: Option<IpAddr>) -> Option<HeaderMap> {
        if sources.iter().any(|h| h.too_large) {
            return None;
        }
        let mut slots: Vec<Option<&HeaderValue>> = vec![None; self.allow.len()];
        for (slot, value) in sources.iter().flat_map(|h| &h.kept) {
            slots[*slot] = Some(value);
        }
        let total: usize = slots.iter().flatten().map(|v| v.len()).sum();
        if total > self.caps.total_bytes {
            return None;
        }
        let mut map = HeaderMap::with_capacity(self.allow.len() + 1);
        for (name, value) in self.allow.iter().zip(slots) {
            if let Some(value) = value {
                map.insert(name.clone(), value.clone());
            }
        }
        if let Some(ip) = peer {
            let ip = ip.to_canonical().to_string();
            map.insert(
                "x-forwarded-for",
                HeaderValue::from_str(&ip).expect("an address is a header value"),
            );
        }
        Some(map)
    }

    /// Ask the app, once a turn among `--auth-max-in-flight` is free.
    pub async fn authorize(
        &self,
        channel: &str,
        socket_id: &str,
        headers: HeaderMap,
        presence: bool,
    ) -> Result<Option<PresenceMember>, Refused> {
        let _turn = match &self.in_flight {
            None => None,
            Some(sem) => match tokio::time::timeout(self.wait, sem.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    metrics::AUTH_BUSY.inc();
                    tracing::warn!(
                        channel,
                        "auth endpoint busy: no turn within the auth timeout, refused with 503"
                    );
                    return Err(Refused(503));
                }
            },
        };
        self.client
            .authorize(channel, socket_id, headers, presence)
            .await
    }

    /// Keep the app's refusal (4xx) of `channel`, given `now`, for this connection's
    /// next attempts.
    pub fn remember(
        &self,
        conn: &mut PerConnection,
        channel: &str,
        answer: &Result<Option<PresenceMember>, Refused>,
        now: Instant,
    ) {
        if let Err(Refused(status @ 400..=499)) = answer {
            if !self.refusal_ttl.is_zero() {
                let until = now + self.refusal_ttl;
                conn.refused.push_back((channel.into(), *status, until));
            }
        }
    }
}

/// Reads a JSON object of headers, keeping the allowlisted ones.
struct Collect<'s> {
    allow: &'s [HeaderName],
    caps: Caps,
}

impl<'de> DeserializeSeed<'de> for Collect<'_> {
    type Value = ClientHeaders;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ClientHeaders, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ClientHeaders;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of headers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientHeaders, A::Error> {
        let mut out = ClientHeaders::default();
        let mut entries = 0;
        loop {
            if entries == self.caps.count {
                // The rest is read only to reach the end of the object.
                if map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    out.too_large = true;
                    continue;
                }
                break;
            }
            let Some(slot) = map.next_key_seed(Slot(self.allow))? else {
                break;
            };
            entries += 1;
            let Some(slot) = slot else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match map.next_value_seed(Value(self.caps.value_bytes))? {
                Text::Kept(v) => out.set(slot, v),
                Text::TooLong => out.too_large = true,
                Text::Invalid => tracing::debug!("auth header dropped: not a valid value"),
                Text::Other => {}
            }
        }
        Ok(out)
    }
}

/// A header name's slot in the allowlist, None if it is not allowed.
struct Slot<'s>(&'s [HeaderName]);

impl<'de> DeserializeSeed<'de> for Slot<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Slot<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a header name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self
            .0
            .iter()
            .position(|n| n.as_str().eq_ignore_ascii_case(name)))
    }
}

/// An allowlisted header's value: a string within the size cap.
struct Value(usize);

enum Text {
    Kept(HeaderValue),
    TooLong,
    Invalid,
    /// Not a string (a number, an object…): skipped, as it always was.
    Other,
}

impl<'de> DeserializeSeed<'de> for Value {
    type Value = Text;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a header value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(if v.len() > self.0 {
            Text::TooLong
        } else {
            HeaderValue::from_str(v).map_or(Text::Invalid, Text::Kept)
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
        Ok(Text::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
        Ok(Text::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
        Ok(Text::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::forwardable;

    fn shield(args: &[&str]) -> AuthShield {
        AuthShield::new(&Config {
            auth_endpoint: Some("http://127.0.0.1:9/broadcasting/auth".into()),
            auth_forward_headers: args.iter().map(|a| forwardable(a).unwrap()).collect(),
            ..Config::default()
        })
    }

    fn json(shield: &AuthShield, text: &str) -> ClientHeaders {
        let opt: AuthOption = serde_json::from_str(text).unwrap();
        shield.from_auth(Some(&opt))
    }

    fn names(map: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<_> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_the_allowlist_and_herald_s_forwarded_for() {
        let s = shield(&["X-Tenant"]);
        let sub = json(
            &s,
            r#"{"headers":{"Authorization":"Bearer 1","X-Forwarded-For":"6.6.6.6",
                "x-tenant":"t","Host":"evil","X-CSRF-TOKEN":7,"Cookie":"a=1"}}"#,
        );
        let mut conn = PerConnection::default();
        let connect = r#"{"headers":{"cookie":"a=0","X-XSRF-TOKEN":"x"}}"#;
        conn.set_connect_headers(
            s.from_connect(Some(&RawValue::from_string(connect.into()).unwrap())),
        );
        let peer = "::ffff:10.0.0.7".parse().ok();
        let none = ClientHeaders::default();
        let map = s
            .admit(&mut conn, "private-a", (&none, &sub), peer, Instant::now())
            .unwrap();
        assert_eq!(
            names(&map),
            [
                ("authorization", "Bearer 1"),
                ("cookie", "a=1"),
                ("x-forwarded-for", "10.0.0.7"),
                ("x-tenant", "t"),
                ("x-xsrf-token", "x"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(forwardable("X-Forwarded-For").is_err());
        assert!(forwardable("bad name").is_err());
    }

    #[test]
    fn caps_refuse_with_431() {
        let s = shield(&[]);
        let many: String = (0..51).map(|i| format!(r#""h{i}":"v","#)).collect();
        let h = json(&s, &format!(r#"{{"headers":{{{many}"Cookie":"c"}}}}"#));
        assert!(h.too_large && h.kept.is_empty());
        let long = "x".repeat(8 * 1024 + 1);
        assert!(json(&s, &format!(r#"{{"headers":{{"Cookie":"{long}"}}}}"#)).too_large);
        // A long value under a name that is not forwarded costs nothing.
        assert!(!json(&s, &format!(r#"{{"headers":{{"X-Other":"{long}"}}}}"#)).too_large);
        let mut conn = PerConnection::default();
        let none = ClientHeaders::default();
        let big = json(&s, &format!(r#"{{"headers":{{"Cookie":"{long}"}}}}"#));
        assert_eq!(
            s.admit(&mut conn, "private-a", (&none, &big), None, Instant::now()),
            Err(Refused(431))
        );
        // Not an object: ignored, as before.
        assert!(json(&s, r#"{"headers":[1,2]}"#).kept.is_empty());
    }

    #[test]
    fn bucket_and_refusal_cache() {
        let s = shield(&[]);
        let mut conn = PerConnection::default();
        let none = ClientHeaders::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let admit = |conn: &mut PerConnection, channel, at| {
            s.admit(conn, channel, (&none, &none), None, at).map(|_| ())
        };
        for _ in 0..20 {
            assert_eq!(admit(&mut conn, "private-a", t0), Ok(()));
        }
        assert_eq!(admit(&mut conn, "private-a", t0), Err(Refused(429)));
        // 5 a second: one more after 200 ms, and only one.
        assert_eq!(admit(&mut conn, "private-a", ms(200)), Ok(()));
        assert_eq!(admit(&mut conn, "private-a", ms(200)), Err(Refused(429)));
        s.remember(&mut conn, "private-b", &Err(Refused(403)), ms(200));
        s.remember(&mut conn, "private-c", &Err(Refused(504)), ms(200));
        // Kept 5 s, without a token; a 5xx is not kept.
        assert_eq!(admit(&mut conn, "private-b", ms(5100)), Err(Refused(403)));
        assert_eq!(admit(&mut conn, "private-c", ms(5100)), Ok(()));
        assert_eq!(admit(&mut conn, "private-b", ms(5200)), Ok(()));
    }
}
