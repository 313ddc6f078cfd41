//! Engine.IO and Socket.IO wire formats: packets, polling payloads, events.
//!
//! Engine.IO v4 (EIO=4) and v3 (EIO=3) share packet types (`0` open … `6` noop) and
//! differ in polling payloads: v4 joins packets with `\x1e` and marks binary with
//! `b<base64>`; v3 prefixes each packet with its length in UTF-16 code units
//! (`len:packet`), marks base64 binary `b4<base64>` and has a binary payload form.
//! Socket.IO packets ride inside Engine.IO `message` packets: protocol v5 for EIO=4
//! clients, v4 for EIO=3 ones, which differ here only in CONNECT and CONNECT_ERROR.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::value::RawValue;

/// Engine.IO protocol generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eio {
    V3,
    V4,
}

/// One decoded Engine.IO packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    /// A binary message (a Socket.IO attachment; its bytes are not kept).
    Binary,
    Upgrade,
    Noop,
    Open,
}

/// A malformed Engine.IO packet or payload: the reference server's "parse error",
/// after which the session is closed.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError;

/// Parse one text Engine.IO packet.
pub fn parse_engine(s: &str) -> Result<EnginePacket<'_>, ParseError> {
    let mut chars = s.chars();
    let kind = chars.next().ok_or(ParseError)?;
    let rest = &s[kind.len_utf8()..];
    Ok(match kind {
        '0' => EnginePacket::Open,
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping(rest),
        '3' => EnginePacket::Pong(rest),
        '4' => EnginePacket::Message(rest),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        'b' => {
            // v4: `b<base64>`; v3: `b4<base64>` (the type digit precedes the data).
            let b64 = rest.strip_prefix('4').unwrap_or(rest);
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| ParseError)?;
            EnginePacket::Binary
        }
        _ => return Err(ParseError),
    })
}

/// Split a text polling body into packets.
pub fn split_payload(eio: Eio, body: &str) -> Result<Vec<&str>, ParseError> {
    match eio {
        Eio::V4 => Ok(body.split('\x1e').collect()),
        Eio::V3 => split_v3(body),
    }
}

/// `len:packet…` where len counts UTF-16 code units, as JavaScript's `String.length`.
fn split_v3(mut body: &str) -> Result<Vec<&str>, ParseError> {
    let mut out = Vec::new();
    if body.is_empty() {
        return Err(ParseError);
    }
    while !body.is_empty() {
        let colon = body.find(':').ok_or(ParseError)?;
        let len: usize = body[..colon].parse().map_err(|_| ParseError)?;
        let rest = &body[colon + 1..];
        let mut units = 0;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if units == len {
                end = i;
                break;
            }
            units += c.len_utf16();
        }
        if units < len || (end == rest.len() && units != len) {
            return Err(ParseError);
        }
        out.push(&rest[..end]);
        body = &rest[end..];
    }
    Ok(out)
}

/// One packet of a v3 binary polling payload: text or a binary message.
pub enum V3Item {
    Text(String),
    Binary,
}

/// The v3 `application/octet-stream` payload: per packet a 0 (text) or 1 (binary)
/// byte, the length as decimal digit bytes, 255, then the packet.
pub fn split_v3_binary(mut body: &[u8]) -> Result<Vec<V3Item>, ParseError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let is_text = match body[0] {
            0 => true,
            1 => false,
            _ => return Err(ParseError),
        };
        let sep = body.iter().position(|&b| b == 255).ok_or(ParseError)?;
        if !(2..=12).contains(&sep) {
            return Err(ParseError);
        }
        let mut len = 0usize;
        for &d in &body[1..sep] {
            if d > 9 {
                return Err(ParseError);
            }
            len = len * 10 + d as usize;
        }
        let rest = &body[sep + 1..];
        if rest.len() < len {
            return Err(ParseError);
        }
        let packet = &rest[..len];
        out.push(if is_text {
            V3Item::Text(String::from_utf8(packet.to_vec()).map_err(|_| ParseError)?)
        } else {
            // Binary packets carry their Engine.IO type (4, message) in the first byte.
            match packet.first() {
                Some(4) => V3Item::Binary,
                _ => return Err(ParseError),
            }
        });
        body = &rest[len..];
    }
    Ok(out)
}

/// Join queued packets into one polling response body.
pub fn encode_payload(eio: Eio, packets: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packets.iter().map(|p| p.len() + 8).sum());
    for (i, p) in packets.iter().enumerate() {
        match eio {
            Eio::V4 => {
                if i > 0 {
                    out.push(0x1e);
                }
            }
            Eio::V3 => {
                let units: usize = std::str::from_utf8(p)
                    .map(|s| s.encode_utf16().count())
                    .unwrap_or(p.len());
                out.extend_from_slice(units.to_string().as_bytes());
                out.push(b':');
            }
        }
        out.extend_from_slice(p);
    }
    out
}

