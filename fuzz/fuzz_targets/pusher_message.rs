//! Pusher client messages (src/pusher/protocol.rs, and the parsing in
//! src/pusher/websocket.rs): the text of a WebSocket message on `/app/{key}`, up to
//! the point where the session's state takes over.
//!
//! Input: the message text (`{"event":"pusher:subscribe","data":{...}}` and the like).
//!
//! Asserts:
//! - no panic, and every parse ends;
//! - a valid channel name is 1..=200 bytes of Pusher's alphabet;
//! - channel and user authentication accept exactly the signature the app's secret
//!   makes (in either hex case), whatever the socket id, channel, data or auth text;
//! - the client event herald relays to the other members is one well-formed text
//!   frame carrying the client's event, channel and `data` unchanged;
//! - the `pusher:subscription_error` herald answers for a channel is a well-formed frame
//!   naming that channel, its `data` a JSON-encoded string as pusher-js expects.

#![no_main]

use herald::laravel::ChannelKind;
use herald::pusher::protocol::{self, Incoming, Signin, Subscribe, Unsubscribe};
use herald::pusher::signature::{channel_auth_ok, hmac_hex, user_auth_ok, verify_hex};
use herald::edge_policy::valid_channel_name;
use herald_fuzz::server_text_payload;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";
const SOCKET_ID: &str = "1234.5678";

fn check_channel_name(name: &str) {
    if valid_channel_name(name) {
        assert!(!name.is_empty() && name.len() <= 200);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;#".contains(&b)));
    }
    let _ = ChannelKind::of(name).needs_auth();
}

/// `auth` is `key:signature` with the app's key and `expected` in either hex case.
fn signed_by_app(auth: &str, expected: &str) -> bool {
    auth.split_once(':')
        .is_some_and(|(k, sig)| k == KEY && sig.to_ascii_lowercase() == expected)
}

/// A frame herald sends, parsed back as a client would.
fn sent(frame: &[u8]) -> Incoming<'_> {
    serde_json::from_slice(server_text_payload(frame)).expect("herald sent invalid JSON")
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<Incoming>(data) else {
        return;
    };
    if let Some(sub) = msg.data_as::<Subscribe>() {
        check_channel_name(&sub.channel);
        let message = match &sub.channel_data {
            Some(d) => format!("{SOCKET_ID}:{}:{d}", sub.channel),
            None => format!("{SOCKET_ID}:{}", sub.channel),
        };
        let expected = hmac_hex(SECRET, message.as_bytes());
        let data = sub.channel_data.as_deref();
        for good in [
            format!("{KEY}:{expected}"),
            format!("{KEY}:{}", expected.to_uppercase()),
        ] {
            assert!(channel_auth_ok(
                KEY,
                SECRET,
                SOCKET_ID,
                &sub.channel,
                data,
                &good
            ));
        }
        if let Some(auth) = &sub.auth {
            let ok = channel_auth_ok(KEY, SECRET, SOCKET_ID, &sub.channel, data, auth);
            assert_eq!(ok, signed_by_app(auth, &expected), "{auth}");
        }
        let err = protocol::subscription_error(&sub.channel, "AuthError", "Invalid signature", 401);
        let back = sent(&err);
        assert_eq!(back.event, "pusher:subscription_error");
        assert_eq!(back.channel.as_deref(), Some(sub.channel.as_str()));
        assert!(back.data.is_some_and(|d| d.get().starts_with('"')));
    }
    if let Some(unsub) = msg.data_as::<Unsubscribe>() {
        check_channel_name(&unsub.channel);
    }
    if let Some(signin) = msg.data_as::<Signin>() {
        let message = format!("{SOCKET_ID}::user::{}", signin.user_data);
        let expected = hmac_hex(SECRET, message.as_bytes());
        assert!(user_auth_ok(
            KEY,
            SECRET,
            SOCKET_ID,
            &signin.user_data,
            &format!("{KEY}:{expected}")
        ));
        let ok = user_auth_ok(KEY, SECRET, SOCKET_ID, &signin.user_data, &signin.auth);
        assert_eq!(
            ok,
            signed_by_app(&signin.auth, &expected),
            "{}",
            signin.auth
        );
        assert!(verify_hex(
            SECRET,
            message.as_bytes(),
            &expected.to_uppercase()
        ));
    }
    if let Some(channel) = &msg.channel {
        check_channel_name(channel);
        let relayed = protocol::client_event(&msg.event, channel, msg.data, None);
        let back = sent(&relayed);
        assert_eq!(back.event, msg.event);
        assert_eq!(back.channel.as_deref(), Some(channel.as_str()));
        assert_eq!(back.data.map(|d| d.get()), msg.data.map(|d| d.get()));
    }
});
