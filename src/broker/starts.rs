//! How the names the held stream patterns match can start, checked without loading them.
//!
//! Every server holds stream patterns (each Pusher app its four cache-channel patterns),
//! so every publication would load the pattern list and match each pattern. Loading the
//! read-mostly list and four matches cost more than the rest of a publication to one
//! subscriber (measured with callgrind: ~350 instructions against ~550). Most channels
//! start with none of the patterns' literal prefixes (`cache-`, `private-cache-`, ...),
//! and that is decided here from a few words in atomics: the first 16 bytes of up to
//! [`KEYS`] literal prefixes. With more prefixes, or a pattern with none (`*`), every
//! name may match.
//!
//! It only ever widens: a prefix added stays after its pattern is let go (that costs a
//! look at the list, never a delivery).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The most prefixes kept; past this any name may match.
const KEYS: usize = 8;

#[derive(Default)]
struct Key {
    /// The prefix's first 16 bytes as two little-endian words, and the masks of the
    /// bytes that count.
    words: [AtomicU64; 2],
    masks: [AtomicU64; 2],
    len: AtomicUsize,
}

#[derive(Default)]
pub struct Starts {
    keys: [Key; KEYS],
    used: AtomicUsize,
    any: AtomicBool,
    adding: Mutex<()>,
}

/// `name`'s first 16 bytes as two little-endian words, zero past its end.
fn words(name: &[u8]) -> [u64; 2] {
    let mut head = [0u8; 16];
    let n = name.len().min(16);
    head[..n].copy_from_slice(&name[..n]);
    let (a, b) = head.split_at(8);
    [
        u64::from_le_bytes(a.try_into().unwrap()),
        u64::from_le_bytes(b.try_into().unwrap()),
    ]
}

/// The masks of a prefix's first `len` bytes (at most 16) in [`words`]' form.
fn masks(len: usize) -> [u64; 2] {
    let mask = |bytes: usize| match bytes {
        0 => 0,
        8.. => u64::MAX,
        n => (1u64 << (8 * n)) - 1,
    };
    [mask(len.min(8)), mask(len.saturating_sub(8).min(8))]
}

impl Starts {
    /// Names starting with `prefix` may match from now on (an empty one: every name).
    pub fn add(&self, prefix: &[u8]) {
        let _one = self.adding.lock();
        let used = self.used.load(Ordering::Relaxed);
        if prefix.is_empty() || used == KEYS {
            self.any.store(true, Ordering::Release);
            return;
        }
        let key = &self.keys[used];
        let (w, m) = (words(prefix), masks(prefix.len()));
        for i in 0..2 {
            key.words[i].store(w[i] & m[i], Ordering::Relaxed);
            key.masks[i].store(m[i], Ordering::Relaxed);
        }
        key.len.store(prefix.len().min(16), Ordering::Relaxed);
        self.used.store(used + 1, Ordering::Release);
    }

    /// Whether some held pattern may match `name`.
    #[inline]
    pub fn may_match(&self, name: &[u8]) -> bool {
        let used = self.used.load(Ordering::Acquire);
        if self.any.load(Ordering::Acquire) {
            return true;
        }
        if used == 0 {
            return false;
        }
        let w = words(name);
        self.keys[..used].iter().any(|k| {
            name.len() >= k.len.load(Ordering::Relaxed)
                && (w[0] & k.masks[0].load(Ordering::Relaxed)) == k.words[0].load(Ordering::Relaxed)
                && (w[1] & k.masks[1].load(Ordering::Relaxed)) == k.words[1].load(Ordering::Relaxed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_prefixes_only() {
        let s = Starts::default();
        assert!(!s.may_match(b"cache-x"), "nothing held");
        for p in [
            "cache-",
            "private-cache-",
            "private-encrypted-cache-",
            "presence-cache-",
        ] {
            s.add(p.as_bytes());
        }
        for name in [
            "cache-",
            "cache-prices",
            "private-cache-x",
            "private-encrypted-cache-x",
            // Only 16 bytes are compared: the glob turns these away.
            "private-encrypted-cachf",
            "private-encrypted-x",
            "presence-cache-room",
        ] {
            assert!(s.may_match(name.as_bytes()), "{name}");
        }
        for name in [
            "",
            "cache",
            "orders.1",
            "private-orders.1",
            "private-App.Models.User.1",
            "presence-room",
            "xcache-",
        ] {
            assert!(!s.may_match(name.as_bytes()), "{name}");
        }
        s.add(b"");
        assert!(s.may_match(b"orders.1"), "a pattern with no literal prefix");
    }

    #[test]
    fn past_the_kept_prefixes_every_name_may_match() {
        let s = Starts::default();
        for i in 0..KEYS {
            s.add(format!("p{i}-").as_bytes());
        }
        assert!(!s.may_match(b"orders.1"));
        s.add(b"one-too-many-");
        assert!(s.may_match(b"orders.1"));
    }
}
