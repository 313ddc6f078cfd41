//! Pusher HTTP API requests (src/pusher/http_api.rs, src/pusher/signature.rs): query
//! parsing, signature and body checks, then the JSON bodies of `events` and
//! `batch_events` and the channel and user routes, through `http_api::handle` as the
//! route calls it.
//!
//! Input, `\n`-separated: method, app id, path after `/apps/{id}/`, flags, extra raw
//! query, then the body (the rest, newlines and all). Flags add what a Pusher SDK adds:
//! `k` the app's auth_key, `t` auth_timestamp (now), `v` auth_version=1.0, `m` the body's
//! body_md5, and `s` the auth_signature the SDK computes over the whole query.
//!
//! Asserts:
//! - no panic;
//! - only Pusher's statuses: 200, 400, 401, 403, 404, 413;
//! - nothing succeeds without the signature made with the app's secret: a request
//!   the target did not sign never gets 200, whatever its query holds;
//! - a request signed as the Pusher SDKs sign it (lowercase, distinct parameter names)
//!   with key, timestamp and body_md5 right is never refused as unauthorized.

#![no_main]

use bytes::Bytes;
use herald::broker::MemoryBroker;
use herald::config::AppConfig;
use herald::pusher::apps::Apps;
use herald::pusher::http_api::{handle, Request};
use herald::pusher::signature::hmac_hex;
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// App 1 serves; app 2 is disabled (403 once authenticated).
fn apps() -> &'static Apps {
    static APPS: OnceLock<Apps> = OnceLock::new();
    APPS.get_or_init(|| {
        let mut one = AppConfig::new("1", "key-1", "secret-1");
        one.max_message_size = Some(64);
        let mut two = AppConfig::new("2", "key-2", "secret-2");
        two.enabled = false;
        let presence = std::sync::Arc::new(herald::presence::MemoryPresence::default());
        Apps::new(&[one, two], &[], None, presence)
    })
}

/// Where the events go: a broker nobody subscribes to.
fn broker() -> &'static MemoryBroker {
    static BROKER: OnceLock<MemoryBroker> = OnceLock::new();
    BROKER.get_or_init(MemoryBroker::new)
}

const SDK_PARAMS: [&str; 5] = [
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "body_md5",
    "auth_signature",
];

/// The query as the Pusher SDKs sign it: names lowercased, sorted, `name=value` with
/// the values decoded, joined with `&`.
fn string_to_sign(method: &Method, path: &str, query: &str) -> String {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}\n{path}\n{}", query.join("&"))
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |&b| b == b'\n');
    let mut line = || parts.next().map(String::from_utf8_lossy);
    let (Some(method), Some(id), Some(tail), Some(flags), Some(extra)) =
        (line(), line(), line(), line(), line())
    else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let (key, secret) = match &*id {
        "1" => ("key-1", "secret-1"),
        "2" => ("key-2", "secret-2"),
        _ => ("key-1", "secret-1"),
    };

    let mut query = form_urlencoded::Serializer::new(extra.to_string());
    if flags.contains('k') {
        query.append_pair("auth_key", key);
    }
    if flags.contains('t') {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        query.append_pair("auth_timestamp", &now.to_string());
    }
    if flags.contains('v') {
        query.append_pair("auth_version", "1.0");
    }
    if flags.contains('m') {
        query.append_pair("body_md5", &hex::encode(Md5::digest(&body)));
    }
    let path = format!("/apps/{id}/{tail}");
    let signed = flags.contains('s');
    let mut query = query.finish();
    if signed {
        let signature = hmac_hex(secret, string_to_sign(&method, &path, &query).as_bytes());
        query = form_urlencoded::Serializer::new(query)
            .append_pair("auth_signature", &signature)
            .finish();
    }

    let rest: Vec<&str> = tail.split('/').filter(|s| !s.is_empty()).collect();
    let req = Request {
        method: &method,
        path: &path,
        query: &query,
        body: &body,
    };
    let status = handle(apps(), broker(), &id, &rest, req).status();

    assert!(
        [200, 400, 401, 403, 404, 413].contains(&status.as_u16()),
        "status {status}"
    );
    if !signed {
        assert_ne!(
            status,
            StatusCode::OK,
            "an unsigned request succeeded: {query}"
        );
    }
    let names: Vec<String> = form_urlencoded::parse(extra.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    let sdk_shaped = names.iter().all(|k| {
        *k == k.to_ascii_lowercase()
            && !SDK_PARAMS.contains(&k.as_str())
            && names.iter().filter(|n| *n == k).count() == 1
    });
    let complete = ["k", "t", "s"].iter().all(|f| flags.contains(f))
        && (body.is_empty() || flags.contains('m'));
    if signed && sdk_shaped && complete && matches!(&*id, "1" | "2") {
        assert_ne!(
            status,
            StatusCode::UNAUTHORIZED,
            "a signed request was refused: {query}"
        );
    }
});
