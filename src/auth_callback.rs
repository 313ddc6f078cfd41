//! Asking the Laravel app whether a socket may join a private or presence channel.
//!
//! As laravel-echo-server did: `POST <auth endpoint>` with the form fields
//! `channel_name` and `socket_id`, with the client's headers that
//! [`crate::auth_shield`] lets through (so the session or token of the browser
//! decides) and `X-Requested-With: XMLHttpRequest` so Laravel answers JSON. A 2xx
//! allows; for presence the body's `channel_data` (an object or a JSON string) names
//! the user. Anything else, a redirect included, refuses with the status the app gave.

use crate::laravel::PresenceMember;
use std::path::Path;
use std::time::Duration;

/// The HTTP client for the app's `/broadcasting/auth`.
pub struct AuthClient {
    http: reqwest::Client,
    endpoint: Option<String>,
}

/// Why a subscription was refused: the status sent with `subscription_error`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub u16);

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
    ) -> Result<Option<PresenceMember>, Refused> {
        let Some(endpoint) = &self.endpoint else {
            tracing::warn!(
                channel,
                "no --auth-endpoint configured: refusing a private channel"
            );
            return Err(Refused(500));
        };
        let asked = std::time::Instant::now();
        let answer = self
            .ask(endpoint, channel, socket_id, headers, presence)
            .await;
        crate::metrics::AUTH_REQUEST_SECONDS.observe(asked.elapsed());
        if answer.is_err() {
            crate::metrics::AUTH_REFUSED.inc();
        }
        answer
    }

    async fn ask(
        &self,
        endpoint: &str,
        channel: &str,
        socket_id: &str,
        headers: reqwest::header::HeaderMap,
        presence: bool,
    ) -> Result<Option<PresenceMember>, Refused> {
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
        PresenceMember::from_auth_answer(&body)
            .map(Some)
            .ok_or_else(|| {
                tracing::warn!(
                    channel,
                    "auth endpoint gave no usable channel_data for a presence channel"
                );
                Refused(500)
            })
    }
}
