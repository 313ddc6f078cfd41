//! What the fuzz targets share: cutting an input into reads as a socket would, reading
//! back the server frames herald encodes, and a plain reference glob matcher that the
//! `glob` target compares herald's Redis matcher with.

/// The largest read the targets simulate. Small, so a request or frame usually spans
/// several reads and the decoders' resume-in-the-middle paths run.
pub const MAX_PIECE: usize = 64;

/// Cut `data` into reads of 1..=[`MAX_PIECE`] bytes, the sizes drawn from `seed`
/// (xorshift: deterministic, so a crash reproduces from its input alone).
pub fn pieces(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed).wrapping_mul(0x0100_0000_01b3);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Mostly small reads, sometimes a full one.
        let n = if state % 8 == 0 {
            MAX_PIECE
        } else {
            1 + (state >> 8) as usize % 16
        };
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// A masked client frame, as a browser sends it.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
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
    let mask = [0xa5, 0x01, 0x7e, 0x3c];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The payload of one complete, unmasked server text frame; panics if `frame` is not
/// exactly that (a broken frame would break every client it is sent to).
pub fn server_text_payload(frame: &[u8]) -> &[u8] {
    assert!(frame.len() >= 2, "frame too short");
    assert_eq!(frame[0], 0x81, "not a final text frame");
    assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
    let (len, header) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => (
            u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    assert_eq!(frame.len(), header + len, "frame length field is wrong");
    if header == 4 {
        assert!(len >= 126, "length not in its shortest form");
    }
    if header == 10 {
        assert!(len > 0xffff, "length not in its shortest form");
    }
    &frame[header..]
}

/// One element of a glob pattern.
enum Token {
    Star,
    Any,
    /// A `[...]` class: which bytes it matches (negation already applied).
    Class(Box<[bool; 256]>),
    Literal(u8),
}

/// Tokenize a pattern by Redis's rules (`stringmatchlen` in util.c): `\x` is a literal
/// `x` unless the backslash is last; a class runs to `]` or the end of the pattern,
/// `^` first negates it, `a-z` is a range (swapped when reversed), `\x` in it is `x`.
fn tokens(p: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => out.push(Token::Star),
            b'?' => out.push(Token::Any),
            b'\\' if i + 1 < p.len() => {
                i += 1;
                out.push(Token::Literal(p[i]));
            }
            b'[' => {
                i += 1;
                let negate = p.get(i) == Some(&b'^');
                if negate {
                    i += 1;
                }
                let mut set = Box::new([false; 256]);
                while i < p.len() && p[i] != b']' {
                    if p[i] == b'\\' && i + 1 < p.len() {
                        set[p[i + 1] as usize] = true;
                        i += 2;
                    } else if i + 2 < p.len() && p[i + 1] == b'-' {
                        let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
                        for b in lo..=hi {
                            set[b as usize] = true;
                        }
                        i += 3;
                    } else {
                        set[p[i] as usize] = true;
                        i += 1;
                    }
                }
                if negate {
                    set.iter_mut().for_each(|b| *b = !*b);
                }
                out.push(Token::Class(set));
            }
            b => out.push(Token::Literal(b)),
        }
        i += 1;
    }
    out
}

/// Star groups (runs of `*`) outside classes and escapes: how deep herald's matcher
/// may recurse, which it caps at 1000 as Redis does.
pub fn star_groups(p: &[u8]) -> usize {
    let mut groups = 0;
    let mut in_star = false;
    for tok in tokens(p) {
        let star = matches!(tok, Token::Star);
        if star && !in_star {
            groups += 1;
        }
        in_star = star;
    }
    groups
}

/// Redis's glob semantics by dynamic programming, O(pattern × subject) with no
/// backtracking: every token but `*` takes one byte, `*` takes any number. One quirk
/// of Redis 7's loop: an empty subject matches only the empty pattern.
pub fn reference_glob(pattern: &[u8], subject: &[u8]) -> bool {
    if subject.is_empty() {
        return pattern.is_empty();
    }
    let t = tokens(pattern);
    // reach[j]: the tokens so far can match exactly subject[..j].
    let mut reach = vec![false; subject.len() + 1];
    reach[0] = true;
    for tok in &t {
        let mut next = vec![false; subject.len() + 1];
        match tok {
            Token::Star => {
                let mut seen = false;
                for j in 0..=subject.len() {
                    seen |= reach[j];
                    next[j] = seen;
                }
            }
            _ => {
                for j in 0..subject.len() {
                    if reach[j] {
                        let c = subject[j];
                        next[j + 1] = match tok {
                            Token::Any => true,
                            Token::Class(set) => set[c as usize],
                            Token::Literal(l) => *l == c,
                            Token::Star => unreachable!(),
                        };
                    }
                }
            }
        }
        reach = next;
    }
    reach[subject.len()]
}
