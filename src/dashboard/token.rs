//! Who may see the dashboard: whoever presents `--dashboard-token`.
//!
//! A browser presents it once, in the address (`/dashboard?token=…`); the answer sets
//! an HttpOnly, SameSite=Strict cookie holding a digest of it, which the page's
//! requests and its WebSocket then carry (scripts on the page cannot read it, other
//! sites' pages cannot send it). A script may send `Authorization: Bearer <token>`.
//! Every comparison is of SHA-256 digests in constant time: neither the token's bytes
//! nor its length leak through timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "herald_dashboard";

/// The configured token, kept as digests only.
pub struct Token {
    /// SHA-256 of the token: what a presented token's digest is compared with.
    digest: [u8; 32],
    /// The cookie's value: hex of a digest of the token under another label, so the
    /// cookie is not the token (nor its plain digest).
    cookie: String,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl Token {
    pub fn new(token: &str) -> Token {
        Token {
            digest: sha256(&[token.as_bytes()]),
            cookie: hex::encode(sha256(&[b"herald dashboard cookie\0", token.as_bytes()])),
        }
    }

    /// Whether `given` is the token.
    pub fn is(&self, given: &str) -> bool {
        sha256(&[given.as_bytes()]).ct_eq(&self.digest).into()
    }

    /// Whether a `Cookie` header carries the dashboard's cookie with the right value.
    fn cookie_is_ours(&self, header: &str) -> bool {
        let mut ok = subtle::Choice::from(0);
        for pair in header.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == COOKIE {
                    let given = sha256(&[value.as_bytes()]);
                    ok |= given.ct_eq(&sha256(&[self.cookie.as_bytes()]));
                }
            }
        }
        ok.into()
    }

    /// Whether a request may see the dashboard: the token in the query, a Bearer
    /// header, or the cookie.
    pub fn admits(
        &self,
        query_token: Option<&str>,
        authorization: Option<&str>,
        cookie: Option<&str>,
    ) -> bool {
        let bearer = authorization.and_then(|a| a.strip_prefix("Bearer "));
        query_token.is_some_and(|t| self.is(t))
            | bearer.is_some_and(|t| self.is(t.trim()))
            | cookie.is_some_and(|c| self.cookie_is_ours(c))
    }

    /// The `Set-Cookie` value that admits this browser from now on (`Secure` when the
    /// HTTP port speaks TLS).
    pub fn set_cookie(&self, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!(
            "{COOKIE}={}; Path=/dashboard; HttpOnly; SameSite=Strict{secure}",
            self.cookie
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef-secret";

    #[test]
    fn only_the_token_admits() {
        let t = Token::new(T);
        assert!(t.admits(Some(T), None, None));
        assert!(!t.admits(Some("0123456789abcdef-secreT"), None, None));
        assert!(!t.admits(Some(""), None, None));
        assert!(!t.admits(None, None, None));
        assert!(t.admits(None, Some(&format!("Bearer {T}")), None));
        assert!(!t.admits(None, Some(&format!("Basic {T}")), None));
    }

    #[test]
    fn the_cookie_it_sets_admits_and_is_not_the_token() {
        let t = Token::new(T);
        let set = t.set_cookie(false);
        assert!(!set.contains(T));
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        assert!(t.set_cookie(true).ends_with("; Secure"));
        let pair = set.split(';').next().unwrap();
        assert!(t.admits(None, None, Some(&format!("a=1; {pair}; b=2"))));
        assert!(!t.admits(None, None, Some(&format!("{COOKIE}={T}"))));
        assert!(!t.admits(None, None, Some(&format!("x{pair}"))));
        let other = Token::new("another token, sixteen+");
        assert!(!other.admits(None, None, Some(pair)));
    }
}
