//! Requests off the wire: RESP multibulk and inline commands, exactly as Redis reads them.
//!
//! The rules follow Redis's `processMultibulkBuffer` / `processInlineBuffer` and
//! `sdssplitargs`: a request starting with `*` is a multibulk (`*0` and negative counts
//! are ignored), anything else is an inline line split with Redis's quoting rules.
//! Numbers parse as Redis's `string2ll` does (no `+`, no leading zeros), the two bytes
//! after a bulk are skipped unchecked, and each limit and malformation produces Redis's
//! exact `Protocol error: ...` text, after which the session closes the connection.
//! The decoder keeps its place inside a multibulk, so a request may be split across
//! reads at any byte without being parsed twice; arguments are cut out of the read
//! buffer without copying, so a PUBLISH payload reaches subscribers as the same bytes.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Redis only lets a client that has not authenticated send small requests.
const UNAUTH_MAX_MULTIBULK: i64 = 10;
const UNAUTH_MAX_BULK: i64 = 16 * 1024;
/// The most a bulk's announced length reserves ahead of its bytes.
const MAX_PREALLOCATION: usize = 1024 * 1024;

/// The request size limits (`proto-max-bulk-len` and friends).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_multibulk_len: usize,
    pub max_inline_len: usize,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Limits {
            max_bulk_len: c.proto_max_bulk_len,
            max_multibulk_len: c.max_multibulk_len,
            max_inline_len: c.max_inline_len,
        }
    }
}

/// A malformed request. Redis answers `-ERR Protocol error: <what>` and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub Vec<u8>);

impl ProtocolError {
    fn new(what: &str) -> Self {
        ProtocolError(what.as_bytes().to_vec())
    }

    /// The complete error reply line.
    pub fn reply(&self) -> Bytes {
        let mut line = b"-ERR Protocol error: ".to_vec();
        line.extend(self.0.iter().map(|&b| match b {
            b'\r' | b'\n' => b' ',
            b => b,
        }));
        line.extend_from_slice(b"\r\n");
        line.into()
    }
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError(e.to_string().into_bytes())
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A multibulk request partly read.
#[derive(Debug)]
struct Partial {
    remaining: usize,
    args: Vec<Bytes>,
    /// The announced length of the bulk being read, once its `$` line has arrived.
    bulk_len: Option<usize>,
}

/// Decodes requests into argument vectors.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    /// False until the client has authenticated on a server that requires it; such a
    /// client may only send small requests, as in Redis.
    pub authenticated: bool,
    partial: Option<Partial>,
}

impl RequestDecoder {
    pub fn new(limits: Limits, authenticated: bool) -> Self {
        RequestDecoder {
            limits,
            authenticated,
            partial: None,
        }
    }

    /// Read the `*<count>` line. Ok(None): wait for more bytes.
    fn multibulk_count(&mut self, buf: &mut BytesMut) -> Result<Option<i64>, ProtocolError> {
        let Some(n) = self.number_line(buf, "too big mbulk count string")? else {
            return Ok(None);
        };
        match n {
            Some(n) if n <= self.limits.max_multibulk_len as i64 => {
                if n > UNAUTH_MAX_MULTIBULK && !self.authenticated {
                    return Err(ProtocolError::new("unauthenticated multibulk length"));
                }
                Ok(Some(n))
            }
            _ => Err(ProtocolError::new("invalid multibulk length")),
        }
    }

    /// A `<prefix><number>\r` line: Ok(None) to wait, Ok(Some(None)) if not a number.
    fn number_line(
        &self,
        buf: &mut BytesMut,
        too_big: &str,
    ) -> Result<Option<Option<i64>>, ProtocolError> {
        let Some(r) = memchr(b'\r', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::new(too_big));
            }
            return Ok(None);
        };
        if r + 2 > buf.len() {
            return Ok(None);
        }
        let n = string2ll(&buf[1..r]);
        buf.advance(r + 2);
        Ok(Some(n))
    }

    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(nl) = memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::new("too big inline request"));
            }
            return Ok(None);
        };
        let end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let args = split_args(&buf[..end])
            .ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))?;
        buf.advance(nl + 1);
        Ok(Some(args.into_iter().map(Bytes::from).collect()))
    }
}

impl Decoder for RequestDecoder {
    type Item = Vec<Bytes>;
    type Error = ProtocolError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            let Some(partial) = &mut self.partial else {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => match self.multibulk_count(buf)? {
                        None => return Ok(None),
                        Some(n) if n <= 0 => continue,
                        Some(n) => {
                            self.partial = Some(Partial {
                                remaining: n as usize,
                                args: Vec::with_capacity((n as usize).min(64)),
                                bulk_len: None,
                            });
                            continue;
                        }
                    },
                    Some(_) => match self.inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    },
                }
            };
            while partial.remaining > 0 {
                let len = match partial.bulk_len {
                    Some(len) => len,
                    None => match bulk_len(&self.limits, self.authenticated, buf)? {
                        None => return Ok(None),
                        Some(len) => {
                            partial.bulk_len = Some(len);
                            len
                        }
                    },
                };
                if buf.len() < len + 2 {
                    // Room for the rest, but not all at once for a huge announced
                    // length that may never arrive.
                    buf.reserve((len + 2 - buf.len()).min(MAX_PREALLOCATION));
                    return Ok(None);
                }
                partial.args.push(buf.split_to(len).freeze());
                buf.advance(2);
                partial.bulk_len = None;
                partial.remaining -= 1;
            }
            let done = self.partial.take().expect("partial request");
            return Ok(Some(done.args));
        }
    }
}

