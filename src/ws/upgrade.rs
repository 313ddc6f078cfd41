//! The HTTP side of a WebSocket upgrade: header checks, `Sec-WebSocket-Accept`, the 101.

use base64::Engine;
use http::{HeaderMap, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use std::future::Future;
use tokio_util::task::TaskTracker;
use warp::filters::BoxedFilter;
use warp::reply::Reply;
use warp::Filter;

/// The upgraded byte stream a WebSocket speaks over.
pub type WsStream = TokioIo<Upgraded>;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A request that asked to become a WebSocket; answer it with [`Upgrade::reply`].
pub struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
    connections: TaskTracker,
}

fn header_has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): base64 of the
/// SHA-1 of the key followed by the protocol's GUID.
fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Matches a valid WebSocket upgrade request (RFC 6455 §4.2.1) and extracts what is
/// needed to finish it. Other requests are rejected so other routes may take them.
/// The connection's task will be tracked by `connections` (shutdown waits for it).
pub fn upgrade(connections: &TaskTracker) -> BoxedFilter<(Upgrade,)> {
    let connections = connections.clone();
    warp::get()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and_then(move |headers: HeaderMap, on_upgrade: Option<OnUpgrade>| {
            let connections = connections.clone();
            async move {
                let ok = header_has_token(&headers, "connection", "upgrade")
                    && header_has_token(&headers, "upgrade", "websocket")
                    && headers
                        .get("sec-websocket-version")
                        .is_some_and(|v| v == "13");
                let key = headers.get("sec-websocket-key");
                match (ok, key, on_upgrade) {
                    (true, Some(key), Some(on_upgrade)) => Ok(Upgrade {
                        accept: accept_key(key.as_bytes()),
                        on_upgrade,
                        connections,
                    }),
                    _ => Err(warp::reject::not_found()),
                }
            }
        })
        .boxed()
}

impl Upgrade {
    /// Answer 101 and run `session` on the upgraded stream once hyper hands it over, in
    /// a task tracked from now (before the HTTP connection that carried the request
    /// ends), so shutdown cannot miss it.
    pub fn reply<F, Fut>(self, session: F) -> impl Reply
    where
        F: FnOnce(WsStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        self.connections.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => session(TokioIo::new(upgraded)).await,
                Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
            }
        });
        let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = res.headers_mut();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("sec-websocket-accept", self.accept.parse().unwrap());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
