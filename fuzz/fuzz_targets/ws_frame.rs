//! WebSocket client frames (src/ws/frame.rs), as both WebSocket edges read them.
//!
//! Input: one byte that seeds how the rest is cut into reads, then the bytes a client
//! sends after the upgrade.
//!
//! Asserts:
//! - no panic, and every `decode` call ends;
//! - a message always consumes bytes; text and binary messages (fragments reassembled)
//!   are at most the limit, text is UTF-8, control payloads at most 125 bytes;
//! - while waiting for more, the buffer holds less than one largest frame (header,
//!   mask and the limit): the decoder never waits for bytes past the limit;
//! - errors close with 1002 (protocol), 1007 (bad UTF-8) or 1009 (too big);
//! - cutting the input into reads changes nothing;
//! - each message, sent again as one masked frame, decodes to itself.

#![no_main]

use bytes::BytesMut;
use herald::ws::frame::{Decoder, Message, WsError};
use herald_fuzz::{client_frame, pieces};
use libfuzzer_sys::fuzz_target;

/// The message limit the target decodes with.
const MAX: usize = 512;
/// The largest frame within the limit: 2 header bytes, 8 length bytes, 4 mask bytes.
const MAX_FRAME: usize = 14 + MAX;

fn run(reads: &[&[u8]]) -> (Vec<Message>, Option<WsError>) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf, MAX) {
                Ok(Some(msg)) => {
                    assert!(buf.len() < before, "a message consumed nothing");
                    match &msg {
                        Message::Text(t) => {
                            assert!(t.len() <= MAX, "text of {} bytes", t.len());
                            assert!(std::str::from_utf8(t).is_ok());
                        }
                        Message::Binary(b) => assert!(b.len() <= MAX, "binary of {}", b.len()),
                        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                        Message::Close(_) => {}
                    }
                    out.push(msg);
                }
                Ok(None) => {
                    assert!(buf.len() < MAX_FRAME, "waiting with {} bytes", buf.len());
                    break;
                }
                Err(e) => {
                    assert!(
                        matches!(e.code, 1002 | 1007 | 1009),
                        "close code {}",
                        e.code
                    );
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let whole = run(&[wire]);
    let split = run(&pieces(seed, wire));
    assert_eq!(
        whole, split,
        "the outcome depends on how the input was read"
    );

    for msg in &whole.0 {
        let again = match msg {
            Message::Text(t) => client_frame(true, 0x1, t),
            Message::Binary(b) => client_frame(true, 0x2, b),
            Message::Ping(p) => client_frame(true, 0x9, p),
            Message::Pong(p) => client_frame(true, 0xA, p),
            Message::Close(None) => client_frame(true, 0x8, b""),
            Message::Close(Some(code)) => client_frame(true, 0x8, &code.to_be_bytes()),
        };
        let (decoded, err) = run(&[&again]);
        assert_eq!(err, None);
        assert_eq!(decoded.as_slice(), std::slice::from_ref(msg));
    }
});