/// Read the `$<len>` line of the next bulk.
fn bulk_len(
    limits: &Limits,
    authenticated: bool,
    buf: &mut BytesMut,
) -> Result<Option<usize>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some(r) = memchr(b'\r', buf) else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::new("too big bulk count string"));
        }
        return Ok(None);
    };
    if r + 2 > buf.len() {
        return Ok(None);
    }
    if buf[0] != b'$' {
        let mut what = b"expected '$', got '".to_vec();
        what.push(buf[0]);
        what.push(b'\'');
        return Err(ProtocolError(what));
    }
    let n = string2ll(&buf[1..r]);
    buf.advance(r + 2);
    match n {
        Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len as u64 => {
            if n > UNAUTH_MAX_BULK && !authenticated {
                return Err(ProtocolError::new("unauthenticated bulk length"));
            }
            Ok(Some(n as usize))
        }
        _ => Err(ProtocolError::new("invalid bulk length")),
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros, fits in an i64.
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(v).ok()
    }
}

/// Redis's `sdssplitargs`: split an inline line into arguments. `"..."` understands
/// `\n \r \t \b \a \xHH` and `\<any>`; `'...'` only `\'`; a closing quote must be followed
/// by a space or the end. None for unbalanced quotes. A NUL byte ends the line, as it
/// ends Redis's C string.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(args);
        }
        let (mut in_dq, mut in_sq, mut done) = (false, false, false);
        let mut cur = Vec::new();
        while !done {
            let c = at(p);
            if in_dq {
                if c == b'\\'
                    && at(p + 1) == b'x'
                    && at(p + 2).is_ascii_hexdigit()
                    && at(p + 3).is_ascii_hexdigit()
                {
                    let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                    cur.push(hex(at(p + 2)) * 16 + hex(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    cur.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    _ => cur.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut d = RequestDecoder::new(limits(), true);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = d.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn string2ll_is_strict() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-1"), Some(-1));
        assert_eq!(string2ll(b"123"), Some(123));
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-0",
            b"-",
            b"1a",
            b"9223372036854775808",
        ] {
            assert_eq!(string2ll(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn splits_like_sdssplitargs() {
        assert_eq!(
            split_args(b"  set a  b ").unwrap(),
            strs(&["set", "a", "b"])
        );
        assert_eq!(
            split_args(b"\"a\\n\\r\\t\\b\\a\\x41\\\"\" 'it\\'s' \"\\q\"").unwrap(),
            vec![
                b"a\n\r\t\x08\x07A\"".to_vec(),
                b"it's".to_vec(),
                b"q".to_vec()
            ]
        );
        assert_eq!(split_args(b"a\"b c\"").unwrap(), strs(&["ab c"]));
        assert_eq!(split_args(b"\"\"").unwrap(), strs(&[""]));
        assert_eq!(split_args(b"\"\\x4\"").unwrap(), strs(&["x4"]));
        assert!(split_args(b"\"abc").is_none());
        assert!(split_args(b"'abc").is_none());
        assert!(split_args(b"\"a\"b").is_none());
        assert!(split_args(b"'a'b").is_none());
        assert_eq!(split_args(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(split_args(b"a\0b").unwrap(), strs(&["a"]));
    }

    #[test]
    fn multibulk_and_inline_pipelined() {
        let got = decode_all(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*0\r\n*-1\r\n\r\nping x\n")
            .unwrap();
        let got: Vec<Vec<Vec<u8>>> = got
            .into_iter()
            .map(|a| a.into_iter().map(|b| b.to_vec()).collect())
            .collect();
        assert_eq!(
            got,
            vec![strs(&["ECHO", "hi"]), strs(&["PING"]), strs(&["ping", "x"])]
        );
    }

    #[test]
    fn split_at_every_byte() {
        let input = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\nECHO \"a b\"\r\n";
        for cut in 0..input.len() {
            let mut d = RequestDecoder::new(limits(), true);
            let mut buf = BytesMut::from(&input[..cut]);
            let mut out = Vec::new();
            while let Some(a) = d.decode(&mut buf).unwrap() {
                out.push(a);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(a) = d.decode(&mut buf).unwrap() {
                out.push(a);
            }
            assert_eq!(out.len(), 2, "cut at {cut}");
            assert_eq!(out[0][2], "hello");
            assert_eq!(out[1][1], "a b");
        }
    }

    #[test]
    fn protocol_errors() {
        let err = |input: &[u8]| {
            String::from_utf8(decode_all(input).unwrap_err().reply().to_vec()).unwrap()
        };
        assert_eq!(
            err(b"*x\r\n"),
            "-ERR Protocol error: invalid multibulk length\r\n"
        );
        assert_eq!(
            err(b"*1\r\n$-1\r\n"),
            "-ERR Protocol error: invalid bulk length\r\n"
        );
        assert_eq!(
            err(b"*1\r\nfoo\r\n"),
            "-ERR Protocol error: expected '$', got 'f'\r\n"
        );
        assert_eq!(
            err(b"\"abc\r\n"),
            "-ERR Protocol error: unbalanced quotes in request\r\n"
        );
        assert_eq!(
            err(&vec![b'a'; 64 * 1024 + 1]),
            "-ERR Protocol error: too big inline request\r\n"
        );
        let mut d = RequestDecoder::new(limits(), false);
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().reply(),
            "-ERR Protocol error: unauthenticated multibulk length\r\n"
        );
        let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        let mut d = RequestDecoder::new(limits(), false);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().reply(),
            "-ERR Protocol error: unauthenticated bulk length\r\n"
        );
    }
}
