//! Asking the Laravel app whether a socket may join a private or presence channel.
//!
//! As laravel-echo-server did: `POST <auth endpoint>` with the form fields
//! `channel_name` and `socket_id`, with the client's headers that
//! [`crate::auth_shield`] lets through (so the session or token of the browser
//! decides) and `X-Requested-With: XMLHttpRequest` so Laravel answers JSON. A 2xx
//! allows; for presence the body's `channel_data` (an object or a JSON string) names
//! the user. Anything else, a redirect included, refuses with the status the app gave.

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The HTTP client for the app's `/broadcasting/auth`.
pub struct AuthClient {
    http: reqwest::Client,
    endpoint: Option<String>,
}

/// Who a presence subscription belongs to.
#[derive(Debug, PartialEq, Eq)]
pub struct PresenceUser {
    /// The presence key ([`crate::edge_policy::presence_key`]): `7` and `"7"` are both `7`.
    pub user_id: String,
    /// `{"user_id":…,"user_info":…}`, what Echo's `here`/`joining`/`leaving` receive.
    pub member_json: String,
}

/// Why a subscription was refused: the status sent with `subscription_error`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub u16);

#[derive(Deserialize)]
struct AuthBody {
    channel_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChannelData {
    user_id: serde_json::Value,
    #[serde(default)]
    user_info: serde_json::Value,
}

impl AuthClient {
    /// `ca_file`: a PEM CA to trust besides the public ones (an app with a private CA).
    pub fn new(
        endpoint: Option<String>,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let http = crate::app_http::client(timeout, ca_file)?;
        Ok(AuthClient { http, endpoint })
    }

    /// Ask the app. `headers` (already filtered) replace herald's own of the same name;
    /// `presence` asks for the user in `channel_data`.
    pub async fn authorize(
        &self,
        channel: &str,
        socket_id: &str,
        headers: reqwest::header::HeaderMap,
        presence: bool,
    ) -> Result<Option<PresenceUser>, Refused> {
        let Some(endpoint) = &self.endpoint else {
            tracing::warn!(
                channel,
                "no --auth-endpoint configured: refusing a private channel"
            );
            return Err(Refused(500));
        };
        let req = self
            .http
            .post(endpoint)
            .header("X-Requested-With", "XMLHttpRequest")
            .header("Accept", "application/json")
            .headers(headers);
        let res = req
            .form(&[("channel_name", channel), ("socket_id", socket_id)])
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(channel, "auth endpoint unreachable: {e}");
                Refused(if e.is_timeout() { 504 } else { 502 })
            })?;
        let status = res.status();
        if !status.is_success() {
            return Err(Refused(status.as_u16()));
        }
        if !presence {
            return Ok(None);
        }
        let body = res.bytes().await.map_err(|_| Refused(502))?;
        presence_user(&body).map(Some).ok_or_else(|| {
            tracing::warn!(
                channel,
                "auth endpoint gave no usable channel_data for a presence channel"
            );
            Refused(500)
        })
    }
}

/// The user from an auth response's `channel_data` (an object, or a JSON string of one),
/// keyed by [`crate::edge_policy::presence_key`]: `7` and `"7"` are one member. The
/// member JSON keeps the id as the app wrote it.
fn presence_user(body: &[u8]) -> Option<PresenceUser> {
    let data = serde_json::from_slice::<AuthBody>(body)
        .ok()?
        .channel_data?;
    let data: ChannelData = match data {
        serde_json::Value::String(s) => serde_json::from_str(&s).ok()?,
        v => serde_json::from_value(v).ok()?,
    };
    let user_id = crate::edge_policy::presence_key(&data.user_id)?.into();
    Some(PresenceUser {
        member_json: format!(
            r#"{{"user_id":{},"user_info":{}}}"#,
            data.user_id, data.user_info
        ),
        user_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_object_or_string() {
        let u =
            presence_user(br#"{"channel_data":{"user_id":7,"user_info":{"name":"Ann"}}}"#).unwrap();
        assert_eq!(u.user_id, "7");
        assert_eq!(u.member_json, r#"{"user_id":7,"user_info":{"name":"Ann"}}"#);
        let u = presence_user(br#"{"auth":"k:s","channel_data":"{\"user_id\":\"u1\"}"}"#).unwrap();
        assert_eq!(u.user_id, "u1");
        let quoted = presence_user(br#"{"channel_data":{"user_id":"7"}}"#).unwrap();
        assert_eq!(quoted.user_id, "7", "7 and \"7\" are one member");
        assert_eq!(quoted.member_json, r#"{"user_id":"7","user_info":null}"#);
        assert_eq!(u.member_json, r#"{"user_id":"u1","user_info":null}"#);
        assert!(presence_user(b"true").is_none());
        assert!(presence_user(br#"{"channel_data":{"user_info":1}}"#).is_none());
    }
}
