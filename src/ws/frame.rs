//! RFC 6455 framing: decoding client frames, encoding server frames.
//!
//! Server frames are never masked, so one encoded frame can be written to any number
//! of connections unchanged: that is what lets a publication be encoded once.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

/// A complete message from the client, after reassembling fragments.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The close code (if any) the client sent.
    Close(Option<u16>),
}

/// A client broke the protocol; the connection is closed with `code`.
#[derive(Debug, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub reason: &'static str,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

const fn err(code: u16, reason: &'static str) -> WsError {
    WsError { code, reason }
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Reassembles client messages from a byte buffer.
#[derive(Default)]
pub struct Decoder {
    /// Opcode and payload of a fragmented message in progress.
    partial: Option<(u8, BytesMut)>,
}

impl Decoder {
    /// Take one message out of `buf` if a whole one is there. `max` bounds a message.
    pub fn decode(&mut self, buf: &mut BytesMut, max: usize) -> Result<Option<Message>, WsError> {
        loop {
            let Some((fin, opcode, payload)) = take_frame(buf, max)? else {
                return Ok(None);
            };
            if opcode >= OP_CLOSE {
                if !fin {
                    return Err(err(1002, "fragmented control frame"));
                }
                return Ok(Some(match opcode {
                    OP_CLOSE => Message::Close(close_code(&payload)?),
                    OP_PING => Message::Ping(payload),
                    OP_PONG => Message::Pong(payload),
                    _ => return Err(err(1002, "unknown opcode")),
                }));
            }
            let (op, data) = match (opcode, self.partial.take()) {
                (OP_CONT, None) => return Err(err(1002, "continuation without a start")),
                (OP_CONT, Some((op, mut acc))) => {
                    if acc.len() + payload.len() > max {
                        return Err(err(1009, "message too big"));
                    }
                    acc.extend_from_slice(&payload);
                    (op, acc)
                }
                (OP_TEXT | OP_BINARY, None) => (opcode, BytesMut::from(&payload[..])),
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return Err(err(1002, "new message inside a fragmented one"))
                }
                _ => return Err(err(1002, "unknown opcode")),
            };
            if !fin {
                self.partial = Some((op, data));
                continue;
            }
            let data = data.freeze();
            return Ok(Some(if op == OP_TEXT {
                if std::str::from_utf8(&data).is_err() {
                    return Err(err(1007, "text message is not UTF-8"));
                }
                Message::Text(data)
            } else {
                Message::Binary(data)
            }));
        }
    }
}

fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(err(1002, "close frame with a one-byte body")),
        _ => Ok(Some(u16::from_be_bytes([payload[0], payload[1]]))),
    }
}

/// One raw frame: (fin, opcode, unmasked payload), or None if incomplete.
fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<(bool, u8, Bytes)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(err(1002, "reserved bits set"));
    }
    if b1 & 0x80 == 0 {
        return Err(err(1002, "client frames must be masked"));
    }
    let opcode = b0 & 0x0F;
    let (len, header) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && len > 125 {
        return Err(err(1002, "control frame too long"));
    }
    if len > max as u64 {
        return Err(err(1009, "message too big"));
    }
    let len = len as usize;
    let total = header + 4 + len;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mask: [u8; 4] = buf[header..header + 4].try_into().unwrap();
    buf.advance(header + 4);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Some((b0 & 0x80 != 0, opcode, payload.freeze())))
}

fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= u16::MAX as usize => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// A complete, unmasked server text frame, ready for any number of connections.
pub fn text(payload: &[u8]) -> Bytes {
    encode(OP_TEXT, payload)
}

pub fn pong(payload: &[u8]) -> Bytes {
    encode(OP_PONG, payload)
}

pub fn ping(payload: &[u8]) -> Bytes {
    encode(OP_PING, payload)
}

/// A close frame with a status code and a short reason.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut body = Vec::with_capacity(2 + reason.len());
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    encode(OP_CLOSE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        v
    }

    #[test]
    fn decodes_split_at_every_byte() {
        let wire = masked(true, OP_TEXT, b"hello world");
        for cut in 0..wire.len() {
            let mut d = Decoder::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(d.decode(&mut buf, 1 << 20).unwrap(), None);
            buf.extend_from_slice(&wire[cut..]);
            assert_eq!(
                d.decode(&mut buf, 1 << 20).unwrap(),
                Some(Message::Text(Bytes::from_static(b"hello world")))
            );
        }
    }

    #[test]
    fn reassembles_fragments_around_a_ping() {
        let mut wire = masked(false, OP_TEXT, b"hel");
        wire.extend(masked(true, OP_PING, b"p"));
        wire.extend(masked(true, OP_CONT, b"lo"));
        let mut buf = BytesMut::from(&wire[..]);
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&mut buf, 100).unwrap(),
            Some(Message::Ping("p".into()))
        );
        assert_eq!(
            d.decode(&mut buf, 100).unwrap(),
            Some(Message::Text("hello".into()))
        );
    }

    #[test]
    fn refuses_bad_frames() {
        let mut d = Decoder::default();
        let mut unmasked = BytesMut::from(&[0x81u8, 0x01, b'x'][..]);
        assert_eq!(d.decode(&mut unmasked, 100).unwrap_err().code, 1002);
        let mut big = BytesMut::from(&masked(true, OP_TEXT, &[b'a'; 200])[..]);
        assert_eq!(d.decode(&mut big, 100).unwrap_err().code, 1009);
        let mut bad_utf8 = BytesMut::from(&masked(true, OP_TEXT, &[0xff, 0xfe])[..]);
        assert_eq!(d.decode(&mut bad_utf8, 100).unwrap_err().code, 1007);
    }

    #[test]
    fn encodes_lengths() {
        assert_eq!(&text(b"hi")[..], b"\x81\x02hi");
        let f = text(&[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(&close(1000, "bye")[..], b"\x88\x05\x03\xe8bye");
    }
}