/// The Engine.IO open packet.
pub fn open(
    eio: Eio,
    sid: &str,
    upgrades: bool,
    ping_ms: u64,
    timeout_ms: u64,
    max: usize,
) -> Bytes {
    let upgrades = if upgrades { r#"["websocket"]"# } else { "[]" };
    let max = match eio {
        Eio::V4 => format!(r#","maxPayload":{max}"#),
        Eio::V3 => String::new(),
    };
    Bytes::from(format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_ms},"pingTimeout":{timeout_ms}{max}}}"#
    ))
}

/// A decoded Socket.IO packet (the part after Engine.IO's `4`).
#[derive(Debug)]
pub enum Packet<'a> {
    Connect {
        nsp: &'a str,
        auth: Option<&'a RawValue>,
    },
    Disconnect {
        nsp: &'a str,
    },
    Event {
        nsp: &'a str,
        id: Option<u64>,
        args: Vec<&'a RawValue>,
        attachments: usize,
    },
    Ack {
        attachments: usize,
    },
    /// Only servers send CONNECT_ERROR; a client's is ignored.
    ConnectError,
}

/// More attachments than this in one packet is refused (socket.io-parser's default).
pub const MAX_ATTACHMENTS: usize = 10;

const RESERVED: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Parse a Socket.IO packet as socket.io-parser does; Err closes the connection.
pub fn parse<'a>(s: &'a str) -> Result<Packet<'a>, &'static str> {
    let b = s.as_bytes();
    let kind = *b.first().ok_or("empty packet")?;
    if !(b'0'..=b'6').contains(&kind) {
        return Err("unknown packet type");
    }
    let kind = kind - b'0';
    let mut i = 1;
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let dash = s[i..].find('-').ok_or("illegal attachments")? + i;
        attachments = s[i..dash].parse().map_err(|_| "illegal attachments")?;
        if attachments > MAX_ATTACHMENTS {
            return Err("too many attachments");
        }
        i = dash + 1;
    }
    let mut nsp = "/";
    if b.get(i) == Some(&b'/') {
        let end = s[i..].find(',').map_or(s.len(), |c| c + i);
        nsp = &s[i..end];
        i = (end + 1).min(s.len());
    }
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let id = if digits > 0 {
        let id = s[i..i + digits].parse().map_err(|_| "invalid ack id")?;
        i += digits;
        Some(id)
    } else {
        None
    };
    let data = if i < s.len() {
        Some(serde_json::from_str::<&RawValue>(&s[i..]).map_err(|_| "invalid payload")?)
    } else {
        None
    };
    let is_object = |d: &RawValue| d.get().starts_with('{');
    let array = |d: Option<&'a RawValue>| -> Result<Vec<&'a RawValue>, &'static str> {
        let d = d.ok_or("invalid payload")?;
        serde_json::from_str(d.get()).map_err(|_| "invalid payload")
    };
    Ok(match kind {
        0 => match data {
            Some(d) if !is_object(d) => return Err("invalid payload"),
            auth => Packet::Connect { nsp, auth },
        },
        1 => match data {
            None => Packet::Disconnect { nsp },
            Some(_) => return Err("invalid payload"),
        },
        2 | 5 => {
            let args = array(data)?;
            let name_ok = match args.first().map(|a| a.get()) {
                Some(first) if first.starts_with('"') => {
                    let name: String =
                        serde_json::from_str(first).map_err(|_| "invalid payload")?;
                    !RESERVED.contains(&name.as_str())
                }
                Some(first) => serde_json::from_str::<f64>(first).is_ok(),
                None => false,
            };
            if !name_ok {
                return Err("invalid payload");
            }
            Packet::Event {
                nsp,
                id,
                args,
                attachments,
            }
        }
        3 | 6 => {
            array(data)?;
            Packet::Ack { attachments }
        }
        _ => match data {
            Some(d) if is_object(d) || d.get().starts_with('"') => Packet::ConnectError,
            _ => return Err("invalid payload"),
        },
    })
}

