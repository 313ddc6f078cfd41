//! Redis's glob matcher, reproduced byte for byte in behaviour.
//!
//! PSUBSCRIBE and `PUBSUB CHANNELS pattern` must match exactly the channels Redis 7
//! matches, edge cases included (unterminated classes, swapped ranges, trailing
//! backslashes, the nesting cap that protects against abusive patterns), because
//! clients such as the classic socket.io bridge rely on `*` and friends behaving as
//! Redis's `stringmatchlen` does.

/// Deeper recursion than this is treated as "no match", as Redis does.
const MAX_NESTING: usize = 1000;

/// Does `pattern` match `subject` under Redis's glob rules (case-sensitive)?
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, subject, &mut skip_longer, 0)
}

/// True when the pattern has no glob metacharacter, so it can only match itself.
pub fn is_literal(pattern: &[u8]) -> bool {
    !pattern
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// The pattern's bytes before its first metacharacter: every name it matches starts
/// with them, so a name that does not can be turned away without matching.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// The byte at `i`, or NUL past the end: the C original reads the string's terminator
/// there, and its edge-case behaviour depends on that.
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn match_from(pat: &[u8], s: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    let (mut p, mut si) = (0usize, 0usize);
    while p < pat.len() && si < s.len() {
        match pat[p] {
            b'*' => {
                while p < pat.len() && at(pat, p + 1) == b'*' {
                    p += 1;
                }
                if pat.len() - p == 1 {
                    return true;
                }
                while si < s.len() {
                    if match_from(&pat[p + 1..], &s[si..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                // Nothing after this star matches anywhere in the rest: an earlier star
                // trying a longer span cannot help either.
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                p += 1;
                let negate = at(pat, p) == b'^';
                if negate {
                    p += 1;
                }
                let c = s[si];
                let mut hit = false;
                loop {
                    let left = pat.len().saturating_sub(p);
                    if at(pat, p) == b'\\' && left >= 2 {
                        p += 1;
                        hit |= pat[p] == c;
                    } else if at(pat, p) == b']' {
                        break;
                    } else if left == 0 {
                        // Unterminated class: it ends with the pattern.
                        p -= 1;
                        break;
                    } else if left >= 3 && pat[p + 1] == b'-' {
                        let (lo, hi) = if pat[p] <= pat[p + 2] {
                            (pat[p], pat[p + 2])
                        } else {
                            (pat[p + 2], pat[p])
                        };
                        p += 2;
                        hit |= (lo..=hi).contains(&c);
                    } else {
                        hit |= pat[p] == c;
                    }
                    p += 1;
                }
                if hit == negate {
                    return false;
                }
                si += 1;
            }
            other => {
                let lit = if other == b'\\' && pat.len() - p >= 2 {
                    p += 1;
                    pat[p]
                } else {
                    other
                };
                if lit != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        p += 1;
        if si == s.len() {
            while at(pat, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p >= pat.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::{literal_prefix, matches};

    /// Every match is checked against the literal prefix too.
    fn m(p: &str, s: &str) -> bool {
        let (p, s) = (p.as_bytes(), s.as_bytes());
        let matched = matches(p, s);
        assert!(!matched || s.starts_with(literal_prefix(p)), "{p:?} {s:?}");
        matched
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(b"cache-*"), b"cache-");
        assert_eq!(literal_prefix(b"a?b"), b"a");
        assert_eq!(literal_prefix(b"[ab]c"), b"");
        assert_eq!(literal_prefix(b"a\\*"), b"a");
        assert_eq!(literal_prefix(b"plain"), b"plain");
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*", "anything"));
        assert!(m("laravel_database_*", "laravel_database_orders.1"));
        assert!(!m("laravel_database_*", "other"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a**", "a"));
        assert!(m("a*", "a"));
        assert!(!m("*a", ""));
        // Redis 7 enters its loop only with both sides non-empty.
        assert!(!m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "ranges are swapped when reversed");
        assert!(m("[\\]]", "]"));
        assert!(
            m("[abc", "c"),
            "an unterminated class ends with the pattern"
        );
        assert!(!m("[abc", "d"));
        // Redis reads `a-]` as the range a..] (swapped to ]..a), so the class is unterminated.
        assert!(!m("[a-]", "-"));
        assert!(m("[a-]", "^"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("a\\", "a\\"), "a trailing backslash is literal");
        assert!(m("\\?", "?"));
        assert!(!m("\\?", "x"));
    }

    #[test]
    fn abusive_patterns_end() {
        let pat = "a*".repeat(2000) + "b";
        let s = "a".repeat(4000);
        assert!(!m(&pat, &s));
    }
}
