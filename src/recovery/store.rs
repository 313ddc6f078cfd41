//! Sessions kept for the recovery window after an unclean disconnect.
//!
//! When a connection drops uncleanly (transport error or close, ping timeout, server
//! shutdown), its edge keeps what it needs to resume it (its id, channels, positions)
//! under the session's private id, for `--recovery-window` seconds. The client comes
//! back with that id and either finds it ([`Taken::Kept`]), or finds the window over
//! ([`Taken::WindowOver`], told apart from an id never seen for one more window), or
//! nothing ([`Taken::Unknown`]). A session is taken once.
//!
//! [`SessionStore`] is the seam: [`MemoryStore`] keeps them in this process, bounded
//! in number. In a cluster the socket.io edge also keeps a copy on Redis for any node to
//! take once (`SET … PX window`, `GETDEL`: `socketio/handover.rs`); the node's own store
//! still times the window and ends what is not taken.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What taking a session found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Kept(T),
    /// The window closed; the session was ended (its payload went to
    /// [`SessionStore::expire`]'s caller).
    WindowOver,
    Unknown,
}

/// The store of detached sessions, by private session id.
pub trait SessionStore<T>: Send + Sync {
    /// Keep `session` until `now` + the window; gives it back when the store is full.
    fn keep(&self, pid: &str, session: T, now: Instant) -> Result<(), T>;
    /// Take the session kept under `pid`, if its window is still open at `now`.
    fn take(&self, pid: &str, now: Instant) -> Taken<T>;
    /// The sessions whose window closed by `now`, each once: the caller ends them.
    fn expire(&self, now: Instant) -> Vec<T>;
    /// Sessions kept now (window open).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Entry<T> {
    until: Instant,
    /// None once expired: the id is remembered one more window, to say "window over".
    session: Option<T>,
}

struct Inner<T> {
    map: HashMap<Box<str>, Entry<T>>,
    /// Ids in the order they were kept (so in `until` order): what to expire next.
    order: VecDeque<(Instant, Box<str>)>,
    live: usize,
}

/// [`SessionStore`] in this process's memory, at most `max` sessions at once.
pub struct MemoryStore<T> {
    window: Duration,
    max: usize,
    inner: Mutex<Inner<T>>,
}

impl<T> MemoryStore<T> {
    pub fn new(window: Duration, max: usize) -> Self {
        MemoryStore {
            window,
            max,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                live: 0,
            }),
        }
    }
}

impl<T: Send> SessionStore<T> for MemoryStore<T> {
    fn keep(&self, pid: &str, session: T, now: Instant) -> Result<(), T> {
        let mut st = self.inner.lock();
        if st.live >= self.max {
            return Err(session);
        }
        let until = now + self.window;
        let old = st.map.insert(
            pid.into(),
            Entry {
                until,
                session: Some(session),
            },
        );
        if old.is_none_or(|e| e.session.is_none()) {
            st.live += 1;
        }
        st.order.push_back((until, pid.into()));
        Ok(())
    }

    fn take(&self, pid: &str, now: Instant) -> Taken<T> {
        let mut st = self.inner.lock();
        match st.map.get(pid) {
            None => Taken::Unknown,
            Some(e) if e.session.is_none() || now >= e.until => Taken::WindowOver,
            Some(_) => {
                st.live -= 1;
                let e = st.map.remove(pid).expect("just seen");
                Taken::Kept(e.session.expect("just seen"))
            }
        }
    }

    fn expire(&self, now: Instant) -> Vec<T> {
        let mut ended = Vec::new();
        let mut st = self.inner.lock();
        let st = &mut *st;
        while let Some((until, _)) = st.order.front() {
            if now < *until {
                break;
            }
            let (until, pid) = st.order.pop_front().expect("just seen");
            let Some(e) = st.map.get_mut(&pid) else {
                continue;
            };
            if e.until != until {
                continue; // kept again since, under a later entry of `order`
            }
            match e.session.take() {
                Some(s) => {
                    // Remembered as over for one more window.
                    st.live -= 1;
                    ended.push(s);
                    e.until = until + self.window;
                    st.order.push_back((e.until, pid));
                }
                None => {
                    st.map.remove(&pid);
                }
            }
        }
        ended
    }

    fn len(&self) -> usize {
        self.inner.lock().live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_for_the_window_taken_once_then_over_then_unknown() {
        let w = Duration::from_secs(10);
        let s = MemoryStore::new(w, 2);
        let t0 = Instant::now();
        s.keep("a", 1, t0).unwrap();
        s.keep("b", 2, t0).unwrap();
        assert_eq!(
            s.keep("c", 3, t0),
            Err(3),
            "full at --recovery-max-sessions"
        );
        assert_eq!(s.take("a", t0), Taken::Kept(1));
        assert_eq!(s.take("a", t0), Taken::Unknown, "taken once");
        assert_eq!(s.len(), 1);
        assert!(s.expire(t0 + w / 2).is_empty());
        assert_eq!(
            s.take("b", t0 + w),
            Taken::WindowOver,
            "not taken past the window"
        );
        assert_eq!(s.expire(t0 + w), vec![2], "ended once, by the sweep");
        assert!(s.is_empty());
        assert_eq!(s.take("b", t0 + w), Taken::WindowOver);
        assert!(s.expire(t0 + w * 2).is_empty());
        assert_eq!(
            s.take("b", t0 + w * 2),
            Taken::Unknown,
            "forgotten after one more window"
        );
    }
}
