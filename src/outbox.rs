//! The bounded queue between publishers and one connection's writer.
//!
//! Every connection (RESP subscriber, socket.io or Pusher WebSocket) owns one. A
//! publisher pushes already-encoded, shared frames (`Bytes` clones, no copy) and never
//! waits; the connection's own task drains everything queued at once and writes it in
//! one go. The limits are Redis's `client-output-buffer-limit pubsub` policy: past the
//! hard limit, or above the soft limit for longer than its window, the outbox closes
//! itself and the connection is dropped with that reason, so memory cannot grow
//! without bound because one reader is slow.
//!
//! An idle outbox holds no heap memory: the queue allocates only when frames wait.
//!
//! A publication's fan-out runs inside [`delivering`]: the first of its frames pushed into
//! an empty outbox reads the clock (once per publication, not per connection), and the
//! outbox keeps that instant until it is drained, so the writer can observe how long
//! the oldest frame of each write waited (`herald_delivery_seconds`).

use bytes::Bytes;
use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// Redis's pubsub output-buffer policy, in bytes and seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Disconnect at once when queued bytes exceed this (0: no hard limit).
    pub hard_bytes: usize,
    /// Disconnect when queued bytes stay above this for `soft_window` (0: no soft limit).
    pub soft_bytes: usize,
    pub soft_window: Duration,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            hard_bytes: 32 * 1024 * 1024,
            soft_bytes: 8 * 1024 * 1024,
            soft_window: Duration::from_secs(60),
        }
    }
}

/// Why an outbox stopped taking frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Over the hard limit.
    HardLimit,
    /// Over the soft limit for longer than its window.
    SoftLimit,
    /// Closed by the server (kicked, shutdown, protocol decision), with a reason for logs.
    Server(&'static str),
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::HardLimit => f.write_str("output buffer over its hard limit"),
            Closed::SoftLimit => f.write_str("output buffer over its soft limit for too long"),
            Closed::Server(why) => f.write_str(why),
        }
    }
}

impl Closed {
    /// True when the connection was dropped for being too slow a reader.
    pub fn is_overflow(&self) -> bool {
        matches!(self, Closed::HardLimit | Closed::SoftLimit)
    }
}

/// Where this thread stands in a publication's fan-out.
#[derive(Clone, Copy)]
enum Fanout {
    /// Not in one: what is pushed (replies, handshakes) is not stamped.
    Outside,
    /// In one, before its first push.
    Begun,
    /// In one whose first frame was queued then.
    QueuedAt(Instant),
}

thread_local! {
    static FANOUT: Cell<Fanout> = const { Cell::new(Fanout::Outside) };
}

/// Run `fan_out` (one publication's delivery to its subscribers' outboxes): the frames it
/// pushes into empty outboxes are stamped with when its first frame was queued.
pub fn delivering<R>(fan_out: impl FnOnce() -> R) -> R {
    let outer = FANOUT.replace(Fanout::Begun);
    let r = fan_out();
    FANOUT.set(outer);
    r
}

/// The stamp of a frame pushed now into an empty outbox.
fn stamp() -> Option<Instant> {
    FANOUT.with(|f| match f.get() {
        Fanout::Outside => None,
        Fanout::QueuedAt(at) => Some(at),
        Fanout::Begun => {
            let now = Instant::now();
            f.set(Fanout::QueuedAt(now));
            Some(now)
        }
    })
}

#[derive(Default)]
struct Queue {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// When the oldest queued publication frame was queued (see [`delivering`]).
    oldest: Option<Instant>,
    soft_since: Option<Instant>,
    closed: Option<Closed>,
    waker: Option<Waker>,
    /// The task waiting in [`Outbox::closing`], woken when the outbox closes or goes
    /// over its soft limit.
    watcher: Option<Waker>,
}

