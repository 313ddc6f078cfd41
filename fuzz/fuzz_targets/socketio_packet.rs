//! Socket.IO packets (src/socketio/packet.rs `parse`), the text inside an Engine.IO
//! message, as both socket.io transports hand it over.
//!
//! Input: the packet text (`2["subscribe",{...}]` and the like).
//!
//! Asserts:
//! - no panic, and every parse ends;
//! - a parsed packet keeps socket.io-parser's rules: a namespace starts with `/`, at
//!   most `MAX_ATTACHMENTS` attachments, CONNECT's auth is an object, an EVENT's
//!   arguments are valid JSON and the first names a non-reserved event (or is a number);
//! - an event herald re-encodes (`42[...]`) parses back to the same name and arguments;
//! - the CONNECT_ERROR herald answers for a namespace parses as a CONNECT_ERROR;
//! - the packet inside an Engine.IO message is the same packet.

#![no_main]

use herald::socketio::packet::{self, Eio, EnginePacket, Packet, MAX_ATTACHMENTS};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fn valid_json(raw: &RawValue) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(raw.get()).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let engine = format!("4{s}");
    assert_eq!(packet::parse_engine(&engine), Ok(EnginePacket::Message(s)));

    let Ok(p) = packet::parse(s) else {
        return;
    };
    match p {
        Packet::Connect { nsp, auth } => {
            assert!(nsp.starts_with('/'));
            if let Some(auth) = auth {
                assert!(auth.get().starts_with('{') && valid_json(auth));
            }
            for eio in [Eio::V3, Eio::V4] {
                let reply = packet::invalid_namespace(eio, nsp);
                let reply = std::str::from_utf8(&reply).unwrap();
                assert!(
                    matches!(packet::parse(&reply[1..]), Ok(Packet::ConnectError)),
                    "{reply}"
                );
            }
        }
        Packet::Disconnect { nsp } => assert!(nsp.starts_with('/')),
        Packet::Event {
            nsp,
            args,
            attachments,
            ..
        } => {
            assert!(nsp.starts_with('/'));
            assert!(attachments <= MAX_ATTACHMENTS);
            assert!(!args.is_empty());
            assert!(args.iter().all(|a| valid_json(a)));
            if let Ok(name) = serde_json::from_str::<String>(args[0].get()) {
                let rest: Vec<&str> = args[1..].iter().map(|a| a.get()).collect();
                let again = packet::event(&name, &rest);
                let again = std::str::from_utf8(&again).unwrap();
                match packet::parse(&again[1..]) {
                    Ok(Packet::Event {
                        nsp: "/",
                        id: None,
                        args: args2,
                        attachments: 0,
                    }) => {
                        let name2: String = serde_json::from_str(args2[0].get()).unwrap();
                        assert_eq!(name2, name);
                        let rest2: Vec<&str> = args2[1..].iter().map(|a| a.get()).collect();
                        assert_eq!(rest2, rest);
                    }
                    other => panic!("{again:?} parsed as {other:?}"),
                }
            }
        }
        Packet::Ack { attachments } => assert!(attachments <= MAX_ATTACHMENTS),
        Packet::ConnectError => {}
    }
});
