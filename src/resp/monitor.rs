//! MONITOR: every command herald runs, shown as Redis shows it to `redis-cli monitor`.
//!
//! "Is my app's broadcast reaching the server?" is the first question when a Laravel
//! event does not arrive, and `redis-cli monitor` is how it has always been answered.
//! Each command a client runs is one line, `+<unix time>.<µs> [<db> <addr>] "arg" ...`,
//! its arguments quoted and escaped as Redis's `sdscatrepr` does, passwords shown as
//! `(redacted)`. Laravel's broadcast script adds one `[<db> lua] "publish" ...` line per
//! channel after its `EVAL`, as Redis's Lua does. Like Redis: commands refused before
//! they run (unknown, wrong arity, NOAUTH) and admin commands (CONFIG, CLIENT LIST/KILL,
//! MONITOR) are not shown. With no monitor connected, a command costs one atomic load.

use super::client::Client;
use crate::broker::SubscriberId;
use bytes::Bytes;
use parking_lot::Mutex;
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The connections in MONITOR mode.
#[derive(Default)]
pub struct Monitors {
    clients: Mutex<Vec<Arc<Client>>>,
    count: AtomicUsize,
}

impl Monitors {
    /// Whether anyone is watching: the per-command check.
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    pub fn add(&self, client: Arc<Client>) {
        let mut clients = self.clients.lock();
        if !clients.iter().any(|c| c.id == client.id) {
            clients.push(client);
            self.count.store(clients.len(), Ordering::Relaxed);
        }
    }

    pub fn remove(&self, id: SubscriberId) {
        let mut clients = self.clients.lock();
        clients.retain(|c| c.id != id);
        self.count.store(clients.len(), Ordering::Relaxed);
    }

    /// Send `lines` to every monitor, in order.
    pub fn feed(&self, lines: &[Bytes]) {
        for c in self.clients.lock().iter() {
            if !c.outbox.push_all(lines) {
                c.kicked.notify_one();
            }
        }
    }
}

/// One monitor line: `source` is the client's address, or `lua` for a script's calls.
pub fn line(at: SystemTime, db: i64, source: &str, args: &[Bytes]) -> Bytes {
    let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut s = format!("+{}.{:06} [{db} {source}]", t.as_secs(), t.subsec_micros());
    let redact = redacted(args);
    for (i, arg) in args.iter().enumerate() {
        s.push(' ');
        if redact.contains(&i) {
            s.push_str("\"(redacted)\"");
        } else {
            quote(&mut s, arg);
        }
    }
    s.push_str("\r\n");
    Bytes::from(s)
}

/// The positions of passwords: every argument of AUTH, the two after HELLO's AUTH.
fn redacted(args: &[Bytes]) -> Vec<usize> {
    let name = args.first().map(|a| a.to_ascii_lowercase());
    match name.as_deref() {
        Some(b"auth") => (1..args.len()).collect(),
        Some(b"hello") => args
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"auth"))
            .map_or(Vec::new(), |at| vec![at + 1, at + 2]),
        _ => Vec::new(),
    }
}

/// `arg` in double quotes, escaped as Redis's `sdscatrepr`.
fn quote(out: &mut String, arg: &[u8]) {
    out.push('"');
    for &b in arg {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(a: &[&[u8]]) -> Vec<Bytes> {
        a.iter().map(|x| Bytes::copy_from_slice(x)).collect()
    }

    #[test]
    fn lines_as_redis_prints_them() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_674_973_109_883);
        assert_eq!(
            line(at, 0, "127.0.0.1:56872", &args(&[b"publish", b"orders", b"hi \"there\"\nx"])),
            "+1795674973.109883 [0 127.0.0.1:56872] \"publish\" \"orders\" \"hi \\\"there\\\"\\nx\"\r\n"
        );
        assert_eq!(
            line(
                at,
                3,
                "lua",
                &args(&[b"publish", b"a\\b", b"\x00\xff\t\r\x07\x08"])
            ),
            "+1795674973.109883 [3 lua] \"publish\" \"a\\\\b\" \"\\x00\\xff\\t\\r\\a\\b\"\r\n"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        let at = UNIX_EPOCH;
        assert!(line(at, 0, "x", &args(&[b"AUTH", b"user", b"pw"]))
            .ends_with(b"\"AUTH\" \"(redacted)\" \"(redacted)\"\r\n"));
        assert!(line(
            at,
            0,
            "x",
            &args(&[b"hello", b"3", b"auth", b"default", b"pw", b"setname", b"n"])
        )
        .ends_with(
            b"\"hello\" \"3\" \"auth\" \"(redacted)\" \"(redacted)\" \"setname\" \"n\"\r\n"
        ));
    }
}