/// One connection's queue of outgoing frames.
pub struct Outbox {
    state: Mutex<Queue>,
    limits: OutboxLimits,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Outbox {
            state: Mutex::new(Queue::default()),
            limits,
        }
    }

    /// Queue one frame. Returns false when the outbox is (or just became) closed.
    pub fn push(&self, frame: Bytes) -> bool {
        self.push_all(std::slice::from_ref(&frame))
    }

    /// Queue several frames that belong together (they are never split by a close).
    pub fn push_all(&self, frames: &[Bytes]) -> bool {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return false;
        }
        let added: usize = frames.iter().map(Bytes::len).sum();
        let total = st.bytes + added;
        let was_soft = st.soft_since.is_some();
        let verdict = self.check_limits(&mut st, total);
        if let Some(reason) = verdict {
            Self::shut(&mut st, reason);
            return false;
        }
        if !was_soft && st.soft_since.is_some() {
            // The soft window starts now: a watcher must time it.
            if let Some(w) = st.watcher.take() {
                w.wake();
            }
        }
        if st.queue.is_empty() {
            st.oldest = stamp();
        }
        st.queue.extend(frames.iter().cloned());
        st.bytes = total;
        if let Some(w) = st.waker.take() {
            drop(st);
            w.wake();
        }
        true
    }

    fn check_limits(&self, st: &mut Queue, total: usize) -> Option<Closed> {
        let l = &self.limits;
        if l.hard_bytes > 0 && total > l.hard_bytes {
            return Some(Closed::HardLimit);
        }
        if l.soft_bytes > 0 && total > l.soft_bytes {
            let since = *st.soft_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= l.soft_window {
                return Some(Closed::SoftLimit);
            }
        } else {
            st.soft_since = None;
        }
        None
    }

    fn shut(st: &mut Queue, reason: Closed) {
        st.closed = Some(reason);
        st.queue = VecDeque::new();
        st.bytes = 0;
        st.oldest = None;
        for w in [st.waker.take(), st.watcher.take()].into_iter().flatten() {
            w.wake();
        }
    }

    /// Close the outbox: queued frames are dropped and the drainer learns `reason`.
    pub fn close(&self, reason: Closed) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            Self::shut(&mut st, reason);
        }
    }

    /// Why the outbox closed, if it did.
    pub fn closed(&self) -> Option<Closed> {
        self.state.lock().closed.clone()
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Wait until frames are queued, then move all of them into `out`: when the oldest of
    /// them that a publication queued was queued, if any. Err when the outbox is closed.
    pub async fn drain(&self, out: &mut Vec<Bytes>) -> Result<Option<Instant>, Closed> {
        poll_fn(|cx| {
            let mut st = self.state.lock();
            if let Some(reason) = &st.closed {
                return Poll::Ready(Err(reason.clone()));
            }
            if st.queue.is_empty() {
                // The same task waits turn after turn: keep its waker rather than
                // cloning a new one (a reference count up and down) on every wait.
                if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            out.extend(st.queue.drain(..));
            st.bytes = 0;
            st.soft_since = None;
            if st.queue.capacity() > 64 {
                st.queue = VecDeque::new();
            }
            Poll::Ready(Ok(st.oldest.take()))
        })
        .await
    }

    /// Wait until the outbox closes, for a connection that cannot drain it now: a write
    /// blocked on a client that stopped reading, a long-polling client between requests.
    /// A push past the hard limit closes it at once; the soft limit's window is timed
    /// here, so it closes when the window ends even if no push comes to check it. One
    /// watcher at a time (a second one takes the place of the first).
    pub async fn closing(&self) -> Closed {
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        poll_fn(|cx| loop {
            let mut st = self.state.lock();
            if st.closed.is_none() {
                let total = st.bytes;
                if let Some(reason) = self.check_limits(&mut st, total) {
                    Self::shut(&mut st, reason);
                }
            }
            if let Some(reason) = &st.closed {
                return Poll::Ready(reason.clone());
            }
            if !st.watcher.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.watcher = Some(cx.waker().clone());
            }
            let Some(since) = st.soft_since else {
                return Poll::Pending;
            };
            drop(st);
            let end = tokio::time::Instant::from_std(since + self.limits.soft_window);
            let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(end)));
            if t.deadline() < end {
                t.as_mut().reset(end);
            }
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The window has run out: check the limits again, now (and a millisecond
            // later should the clocks disagree by a hair).
            t.as_mut()
                .reset(tokio::time::Instant::now() + Duration::from_millis(1));
        })
        .await
    }

    /// Move whatever is queued into `out` without waiting: as [`Outbox::drain`].
    pub fn take_now(&self, out: &mut Vec<Bytes>) -> Result<Option<Instant>, Closed> {
        let mut st = self.state.lock();
        if let Some(reason) = &st.closed {
            return Err(reason.clone());
        }
        out.extend(st.queue.drain(..));
        st.bytes = 0;
        st.soft_since = None;
        Ok(st.oldest.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(hard: usize, soft: usize, window_ms: u64) -> OutboxLimits {
        OutboxLimits {
            hard_bytes: hard,
            soft_bytes: soft,
            soft_window: Duration::from_millis(window_ms),
        }
    }

    #[tokio::test]
    async fn drains_everything_in_order() {
        let ob = Outbox::new(OutboxLimits::default());
        assert!(ob.push(Bytes::from_static(b"a")));
        assert!(ob.push_all(&[Bytes::from_static(b"b"), Bytes::from_static(b"c")]));
        let mut out = Vec::new();
        ob.drain(&mut out).await.unwrap();
        assert_eq!(out, vec!["a", "b", "c"]);
        assert_eq!(ob.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_publications_frames_carry_when_the_first_was_queued() {
        let (a, b) = (
            Outbox::new(OutboxLimits::default()),
            Outbox::new(OutboxLimits::default()),
        );
        assert!(a.push(Bytes::from_static(b"reply")));
        let mut out = Vec::new();
        assert_eq!(a.drain(&mut out).await, Ok(None), "not a publication's");
        let before = Instant::now();
        delivering(|| {
            a.push(Bytes::from_static(b"p1"));
            b.push(Bytes::from_static(b"p1"));
        });
        delivering(|| a.push(Bytes::from_static(b"p2")));
        let first = a.drain(&mut out).await.unwrap().expect("stamped");
        assert!(first >= before);
        assert_eq!(
            b.take_now(&mut out),
            Ok(Some(first)),
            "one clock read per fan-out"
        );
        assert!(a.push(Bytes::from_static(b"reply")));
        assert_eq!(a.take_now(&mut out), Ok(None), "taken with the frames");
    }

    #[test]
    fn hard_limit_closes_and_drops() {
        let ob = Outbox::new(limits(10, 0, 0));
        assert!(ob.push(Bytes::from(vec![0u8; 10])));
        assert!(!ob.push(Bytes::from_static(b"x")));
        assert_eq!(ob.closed(), Some(Closed::HardLimit));
        assert_eq!(ob.queued_bytes(), 0);
        assert!(
            !ob.push(Bytes::from_static(b"y")),
            "a closed outbox takes nothing"
        );
    }

    #[test]
    fn soft_limit_needs_its_window() {
        let ob = Outbox::new(limits(0, 4, 30));
        assert!(
            ob.push(Bytes::from(vec![0u8; 5])),
            "over soft: still inside the window"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(!ob.push(Bytes::from_static(b"x")));
        assert_eq!(ob.closed(), Some(Closed::SoftLimit));
    }

    #[tokio::test]
    async fn closing_is_woken_by_a_push_past_the_hard_limit() {
        let ob = std::sync::Arc::new(Outbox::new(limits(10, 0, 0)));
        let watcher = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.closing().await })
        };
        tokio::task::yield_now().await;
        assert!(ob.push(Bytes::from(vec![0u8; 10])));
        assert!(!ob.push(Bytes::from_static(b"x")));
        let closed = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        assert_eq!(closed.unwrap().unwrap(), Closed::HardLimit);
    }

    #[tokio::test]
    async fn closing_ends_the_soft_window_without_another_push() {
        let ob = std::sync::Arc::new(Outbox::new(limits(0, 4, 100)));
        let watcher = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.closing().await })
        };
        tokio::task::yield_now().await;
        let pushed = Instant::now();
        assert!(ob.push(Bytes::from(vec![0u8; 5])), "inside the window");
        let closed = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        assert_eq!(closed.unwrap().unwrap(), Closed::SoftLimit);
        assert!(pushed.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn close_wakes_the_drainer() {
        let ob = std::sync::Arc::new(Outbox::new(OutboxLimits::default()));
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.drain(&mut Vec::new()).await })
        };
        tokio::task::yield_now().await;
        ob.close(Closed::Server("test"));
        assert_eq!(waiter.await.unwrap(), Err(Closed::Server("test")));
    }
}
