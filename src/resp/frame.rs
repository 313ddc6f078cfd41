//! Reply values and their wire encoding, in RESP2 and RESP3.
//!
//! Commands build a [`Frame`]; the session encodes it for the protocol the client chose
//! with `HELLO` (RESP3 has maps, `_` nulls, `>` pushes and verbatim strings; RESP2
//! flattens maps into arrays and writes `$-1` for nulls). Pub/sub deliveries do not go
//! through `Frame`: [`message_header`] writes only the bytes before the payload so the
//! payload itself is shared, never copied.

use crate::broker::Via;
use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Cow;

/// The protocol a client speaks, chosen with `HELLO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Resp2 = 2,
    Resp3 = 3,
}

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Simple(Cow<'static, str>),
    /// The error line without its leading `-`, e.g. `ERR unknown command ...`.
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Frame>),
    /// RESP3 map; a flat array of key, value, ... in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 out-of-band push; an array in RESP2.
    Push(Vec<Frame>),
    /// RESP3 verbatim text (`=len\r\ntxt:...`); a bulk string in RESP2.
    Verbatim(String),
}

impl Frame {
    pub const OK: Frame = Frame::Simple(Cow::Borrowed("OK"));

    /// A status reply (`+...`).
    pub fn simple(s: impl Into<Cow<'static, str>>) -> Frame {
        Frame::Simple(s.into())
    }

    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// A bulk string of a static or formatted text.
    pub fn text(s: impl Into<String>) -> Frame {
        Frame::Bulk(Bytes::from(s.into()))
    }

    /// `-ERR <msg>`.
    pub fn err(msg: impl std::fmt::Display) -> Frame {
        Frame::Error(format!("ERR {msg}"))
    }

    pub fn encode(&self, proto: Proto, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', sanitize(s).as_bytes()),
            Frame::Integer(n) => line(out, b':', itoa(*n).as_bytes()),
            Frame::Bulk(b) => bulk(out, b),
            Frame::Null => match proto {
                Proto::Resp2 => out.put_slice(b"$-1\r\n"),
                Proto::Resp3 => out.put_slice(b"_\r\n"),
            },
            Frame::Array(items) => {
                header(out, b'*', items.len());
                items.iter().for_each(|f| f.encode(proto, out));
            }
            Frame::Push(items) => {
                let kind = if proto == Proto::Resp3 { b'>' } else { b'*' };
                header(out, kind, items.len());
                items.iter().for_each(|f| f.encode(proto, out));
            }
            Frame::Map(pairs) => {
                match proto {
                    Proto::Resp2 => header(out, b'*', pairs.len() * 2),
                    Proto::Resp3 => header(out, b'%', pairs.len()),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Verbatim(s) => match proto {
                Proto::Resp2 => bulk(out, s.as_bytes()),
                Proto::Resp3 => {
                    header(out, b'=', s.len() + 4);
                    out.put_slice(b"txt:");
                    out.put_slice(s.as_bytes());
                    out.put_slice(b"\r\n");
                }
            },
        }
    }
}

/// Redis never lets an error line break the protocol: CR and LF become spaces.
fn sanitize(s: &str) -> Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ").into()
    } else {
        s.into()
    }
}

fn itoa(n: impl std::fmt::Display) -> String {
    n.to_string()
}

fn line(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(kind);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn header(out: &mut BytesMut, kind: u8, len: usize) {
    line(out, kind, itoa(len).as_bytes());
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len());
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// The bytes of a pub/sub delivery that come before the payload: `*3`/`>3` (or `*4`/`>4`
/// for a pattern match), the kind, the pattern, the channel and the payload's `$len`.
/// The caller sends the shared payload and [`CRLF`] after it.
pub fn message_header(proto: Proto, via: Via<'_>, channel: &[u8], payload_len: usize) -> Bytes {
    let kind = if proto == Proto::Resp3 { b'>' } else { b'*' };
    let mut out = BytesMut::with_capacity(channel.len() + 48);
    match via {
        Via::Channel => {
            header(&mut out, kind, 3);
            bulk(&mut out, b"message");
        }
        Via::Shard => {
            header(&mut out, kind, 3);
            bulk(&mut out, b"smessage");
        }
        Via::Pattern(p) => {
            out.reserve(p.len());
            header(&mut out, kind, 4);
            bulk(&mut out, b"pmessage");
            bulk(&mut out, p);
        }
    }
    bulk(&mut out, channel);
    header(&mut out, b'$', payload_len);
    out.freeze()
}

pub const CRLF: Bytes = Bytes::from_static(b"\r\n");

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: &Frame, p: Proto) -> Vec<u8> {
        let mut b = BytesMut::new();
        f.encode(p, &mut b);
        b.to_vec()
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        let map = Frame::Map(vec![(Frame::text("proto"), Frame::Integer(3))]);
        assert_eq!(enc(&map, Proto::Resp2), b"*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(&map, Proto::Resp3), b"%1\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(&Frame::Null, Proto::Resp2), b"$-1\r\n");
        assert_eq!(enc(&Frame::Null, Proto::Resp3), b"_\r\n");
        let push = Frame::Push(vec![Frame::text("a")]);
        assert_eq!(enc(&push, Proto::Resp3), b">1\r\n$1\r\na\r\n");
        assert_eq!(enc(&push, Proto::Resp2), b"*1\r\n$1\r\na\r\n");
        let v = Frame::Verbatim("x".into());
        assert_eq!(enc(&v, Proto::Resp3), b"=5\r\ntxt:x\r\n");
        assert_eq!(enc(&v, Proto::Resp2), b"$1\r\nx\r\n");
        assert_eq!(enc(&Frame::err("a\r\nb"), Proto::Resp2), b"-ERR a  b\r\n");
    }

    #[test]
    fn message_headers() {
        let h = message_header(Proto::Resp2, Via::Channel, b"ch", 5);
        assert_eq!(&h[..], b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\n");
        let h = message_header(Proto::Resp3, Via::Pattern(b"c*"), b"ch", 0);
        assert_eq!(
            &h[..],
            b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$0\r\n"
        );
        let h = message_header(Proto::Resp2, Via::Shard, b"s", 1);
        assert_eq!(&h[..], b"*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\n");
    }
}
