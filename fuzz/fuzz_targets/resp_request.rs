//! RESP requests (src/resp/codec.rs) as a RESP connection reads them.
//!
//! Input: one byte of settings (bit 0: authenticated; the whole byte seeds how the rest
//! is cut into reads), then the bytes a client sends.
//!
//! Asserts:
//! - no panic, and every `decode` call ends (libFuzzer's timeout);
//! - a request always consumes bytes; a multibulk has the count it announced, at most
//!   `max_multibulk_len` (10 before AUTH); every argument is within the bulk limit or,
//!   inline, within the line Redis accepts (inline requests have no count limit in Redis);
//! - while waiting for more, the decoder never holds more than the limits allow (the
//!   inline limit, or one announced bulk), except a line waiting for the `\n` after its `\r`;
//! - an error is one `-ERR Protocol error: ...` line;
//! - with limits out of reach, cutting the input into reads changes nothing: the same
//!   requests and the same error as reading it all at once;
//! - `string2ll` accepts exactly the canonical decimal form of an i64, as Redis does;
//! - `split_args` reads back what it split, when each argument is re-quoted.

#![no_main]

use bytes::{Bytes, BytesMut};
use herald::resp::codec::{split_args, string2ll, Limits, ProtocolError, RequestDecoder};
use herald_fuzz::{pieces, MAX_PIECE};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Small enough that inputs of `-max_len=1024` run into every limit.
const SMALL: Limits = Limits {
    max_bulk_len: 512,
    max_multibulk_len: 64,
    max_inline_len: 128,
};

/// Limits that cannot depend on how the input is read, so only its content decides
/// the outcome: the inline and count-line limits (checked against the bytes buffered
/// without a line end) are out of reach; the bulk and count limits are checked against
/// announced numbers. The bulk limit stays small so that announced bulks reserve little
/// (a huge one reserves 1 MB per read, which slows fuzzing down and proves nothing).
const READ_NEUTRAL: Limits = Limits {
    max_bulk_len: 8192,
    max_multibulk_len: 1 << 20,
    max_inline_len: 1 << 30,
};

type Outcome = Vec<Result<Vec<Bytes>, ProtocolError>>;

/// Decode `reads` in order, checking each step against `limits`.
fn run(limits: Limits, authenticated: bool, reads: &[&[u8]]) -> Outcome {
    let mut decoder = RequestDecoder::new(limits, authenticated);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let waiting_bound = limits.max_inline_len.max(limits.max_bulk_len + 1);
    let arg_bound = limits.max_bulk_len.max(limits.max_inline_len + MAX_PIECE);
    let max_args = if authenticated {
        limits.max_multibulk_len
    } else {
        limits.max_multibulk_len.min(10)
    };
    // Whether the decoder is between requests (it has none partly read), and the
    // argument count the multibulk it is reading announced.
    let mut idle = true;
    let mut announced = None;
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            let before = buf.len();
            if idle && announced.is_none() {
                announced = announced_count(&buf);
            }
            match decoder.decode(&mut buf) {
                Ok(Some(args)) => {
                    assert!(buf.len() < before, "a request consumed nothing");
                    assert!(!args.is_empty(), "an empty request was returned");
                    if let Some(n) = announced.take() {
                        assert_eq!(args.len(), n, "not the announced argument count");
                        assert!(n <= max_args, "{n} arguments");
                    }
                    assert!(
                        args.iter().all(|a| a.len() <= arg_bound),
                        "argument too long"
                    );
                    idle = true;
                    out.push(Ok(args));
                }
                Ok(None) => {
                    idle &= buf.len() == before;
                    assert!(
                        buf.len() <= waiting_bound || buf.ends_with(b"\r"),
                        "waiting with {} bytes buffered",
                        buf.len()
                    );
                    assert!(buf.len() <= waiting_bound + MAX_PIECE);
                    break;
                }
                Err(e) => {
                    let reply = e.reply();
                    assert!(reply.starts_with(b"-ERR Protocol error: "));
                    assert!(reply.ends_with(b"\r\n"));
                    assert!(!reply[..reply.len() - 2]
                        .iter()
                        .any(|&b| b == b'\r' || b == b'\n'));
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// The count a multibulk at the start of `buf` announces, if its line is all there
/// and it is a request (Redis skips `*0` and negative counts).
fn announced_count(buf: &[u8]) -> Option<usize> {
    let rest = buf.strip_prefix(b"*")?;
    let r = rest.iter().position(|&b| b == b'\r')?;
    if r + 1 >= rest.len() {
        return None;
    }
    string2ll(&rest[..r]).filter(|&n| n > 0).map(|n| n as usize)
}

/// An argument quoted so that `split_args` reads it back unchanged.
fn quote(arg: &[u8]) -> Vec<u8> {
    let mut q = b"\"".to_vec();
    for &b in arg {
        q.extend_from_slice(format!("\\x{b:02x}").as_bytes());
    }
    q.push(b'"');
    q
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, wire)) = data.split_first() else {
        return;
    };
    let authenticated = settings & 1 == 1;

    run(SMALL, authenticated, &pieces(settings | 0x40, wire));

    let whole = run(READ_NEUTRAL, authenticated, &[wire]);
    let split = run(READ_NEUTRAL, authenticated, &pieces(settings | 0x80, wire));
    assert_eq!(
        whole, split,
        "the outcome depends on how the input was read"
    );

    for line in wire.split(|&b| b == b'\n') {
        let reference = std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|v| v.to_string().as_bytes() == line);
        assert_eq!(string2ll(line), reference, "string2ll({line:?})");

        if let Some(args) = split_args(line) {
            let requoted: Vec<Vec<u8>> = args.iter().map(|a| quote(a)).collect();
            assert_eq!(split_args(&requoted.join(&b' ')), Some(args));
        }
    }
});
