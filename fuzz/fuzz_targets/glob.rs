//! Redis glob patterns (src/broker/glob.rs): PSUBSCRIBE and `PUBSUB CHANNELS`
//! patterns, both the pattern and the channel name from the network.
//!
//! Input: one byte giving the pattern's length (modulo what follows), then the pattern,
//! then the channel name.
//!
//! Asserts:
//! - no panic, and matching ends (libFuzzer's timeout, and its slow-unit report);
//! - herald's backtracking matcher agrees with a plain dynamic-programming matcher of
//!   Redis's rules (herald_fuzz::reference_glob) whenever the pattern is within the
//!   1000-star nesting cap;
//! - a pattern `is_literal` calls literal matches exactly itself.

#![no_main]

use herald::broker::glob::{is_literal, matches};
use herald_fuzz::{reference_glob, star_groups};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (pattern, subject) = rest.split_at(usize::from(n) % (rest.len() + 1));
    let got = matches(pattern, subject);
    if star_groups(pattern) <= 1000 {
        assert_eq!(
            got,
            reference_glob(pattern, subject),
            "pattern {pattern:?} subject {subject:?}"
        );
    }
    if is_literal(pattern) {
        assert_eq!(got, pattern == subject);
    }
});
