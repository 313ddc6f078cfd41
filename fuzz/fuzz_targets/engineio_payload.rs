//! Engine.IO polling payloads and packets (src/socketio/packet.rs), v3 and v4, as a
//! polling POST body reaches the socket.io edge.
//!
//! Input: one byte choosing the body's form (0: v4 text, 1: v3 text, 2: v3 binary,
//! 3: v3 JSONP form), then the body.
//!
//! Asserts:
//! - no panic, and every parse ends;
//! - a v4 body splits at `\x1e` into packets that join back into it;
//! - a v3 body splits into packets whose declared lengths (UTF-16 units) are theirs,
//!   and what herald encodes from them splits back into the same packets;
//! - any list of packets herald encodes (v3 always, v4 when no packet holds `\x1e`)
//!   splits back into that list;
//! - every packet parses to its own type: a message's and a ping's text is the packet
//!   after its type digit.

#![no_main]

use bytes::Bytes;
use herald::socketio::jsonp_data;
use herald::socketio::packet::{encode_payload, parse_engine, split_payload, split_v3_binary};
use herald::socketio::packet::{Eio, EnginePacket, V3Item};
use libfuzzer_sys::fuzz_target;

fn check_packet(p: &str) {
    match parse_engine(p) {
        Ok(EnginePacket::Message(m)) => assert_eq!(Some(m), p.strip_prefix('4')),
        Ok(EnginePacket::Ping(m)) => assert_eq!(Some(m), p.strip_prefix('2')),
        Ok(EnginePacket::Pong(m)) => assert_eq!(Some(m), p.strip_prefix('3')),
        Ok(_) => {}
        Err(_) => {}
    }
}

fn round_trip(eio: Eio, packets: &[&str]) {
    let owned: Vec<Bytes> = packets
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()))
        .collect();
    let body = encode_payload(eio, &owned);
    let body = std::str::from_utf8(&body).expect("a payload of UTF-8 packets is UTF-8");
    assert_eq!(split_payload(eio, body).as_deref(), Ok(packets), "{body:?}");
}

fn v3_text(body: &str) {
    let Ok(packets) = split_payload(Eio::V3, body) else {
        return;
    };
    assert!(!packets.is_empty());
    for p in &packets {
        check_packet(p);
    }
    round_trip(Eio::V3, &packets);
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, body)) = data.split_first() else {
        return;
    };
    if form % 4 == 2 {
        if let Ok(items) = split_v3_binary(body) {
            for item in items {
                if let V3Item::Text(t) = item {
                    check_packet(&t);
                }
            }
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    match form % 4 {
        0 => {
            let packets = split_payload(Eio::V4, text).expect("a v4 body always splits");
            assert_eq!(packets.join("\x1e"), text);
            packets.iter().for_each(|p| check_packet(p));
        }
        1 => v3_text(text),
        _ => {
            if let Some(payload) = jsonp_data(text) {
                v3_text(&payload);
            }
        }
    }
    let packets: Vec<&str> = text.split('\n').collect();
    round_trip(Eio::V3, &packets);
    if !text.contains('\x1e') {
        round_trip(Eio::V4, &packets);
    }
});
