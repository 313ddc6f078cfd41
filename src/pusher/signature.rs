//! Pusher's HMAC-SHA256 signatures: channel and user authorization on the WebSocket,
//! request signing on the HTTP API. Comparisons are constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Lowercase hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// True when `given` is the hex HMAC of `message` (case-insensitive hex, constant time).
pub fn verify_hex(secret: &str, message: &[u8], given: &str) -> bool {
    let expected = hmac_hex(secret, message);
    let given = given.to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Checks an `auth` value of the form `key:signature` against the app's key and secret.
fn verify_auth(key: &str, secret: &str, message: &[u8], auth: &str) -> bool {
    match auth.split_once(':') {
        Some((k, sig)) => {
            let key_ok: bool = k.as_bytes().ct_eq(key.as_bytes()).into();
            verify_hex(secret, message, sig) & key_ok
        }
        None => false,
    }
}

/// `pusher:subscribe` to a private, encrypted or presence channel:
/// `key:HMAC(secret, socket_id:channel[:channel_data])`.
pub fn channel_auth_ok(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    let mut msg = format!("{socket_id}:{channel}");
    if let Some(data) = channel_data {
        msg.push(':');
        msg.push_str(data);
    }
    verify_auth(key, secret, msg.as_bytes(), auth)
}

/// `pusher:signin`: `key:HMAC(secret, socket_id::user::user_data)`.
pub fn user_auth_ok(key: &str, secret: &str, socket_id: &str, user_data: &str, auth: &str) -> bool {
    let msg = format!("{socket_id}::user::{user_data}");
    verify_auth(key, secret, msg.as_bytes(), auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pushers_documented_example() {
        // From Pusher's "authenticating users" docs: key 278d425bdf160c739803,
        // secret 7ad3773142a6692b25b8, socket 1234.1234, channel private-foobar.
        let auth =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert!(channel_auth_ok(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "1234.1234",
            "private-foobar",
            None,
            auth
        ));
        assert!(!channel_auth_ok(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "1234.1235",
            "private-foobar",
            None,
            auth
        ));
        assert!(!channel_auth_ok(
            "other",
            "7ad3773142a6692b25b8",
            "1234.1234",
            "private-foobar",
            None,
            auth
        ));
        assert!(!channel_auth_ok(
            "k",
            "s",
            "1.1",
            "private-x",
            None,
            "no-colon"
        ));
    }

    #[test]
    fn user_auth_round_trip() {
        let sig = hmac_hex("s", b"1.2::user::{\"id\":\"7\"}");
        assert!(user_auth_ok(
            "k",
            "s",
            "1.2",
            "{\"id\":\"7\"}",
            &format!("k:{sig}")
        ));
        assert!(!user_auth_ok(
            "k",
            "s",
            "1.2",
            "{\"id\":\"8\"}",
            &format!("k:{sig}")
        ));
    }
}