/// `42["event",arg…]` for the main namespace; `args` are raw JSON texts.
pub fn event(name: &str, args: &[&str]) -> Bytes {
    let mut s =
        String::with_capacity(16 + name.len() + args.iter().map(|a| a.len() + 1).sum::<usize>());
    s.push_str("42[");
    s.push_str(&serde_json::to_string(name).expect("strings serialize"));
    for a in args {
        s.push(',');
        s.push_str(a);
    }
    s.push(']');
    Bytes::from(s)
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The CONNECT reply for the main namespace.
pub fn connected(eio: Eio, socket_id: &str) -> Bytes {
    match eio {
        Eio::V4 => Bytes::from(format!(r#"40{{"sid":"{socket_id}"}}"#)),
        Eio::V3 => Bytes::from_static(b"40"),
    }
}

/// CONNECT_ERROR for a namespace herald does not serve.
pub fn invalid_namespace(eio: Eio, nsp: &str) -> Bytes {
    match eio {
        Eio::V4 => Bytes::from(format!(r#"44{nsp},{{"message":"Invalid namespace"}}"#)),
        Eio::V3 => Bytes::from(format!(r#"44{nsp},"Invalid namespace""#)),
    }
}

/// ACK with no arguments for an event that asked for one.
pub fn ack(id: u64) -> Bytes {
    Bytes::from(format!("43{id}[]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_payloads_count_utf16_units() {
        assert_eq!(split_v3("2:4x1:2").unwrap(), vec!["4x", "2"]);
        // "é" is one UTF-16 unit, "😀" two.
        assert_eq!(split_v3("4:4é😀").unwrap(), vec!["4é😀"]);
        assert!(
            split_v3("3:4é😀").is_err(),
            "a length may not split a surrogate pair"
        );
        assert!(split_v3("5:4x").is_err());
        assert!(split_v3("x:4").is_err());
        assert!(split_v3("").is_err());
        let enc = encode_payload(Eio::V3, &[Bytes::from("4é😀"), Bytes::from("2")]);
        assert_eq!(std::str::from_utf8(&enc).unwrap(), "4:4é😀1:2");
        let enc = encode_payload(Eio::V4, &[Bytes::from("40"), Bytes::from("2")]);
        assert_eq!(enc, b"40\x1e2");
    }

    #[test]
    fn v3_binary_payload() {
        let body = [0u8, 2, 255, b'4', b'x', 1, 3, 255, 4, 1, 2];
        let items = split_v3_binary(&body).unwrap();
        assert!(matches!(&items[0], V3Item::Text(t) if t == "4x"));
        assert!(matches!(&items[1], V3Item::Binary));
        assert!(split_v3_binary(&[0, 9, 255, b'4']).is_err());
    }

    #[test]
    fn engine_packets() {
        assert_eq!(parse_engine("2probe").unwrap(), EnginePacket::Ping("probe"));
        assert_eq!(
            parse_engine("42[1]").unwrap(),
            EnginePacket::Message("2[1]")
        );
        assert_eq!(parse_engine("bAQI=").unwrap(), EnginePacket::Binary);
        assert_eq!(parse_engine("b4AQI=").unwrap(), EnginePacket::Binary);
        assert!(parse_engine("b!!").is_err());
        assert!(parse_engine("9").is_err());
        assert!(parse_engine("").is_err());
    }

    #[test]
    fn socketio_packets() {
        assert!(matches!(
            parse("0").unwrap(),
            Packet::Connect {
                nsp: "/",
                auth: None
            }
        ));
        match parse(r#"0{"token":"t"}"#).unwrap() {
            Packet::Connect { auth: Some(a), .. } => assert_eq!(a.get(), r#"{"token":"t"}"#),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            parse("0/admin,").unwrap(),
            Packet::Connect { nsp: "/admin", .. }
        ));
        match parse(r#"2/x,12["ev",1]"#).unwrap() {
            Packet::Event { nsp, id, args, .. } => {
                assert_eq!((nsp, id, args.len()), ("/x", Some(12), 2));
            }
            p => panic!("{p:?}"),
        }
        match parse(r#"51-["up",{"_placeholder":true,"num":0}]"#).unwrap() {
            Packet::Event { attachments, .. } => assert_eq!(attachments, 1),
            p => panic!("{p:?}"),
        }
        for bad in [
            "7",
            "2",
            "2{}",
            r#"2["connect"]"#,
            "2[",
            "0[]",
            "1{}",
            "5x-[\"a\"]",
            "511-[\"a\"]",
            "3{}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse("1").unwrap(), Packet::Disconnect { .. }));
        assert!(matches!(parse("3[]").unwrap(), Packet::Ack { .. }));
    }

    #[test]
    fn encodes() {
        assert_eq!(
            &event("E", &[r#""orders.1""#, "{}"])[..],
            br#"42["E","orders.1",{}]"#
        );
        assert_eq!(&connected(Eio::V4, "abc")[..], br#"40{"sid":"abc"}"#);
        assert_eq!(
            &invalid_namespace(Eio::V4, "/x")[..],
            br#"44/x,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            &open(Eio::V4, "s", true, 25000, 20000, 1000000)[..],
            br#"0{"sid":"s","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
    }
}
