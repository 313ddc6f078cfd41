//! Every parser that reads bytes from the network, fed random and mutated input: none
//! may panic, loop without consuming input, or hold more input than its limits allow
//! while it waits for the rest (checked after every read). The
//! inputs are mutations of real traffic (a Laravel EVAL, redis-cli's inline commands,
//! masked WebSocket frames, Engine.IO payloads, Socket.IO packets), so most of them get
//! deep into the parsers before going wrong. A fixed seed keeps every run reproducible;
//! `HERALD_FUZZ_ITERATIONS` runs longer.

use bytes::BytesMut;
use herald::resp::codec::{split_args, string2ll, Limits, RequestDecoder};
use herald::socketio::packet::{self, Eio};
use herald::ws::frame::{Decoder as WsDecoder, Message};
use tokio_util::codec::Decoder;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A byte that is often one the parsers care about.
    fn byte(&mut self) -> u8 {
        const INTERESTING: &[u8] = b"\r\n*$:+-0123456789\"'\\ \t{}[],\x00\x80\xff4b";
        if self.below(2) == 0 {
            INTERESTING[self.below(INTERESTING.len())]
        } else {
            self.next() as u8
        }
    }

    /// `seed` with a few random edits: flips, insertions, deletions, truncation,
    /// duplication of a slice.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = if v.is_empty() { 0 } else { self.below(v.len()) };
            match self.below(6) {
                0 if !v.is_empty() => v[at] = self.byte(),
                1 => v.insert(at, self.byte()),
                2 if !v.is_empty() => {
                    v.remove(at);
                }
                3 => v.truncate(at),
                4 if !v.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    let slice = v[at..end].to_vec();
                    v.splice(at..at, slice);
                }
                _ => {
                    let n = self.below(8);
                    for _ in 0..n {
                        let b = self.byte();
                        v.push(b);
                    }
                }
            }
        }
        v
    }

    fn input(&mut self, corpus: &[&[u8]]) -> Vec<u8> {
        if self.below(8) == 0 {
            (0..self.below(64)).map(|_| self.byte()).collect()
        } else {
            let seed = corpus[self.below(corpus.len())];
            self.mutate(seed)
        }
    }
}

/// Feed `input` to a parser in random pieces, as reads split it; after each piece
/// `drain` decodes what it can and says whether to go on (false: the input was refused
/// and the connection would be closed).
fn feed_in_pieces(rng: &mut Rng, input: &[u8], mut drain: impl FnMut(&mut BytesMut) -> bool) {
    let mut buf = BytesMut::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if !drain(&mut buf) {
            return;
        }
    }
}

fn iterations() -> usize {
    std::env::var("HERALD_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

const LARAVEL_EVAL: &[u8] = b"*6\r\n$4\r\nEVAL\r\n$61\r\nfor i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend\r\n$1\r\n0\r\n$27\r\n{\"event\":\"E\",\"data\":{\"a\":1}}\r\n$23\r\nlaravel_database_orders\r\n$6\r\nsecond\r\n";

/// A multibulk PUBLISH whose payload is `len` bytes.
fn publish_of(len: usize) -> Vec<u8> {
    let mut r = format!("*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n${len}\r\n").into_bytes();
    r.extend(vec![b'p'; len]);
    r.extend_from_slice(b"\r\n");
    r
}

#[test]
fn resp_decoder_never_panics_makes_progress_and_bounds_its_buffer() {
    let limits = Limits {
        max_bulk_len: 1024,
        max_multibulk_len: 64,
        max_inline_len: 256,
    };
    // Inputs past every limit, so that a missing check shows as a buffer that grows.
    let long_inline = [&b"PUBLISH news "[..], &[b'a'; 1200]].concat();
    let long_count = [&b"*"[..], &[b'1'; 1200]].concat();
    let at_bulk_limit = publish_of(limits.max_bulk_len);
    let past_bulk_limit = publish_of(4 * limits.max_bulk_len);
    let corpus: &[&[u8]] = &[
        LARAVEL_EVAL,
        b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n",
        b"PUBLISH news \"hello \\x41 \\n world\" 'it''s'\r\n",
        b"*2\r\n$4\r\nECHO\r\n$-1\r\n*0\r\n*-1\r\n",
        b"HELLO 3 AUTH default pw SETNAME predis\r\n",
        &long_inline,
        &long_count,
        &at_bulk_limit,
        &past_bulk_limit,
    ];
    // The most input the decoder may hold while it waits: an inline line or a `*`/`$`
    // line up to the inline limit, or a bulk up to the bulk limit (less its last byte).
    // One exception: a line whose `\r` is the last byte so far (the next byte decides).
    let bound = limits.max_inline_len.max(limits.max_bulk_len + 1);
    let mut largest_wait = 0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut requests, mut refusals) = (0, 0);
    for _ in 0..iterations() {
        let input = rng.input(corpus);
        let authenticated = rng.below(2) == 0;
        let mut decoder = RequestDecoder::new(limits, authenticated);
        feed_in_pieces(&mut rng, &input, |buf| loop {
            let before = buf.len();
            match decoder.decode(buf) {
                Ok(Some(args)) => {
                    requests += 1;
                    assert!(buf.len() < before, "a request consumed nothing");
                    assert!(args.len() <= limits.max_multibulk_len);
                    assert!(args.iter().all(|a| a.len() <= limits.max_bulk_len.max(256)));
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= bound || buf.ends_with(b"\r"),
                        "{} bytes held waiting, past the limits",
                        buf.len()
                    );
                    largest_wait = largest_wait.max(buf.len());
                    return true;
                }
                // The session answers the error and closes the connection.
                Err(e) => {
                    refusals += 1;
                    assert!(e.reply().starts_with(b"-ERR Protocol error: "));
                    return false;
                }
            }
        });
        for line in input.split(|&b| b == b'\n') {
            let _ = split_args(line);
            let _ = string2ll(line);
        }
    }
    // The mutations reach both outcomes often: the harness is not just feeding noise.
    let n = iterations();
    assert!(
        requests > n / 4 && refusals > n / 20,
        "{requests} requests, {refusals} refusals"
    );
    // And the inputs came near the bound: the check above was put to work.
    assert!(largest_wait > bound / 2, "largest wait {largest_wait}");
}

/// A masked client frame, as browsers send them.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn websocket_decoder_never_panics_and_bounds_messages_and_its_buffer() {
    let text = client_frame(
        true,
        0x1,
        br#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#,
    );
    let mut fragmented = client_frame(false, 0x1, b"42[\"subscribe\",");
    fragmented.extend(client_frame(true, 0x9, b"ping-between"));
    fragmented.extend(client_frame(true, 0x0, b"{\"channel\":\"orders\"}]"));
    let close = client_frame(true, 0x8, &[0x03, 0xe8, b'b', b'y', b'e']);
    let long = client_frame(true, 0x2, &[7u8; 300]);
    const MAX: usize = 512;
    // Past the limit, whole or in fragments: a missing check shows as a buffer that
    // grows or a message that is too big.
    let too_long = client_frame(true, 0x2, &[7u8; 3 * MAX]);
    let mut too_long_in_parts = client_frame(false, 0x2, &[7u8; 300]);
    too_long_in_parts.extend(client_frame(true, 0x0, &[7u8; 300]));
    let corpus: &[&[u8]] = &[
        &text,
        &fragmented,
        &close,
        &long,
        &too_long,
        &too_long_in_parts,
    ];
    // A frame header is at most 14 bytes; the decoder holds at most one frame.
    let bound = 14 + MAX;
    let mut rng = Rng(0xd1b5_4a32_d192_ed03);
    let (mut messages, mut closes) = (0, 0);
    for _ in 0..iterations() {
        let input = rng.input(corpus);
        let mut decoder = WsDecoder::default();
        feed_in_pieces(&mut rng, &input, |buf| loop {
            let before = buf.len();
            match decoder.decode(buf, MAX) {
                Ok(Some(msg)) => {
                    messages += 1;
                    assert!(buf.len() < before, "a message consumed nothing");
                    if let Message::Text(t) | Message::Binary(t) = msg {
                        assert!(t.len() <= MAX, "message over the limit: {}", t.len());
                    }
                }
                Ok(None) => {
                    assert!(buf.len() <= bound, "{} bytes held waiting", buf.len());
                    return true;
                }
                Err(e) => {
                    closes += 1;
                    assert!((1002..=1009).contains(&e.code), "close code {}", e.code);
                    return false;
                }
            }
        });
    }
    let n = iterations();
    assert!(
        messages > n / 4 && closes > n / 20,
        "{messages} messages, {closes} closes"
    );
}

#[test]
fn engine_io_and_socket_io_parsers_never_panic() {
    let corpus: &[&[u8]] = &[
        b"42[\"subscribe\",{\"channel\":\"private-orders.1\",\"auth\":{\"headers\":{}}}]",
        b"421[\"client event\",{\"channel\":\"presence-room\",\"event\":\"typing\",\"data\":{}}]",
        b"40{\"token\":\"t\"}",
        b"41",
        b"451-[\"upload\",{\"_placeholder\":true,\"num\":0}]",
        b"40/admin,",
        b"2probe",
        b"bAQID",
        b"b4AQID",
        b"12:42[\"a\",\"b\"]1:6",
        b"2:40\x1e42[\"x\"]",
    ];
    let mut rng = Rng(0xa076_1d64_78bd_642f);
    let mut packets = 0;
    for _ in 0..iterations() {
        let input = rng.input(corpus);
        let _ = packet::split_v3_binary(&input);
        let text = String::from_utf8_lossy(&input);
        let _ = packet::parse_engine(&text);
        let _ = packet::parse(&text);
        if let Some(rest) = text.strip_prefix('4') {
            packets += usize::from(packet::parse(rest).is_ok());
        }
        for eio in [Eio::V3, Eio::V4] {
            if let Ok(parts) = packet::split_payload(eio, &text) {
                for p in parts {
                    let _ = packet::parse_engine(p);
                }
            }
        }
    }
    let n = iterations();
    assert!(packets > n / 50 && packets < n, "{packets} of {n} parsed");
}
