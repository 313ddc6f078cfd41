//! Pusher recovery: a client whose connection dropped uncleanly asks, on its new
//! connection, for what it missed on each channel, and herald replays it exactly as it
//! was first sent, before anything live, with no gap and no duplicate.
//!
//! Pusher's protocol has no offsets and pusher-js hands the application only `event`,
//! `channel`, `data` and `user_id`, so nothing is added to any frame: payloads stay
//! byte-identical to what Pusher sends. Instead herald remembers, for each connection
//! of an app with `recovery = true` and for the recovery window after it closed
//! uncleanly, a [`Mark`] per channel: the broker offset after which it received every
//! publication of the channel ([`super::channels::Subscribed::start`], exact), the cache
//! channel's event sent on subscribing, and its socket id (the publications naming it,
//! `toOthers()` and its own client events, were never sent to it). That is the ordered
//! list of what it was sent. The client-side snippet (`examples/pusher-recovery/`)
//! counts the events each channel received and sends, as soon as the new connection is
//! established and before pusher-js re-subscribes, `herald:resume` with its previous
//! socket id and those counts. When the new connection's subscription to a listed
//! channel succeeds (private and presence channels re-authorised as always: the
//! subscription is the authorisation), herald reads the channel's history after the
//! mark ([`crate::broker::Broker::since`]), skips what the client counted, and writes
//! the rest. Each subscription also counts what it was sent ([`Counted`], read when the
//! connection closes or is resumed while herald still holds it open), so the history
//! need reach back only to where the client stopped: after the count when the client
//! received all of it, back from the count's offset when some frames were lost in
//! flight. It then writes the rest, then `herald:resumed`, in the same write as
//! `subscription_succeeded` and before any live frame of the channel: live frames reach the connection through its
//! outbox, which its task drains only after the session's own replies are written, and
//! the replay stops at the new subscription's own mark, after which the outbox holds
//! every publication. So no frame has to be held back.
//!
//! What cannot be replayed whole is refused, never replayed in part: the history no
//! longer reaches back (`too_old`), herald keeps no closed connection under that socket
//! id in this app (`window_over`: never known, expired, forgotten at the bound), the
//! channel was not among its subscriptions or the count does not fit (`unknown`), the
//! channel was subscribed on the new connection before the request (`late`), the app
//! has recovery off (`disabled`). Each is counted and logged; the app reloads its state.
//!
//! A resumed subscription's mark is the old one, up to where the replay stopped, then
//! its own: a client that drops again before it saw `herald:resumed` counts on from the
//! old count, one that saw it starts again from zero and says so.
//!
//! The kept marks live in [`KeptMarks`], one store for all apps, bounded by
//! `--pusher-resume-sessions` (the oldest closed connection is forgotten first). In a
//! cluster they are also kept in Redis ([`super::handover`]), and a resumed subscription
//! reads its channel's history there ([`Source::Read`]).

use super::channels::Connection;
use super::protocol;
use crate::broker::{Broker, Namespace, Offset, Origin, Publication, SubscriberId};
use crate::laravel::Envelope;
use crate::metrics;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Why a channel was not resumed: the `reason` of `herald:resume_failed`, named by
/// [`metrics::PUSHER_RESUME_REASONS`] in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    TooOld,
    WindowOver,
    Unknown,
    Late,
    Disabled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        metrics::PUSHER_RESUME_REASONS[self as usize]
    }
}

/// The cache channel's event a connection was sent on subscribing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cached {
    At(Offset),
    /// Published while the channel had no stream: not in the history.
    Unnumbered,
}

/// One stretch of what a connection was sent on a channel: the cached event, if any,
/// then every publication after `after` (up to `until`) not naming `except`; and, once
/// known, how many of those there were up to an offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub cached: Option<Cached>,
    pub after: Offset,
    pub until: Option<Offset>,
    pub except: Arc<str>,
    pub counted: Option<Counted>,
}

/// `items` of a segment (its cached event included) were at or before `through`: taken
/// from the subscription's count of what it was sent ([`super::channels::Channels::sent`])
/// when its connection closed or was resumed, so a resume reads the history back to
/// where the client stopped, not to where it subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub items: usize,
    pub through: Offset,
}

/// What a connection's client was sent on one channel, in order: the segments; those
/// from `live_from` on are the connection's own subscription (those before it, the
/// replay a resume owed it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub segments: Vec<Segment>,
    pub live_from: usize,
}

impl Mark {
    /// A plain subscription: sent the cached event, if any, then everything after `after`.
    pub fn subscribed(cached: Option<Cached>, after: Offset, socket: &Arc<str>) -> Mark {
        Mark {
            segments: vec![Segment {
                cached,
                after,
                until: None,
                except: socket.clone(),
                counted: None,
            }],
            live_from: 0,
        }
    }

    /// Its own subscription (the last segment, when it has one) was `sent` numbered
    /// frames up to `through`.
    pub fn count(&mut self, sent: u64, through: Offset) {
        if self.live_from < self.segments.len() {
            let live = self.segments.last_mut().expect("live_from < len");
            let items = usize::try_from(sent).unwrap_or(usize::MAX);
            live.counted = Some(Counted {
                items: items.saturating_add(usize::from(live.cached.is_some())),
                through,
            });
        }
    }

    /// The offset a resume reads the channel's history after, at the earliest (None:
    /// nothing to read): where the segments the client counted from begin.
    pub fn reads_after(&self, resumed: bool) -> Option<Offset> {
        let segments = self.counted_from(resumed);
        let starts = segments.iter().flat_map(|s| {
            let before_cached = s.cached_at().map(|c| Offset {
                seq: c.seq.saturating_sub(1),
                ..c
            });
            [Some(s.after), before_cached].into_iter().flatten()
        });
        starts.min_by_key(|o| o.seq)
    }

    /// What the client counted from: everything, or (`resumed`: it saw `herald:resumed`
    /// and started again from zero) the live part only.
    fn counted_from(&self, resumed: bool) -> &[Segment] {
        if resumed {
            &self.segments[self.live_from.min(self.segments.len())..]
        } else {
            &self.segments
        }
    }
}

/// One connection's marks, while it is open and for the window after it closed.
pub struct Marks {
    app: SubscriberId,
    /// The app's id, which names its marks on the backplane ([`super::handover`]).
    pub app_id: Arc<str>,
    conn: Weak<Connection>,
    state: Mutex<MarksState>,
}

#[derive(Default)]
struct MarksState {
    channels: Vec<(Box<str>, Mark)>,
    /// Set or removed a mark since [`Marks::changes`] last looked.
    changed: bool,
    closed: Option<Instant>,
    taken: bool,
}

impl Marks {
    pub fn set(&self, channel: &str, mark: Mark) {
        let mut s = self.state.lock();
        s.changed = true;
        match s.channels.iter_mut().find(|(c, _)| &**c == channel) {
            Some((_, m)) => *m = mark,
            None => s.channels.push((channel.into(), mark)),
        }
    }

    pub fn remove(&self, channel: &str) {
        let mut s = self.state.lock();
        s.changed = true;
        s.channels.retain(|(c, _)| &**c != channel);
    }

    /// Its marks now.
    pub fn channels(&self) -> Vec<(Box<str>, Mark)> {
        self.state.lock().channels.clone()
    }

    /// Its marks, if they changed since the last call.
    pub fn changes(&self) -> Option<Vec<(Box<str>, Mark)>> {
        let mut s = self.state.lock();
        std::mem::take(&mut s.changed).then(|| s.channels.clone())
    }

    /// The subscription to `channel` was `sent` numbered frames up to `through`.
    pub fn count(&self, channel: &str, sent: u64, through: Offset) {
        let mut s = self.state.lock();
        if let Some((_, mark)) = s.channels.iter_mut().find(|(c, _)| &**c == channel) {
            mark.count(sent, through);
        }
    }
}

/// The marks of every recovery app's connections, open ones and those closed within
/// the window, found by socket id.
pub struct KeptMarks {
    window: Duration,
    /// Closed connections kept (the close queue's length bound).
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_socket: HashMap<Arc<str>, Arc<Marks>>,
    /// Closed connections, oldest first (taken ones stay until they reach the front).
    closed: VecDeque<(Instant, Arc<str>)>,
}

impl KeptMarks {
    pub fn new(window: Duration, max: usize) -> Arc<KeptMarks> {
        Arc::new(KeptMarks {
            window,
            max,
            inner: Mutex::default(),
        })
    }

    /// A new connection of app `app` (`app_id`).
    pub fn open(
        &self,
        socket: &Arc<str>,
        (app, app_id): (SubscriberId, &str),
        conn: &Arc<Connection>,
    ) -> Arc<Marks> {
        let marks = Arc::new(Marks {
            app,
            app_id: app_id.into(),
            conn: Arc::downgrade(conn),
            state: Mutex::default(),
        });
        (self.inner.lock().by_socket).insert(socket.clone(), marks.clone());
        marks
    }

    /// The connection closed; kept for the window if `resumable` (an unclean close) and
    /// it has channels to resume, else forgotten. Whether it was kept.
    pub fn close(
        &self,
        socket: &Arc<str>,
        marks: &Arc<Marks>,
        resumable: bool,
        now: Instant,
    ) -> bool {
        let keep = {
            let mut s = marks.state.lock();
            if s.taken {
                return false;
            }
            s.closed = Some(now);
            resumable && !s.channels.is_empty() && self.max > 0
        };
        let mut inner = self.inner.lock();
        if !keep {
            inner.by_socket.remove(socket);
            return false;
        }
        inner.closed.push_back((now, socket.clone()));
        metrics::PUSHER_RESUME_KEPT.inc();
        let mut evicted = 0;
        while inner.closed.len() > self.max {
            let (_, socket) = inner.closed.pop_front().expect("longer than max >= 0");
            if inner.forget(&socket) {
                evicted += 1;
            }
        }
        inner.expire(now, self.window);
        drop(inner);
        if evicted > 0 {
            metrics::PUSHER_RESUME_EVICTED.add(evicted);
            let total = metrics::PUSHER_RESUME_EVICTED.get();
            if total.is_power_of_two() || total.is_multiple_of(1000) {
                tracing::warn!(
                    evicted_total = total,
                    max = self.max,
                    "Pusher recovery: closed connections over --pusher-resume-sessions; \
                     the oldest are forgotten (their clients will be told window_over)"
                );
            }
        }
        true
    }

    /// How long a closed connection's marks are kept.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The open connections' marks, by socket id.
    pub fn open_connections(&self) -> Vec<(Arc<str>, Arc<Marks>)> {
        let all: Vec<_> = (self.inner.lock().by_socket.iter())
            .map(|(socket, marks)| (socket.clone(), marks.clone()))
            .collect();
        all.into_iter()
            .filter(|(_, m)| {
                let s = m.state.lock();
                s.closed.is_none() && !s.taken
            })
            .collect()
    }

    /// Take the marks of `socket` for app `app`'s resuming connection: its marks. An
    /// open connection (herald has not yet seen it die) is closed: its client is back
    /// on another one; `sent` gives what it was sent on each channel (see [`Marks::count`]).
    pub fn take(
        &self,
        socket: &str,
        app: SubscriberId,
        now: Instant,
        sent: impl Fn(&str, SubscriberId) -> Option<(u64, Offset)>,
    ) -> Result<Vec<(Box<str>, Mark)>, Reason> {
        let marks = {
            let mut inner = self.inner.lock();
            inner.expire(now, self.window);
            let marks = inner.by_socket.get(socket).cloned();
            let marks = marks.filter(|t| t.app == app).ok_or(Reason::WindowOver)?;
            inner.by_socket.remove(socket);
            marks
        };
        let (mut channels, open) = {
            let mut s = marks.state.lock();
            s.taken = true;
            let open = match s.closed {
                Some(_) => {
                    metrics::PUSHER_RESUME_KEPT.dec();
                    None
                }
                None => marks.conn.upgrade(),
            };
            (std::mem::take(&mut s.channels), open)
        };
        if let Some(conn) = open {
            conn.terminate(&[protocol::error(4200, "Resumed on another connection")]);
            metrics::PUSHER_RESUME_TAKEN_OVER.inc();
            for (channel, mark) in &mut channels {
                if let Some((n, through)) = sent(channel, conn.id) {
                    mark.count(n, through);
                }
            }
        }
        Ok(channels)
    }
}

impl Inner {
    /// Drop `socket`'s marks if it is a kept closed one; whether it was.
    fn forget(&mut self, socket: &str) -> bool {
        let closed = (self.by_socket.get(socket)).is_some_and(|t| t.state.lock().closed.is_some());
        if closed {
            self.by_socket.remove(socket);
            metrics::PUSHER_RESUME_KEPT.dec();
        }
        closed
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.closed.front() {
            if now.saturating_duration_since(*at) < window {
                return;
            }
            let (_, socket) = self.closed.pop_front().expect("has a front");
            self.forget(&socket);
        }
    }
}

/// One publication of the history, as the connection was sent it.
struct Sent {
    offset: Offset,
    origin: Origin,
    envelope: Envelope,
}

/// What was sent and now is owed.
enum Item {
    Sent(Sent),
    /// An unnumbered cached event: not in the history.
    Unnumbered,
}

/// Where a resume reads a channel's history.
pub enum Source<'a> {
    /// The node's broker ([`Broker::since`]).
    Broker(&'a dyn Broker, &'a Namespace),
    /// What was read from the cluster's history before the subscription: every
    /// publication after `after`, in order.
    Read {
        after: Offset,
        publications: &'a [Publication],
    },
}

/// The frames `mark`'s client has not received on `channel`, given that it counted
/// `received` events (from the live part, if `resumed`), up to `upto` (the new
/// subscription's mark: what follows reaches it live), read from `source`. The frames
/// are built as the edge builds them ([`super::frame`]), so they are the bytes first
/// sent.
pub fn owed(
    source: Source,
    channel: &str,
    mark: &Mark,
    received: u64,
    resumed: bool,
    upto: Offset,
) -> Result<Vec<Bytes>, Reason> {
    let segments = mark.counted_from(resumed);
    // An offset at 0 names no publication: it may stand before the first of `upto`'s
    // epoch (a cluster's origin, see `broker/redis/history.rs`), which the history read
    // from it says (or refuses).
    let comparable = |o: &Offset| o.epoch == upto.epoch || o.seq == 0;
    for s in segments {
        let all = [Some(s.after), s.until, s.cached_at()];
        if !all.iter().flatten().all(comparable) {
            return Err(Reason::TooOld);
        }
    }
    let history = History {
        source,
        channel,
        upto,
    };
    let mut skip = usize::try_from(received).map_err(|_| Reason::Unknown)?;
    let mut owed = Vec::new();
    for s in segments {
        let until = s.until.map_or(upto.seq, |u| u.seq.min(upto.seq));
        owed.extend(s.unreceived(&history, &mut skip, until)?);
    }
    if skip > 0 {
        return Err(Reason::Unknown);
    }
    owed.into_iter()
        .map(|item| match item {
            Item::Sent(h) => Ok(super::frame(h.origin, channel, &h.envelope)),
            Item::Unnumbered => Err(Reason::TooOld),
        })
        .collect()
}

/// One channel's history, as a resume reads it.
struct History<'a> {
    source: Source<'a>,
    channel: &'a str,
    /// The new subscription's start: the epoch every publication given must be of.
    upto: Offset,
}

impl History<'_> {
    /// The Laravel publications after `after`, or TooOld when the history no longer
    /// holds all of them.
    fn since(&self, after: Offset) -> Result<Vec<Sent>, Reason> {
        let all = match self.source {
            Source::Broker(broker, namespace) => broker
                .since(namespace, self.channel.as_bytes(), after)
                .map_err(|_| Reason::TooOld)?,
            Source::Read {
                after: read_after,
                publications,
            } => {
                // Read from a cluster's origin, it began at the start of the epoch read.
                let began = match publications.first().and_then(|p| p.offset) {
                    Some(first) if read_after.seq == 0 && first.epoch != read_after.epoch => {
                        Offset {
                            epoch: first.epoch,
                            seq: 0,
                        }
                    }
                    _ => read_after,
                };
                let after = if after == read_after { began } else { after };
                if after.epoch != began.epoch || after.seq < began.seq {
                    return Err(Reason::TooOld);
                }
                let later = |p: &&Publication| p.offset.is_some_and(|o| o.seq > after.seq);
                publications.iter().filter(later).cloned().collect()
            }
        };
        // Sequence numbers are compared only within `upto`'s epoch; a read from an offset
        // of another (at 0: a cluster's origin) must begin it.
        let mut numbered = all.iter().filter_map(|p| p.offset);
        let first = numbered.clone().next();
        let begins =
            after.epoch == self.upto.epoch || first.map_or(self.upto.seq == 0, |o| o.seq == 1);
        if !begins || !numbered.all(|o| o.epoch == self.upto.epoch) {
            return Err(Reason::TooOld);
        }
        Ok(all
            .into_iter()
            .filter_map(|p| {
                Some(Sent {
                    offset: p.offset?,
                    origin: p.origin,
                    envelope: Envelope::decode(&p.payload)?,
                })
            })
            .collect())
    }
}

impl Segment {
    fn cached_at(&self) -> Option<Offset> {
        match self.cached {
            Some(Cached::At(o)) => Some(o),
            _ => None,
        }
    }

    /// Whether the history's `h` was sent in this segment (up to `until`).
    fn sent(&self, h: &Sent, until: u64) -> bool {
        h.offset.seq > self.after.seq
            && h.offset.seq <= until
            && h.envelope.socket.as_deref() != Some(&*self.except)
    }

    /// What this segment sent (up to `until`) that the client did not receive, `skip`
    /// being what it received and this segment has not accounted for yet (taken from it).
    /// Read from the history after the segment's count when the client received all it
    /// counts (the history need only reach back to the count), back from there when it
    /// missed some of it, and from the segment's start otherwise.
    fn unreceived(
        &self,
        history: &History,
        skip: &mut usize,
        until: u64,
    ) -> Result<Vec<Item>, Reason> {
        let counted = self.counted.filter(|c| c.through.seq <= until);
        let sequence = match counted {
            Some(c) if *skip >= c.items => {
                *skip -= c.items;
                let after = history.since(c.through)?;
                self.items(after, until, None)
            }
            Some(c) => {
                let missed = c.items - std::mem::take(skip);
                self.back_from(history, c, missed, until)?
            }
            None => self.whole(history, until)?,
        };
        let kept = (*skip).min(sequence.len());
        *skip -= kept;
        Ok(sequence.into_iter().skip(kept).collect())
    }

    /// The history's publications sent in this segment (up to `until`), after `cached`.
    fn items(&self, history: Vec<Sent>, until: u64, cached: Option<Item>) -> Vec<Item> {
        let sent = history.into_iter().filter(|h| self.sent(h, until));
        cached.into_iter().chain(sent.map(Item::Sent)).collect()
    }

    /// Everything this segment sent (up to `until`), from its start.
    fn whole(&self, history: &History, until: u64) -> Result<Vec<Item>, Reason> {
        let cached_before = self.cached_at().map(|c| Offset {
            seq: c.seq - 1,
            ..c
        });
        let from = cached_before.map_or(self.after, |c| {
            if c.seq < self.after.seq {
                c
            } else {
                self.after
            }
        });
        let mut all = history.since(from)?;
        let cached = match self.cached {
            None => None,
            Some(Cached::Unnumbered) => Some(Item::Unnumbered),
            Some(Cached::At(o)) => {
                let i = all.iter().position(|h| h.offset == o);
                Some(Item::Sent(all.remove(i.ok_or(Reason::TooOld)?)))
            }
        };
        Ok(self.items(all, until, cached))
    }

    /// The last `missed` of what the count covers, then what this segment sent after
    /// it (up to `until`): the history is read back from the count's offset, each time
    /// as much further as it was short of `missed` (so never further back than it must),
    /// until it holds `missed` of them or reaches the segment's start.
    fn back_from(
        &self,
        history: &History,
        c: Counted,
        missed: usize,
        until: u64,
    ) -> Result<Vec<Item>, Reason> {
        let mut reach = missed as u64;
        loop {
            let from = c.through.seq.saturating_sub(reach);
            if from <= self.after.seq {
                // The count only says what the whole segment says: from its start.
                let all = self.whole(history, c.through.seq)?;
                let later = history.since(c.through)?;
                let tail = all.into_iter().skip(c.items.saturating_sub(missed));
                return Ok(tail.chain(self.items(later, until, None)).collect());
            }
            let all = history.since(Offset {
                seq: from,
                ..c.through
            })?;
            let (counted, later): (Vec<Sent>, Vec<Sent>) =
                all.into_iter().partition(|h| h.offset.seq <= c.through.seq);
            let counted: Vec<Sent> = counted
                .into_iter()
                .filter(|h| self.sent(h, until))
                .collect();
            match counted.len().checked_sub(missed) {
                Some(received) => {
                    let tail = counted.into_iter().skip(received).map(Item::Sent);
                    return Ok(tail.chain(self.items(later, until, None)).collect());
                }
                None => reach += (missed - counted.len()) as u64,
            }
        }
    }
}

/// The mark of a resumed subscription: the segments counted from, up to `upto`, then
/// its own from `upto` on (`socket`: the new connection's).
pub fn resumed_mark(mark: &Mark, resumed: bool, upto: Offset, socket: &Arc<str>) -> Mark {
    let mut segments: Vec<Segment> = mark.counted_from(resumed).to_vec();
    for s in &mut segments {
        s.until = Some(
            s.until
                .map_or(upto, |u| if u.seq < upto.seq { u } else { upto }),
        );
    }
    let live_from = segments.len();
    segments.push(Segment {
        cached: None,
        after: upto,
        until: None,
        except: socket.clone(),
        counted: None,
    });
    Mark {
        segments,
        live_from,
    }
}

/// The mark a resuming connection keeps for a channel it has not re-subscribed yet: what
/// the client counted from, so that a second drop before the subscription still resumes.
pub fn pending_mark(mark: &Mark, resumed: bool) -> Mark {
    Mark {
        segments: mark.counted_from(resumed).to_vec(),
        live_from: 0,
    }
}

/// `herald:resumed` for `channel`, after `replayed` frames.
pub fn resumed_frame(channel: &str, replayed: usize) -> Bytes {
    let data = serde_json::json!({ "channel": channel, "replayed": replayed }).to_string();
    protocol::event("herald:resumed", None, &data)
}

/// `herald:resume_failed` for `channel`, counted and logged.
pub fn failed_frame(channel: &str, reason: Reason, socket: &str) -> Bytes {
    metrics::PUSHER_RESUME_REFUSED[reason as usize].inc();
    tracing::info!(
        channel,
        previous_socket_id = socket,
        reason = reason.as_str(),
        "Pusher resume refused"
    );
    let data = serde_json::json!({ "channel": channel, "reason": reason.as_str() }).to_string();
    protocol::event("herald:resume_failed", None, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Epoch, MemoryBroker, Publication, StreamSubscriber};
    use crate::outbox::{Outbox, OutboxLimits};
    use std::sync::atomic::AtomicBool;

    fn conn(socket: &str) -> Arc<Connection> {
        Arc::new(Connection {
            id: crate::broker::next_subscriber_id(),
            socket_id: socket.into(),
            outbox: Arc::new(Outbox::new(OutboxLimits::default())),
            terminated: AtomicBool::new(false),
        })
    }

    fn at(seq: u64) -> Offset {
        Offset {
            epoch: Epoch(7),
            seq,
        }
    }

    fn mark(socket: &str) -> Mark {
        Mark::subscribed(None, at(0), &Arc::from(socket))
    }

    #[test]
    fn kept_closed_connections_are_bounded_oldest_first() {
        let kept_marks = KeptMarks::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        let evicted = metrics::PUSHER_RESUME_EVICTED.get();
        let sockets: Vec<Arc<str>> = (1..=3).map(|n| Arc::from(format!("1.{n}"))).collect();
        let conns: Vec<_> = sockets.iter().map(|s| conn(s)).collect();
        for (s, c) in sockets.iter().zip(&conns) {
            let t = kept_marks.open(s, (1, "app"), c);
            t.set("orders", mark(s));
            kept_marks.close(s, &t, true, now);
        }
        assert!(metrics::PUSHER_RESUME_EVICTED.get() > evicted);
        assert_eq!(
            kept_marks.take("1.1", 1, now, |_, _| None).unwrap_err(),
            Reason::WindowOver
        );
        assert_eq!(
            kept_marks.take("1.3", 2, now, |_, _| None).unwrap_err(),
            Reason::WindowOver,
            "another app"
        );
        assert_eq!(
            kept_marks.take("1.3", 1, now, |_, _| None).unwrap().len(),
            1
        );
        assert_eq!(
            kept_marks.take("1.3", 1, now, |_, _| None).unwrap_err(),
            Reason::WindowOver,
            "taken once"
        );
        let later = now + Duration::from_secs(61);
        assert_eq!(
            kept_marks.take("1.2", 1, later, |_, _| None).unwrap_err(),
            Reason::WindowOver
        );
    }

    #[test]
    fn clean_closes_and_empty_connections_are_not_kept() {
        let kept_marks = KeptMarks::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let (a, b): (Arc<str>, Arc<str>) = ("1.1".into(), "1.2".into());
        let (ca, cb) = (conn(&a), conn(&b));
        let ta = kept_marks.open(&a, (1, "app"), &ca);
        ta.set("orders", mark(&a));
        kept_marks.close(&a, &ta, false, now);
        let tb = kept_marks.open(&b, (1, "app"), &cb);
        kept_marks.close(&b, &tb, true, now);
        assert!(kept_marks.take("1.1", 1, now, |_, _| None).is_err());
        assert!(kept_marks.take("1.2", 1, now, |_, _| None).is_err());
    }

    #[test]
    fn an_open_connection_taken_is_terminated() {
        let kept_marks = KeptMarks::new(Duration::from_secs(60), 10);
        let s: Arc<str> = "1.1".into();
        let c = conn(&s);
        let t = kept_marks.open(&s, (1, "app"), &c);
        t.set("orders", mark(&s));
        assert_eq!(
            kept_marks
                .take("1.1", 1, Instant::now(), |_, _| None)
                .unwrap()
                .len(),
            1
        );
        assert!(c.terminated.load(std::sync::atomic::Ordering::Relaxed));
        kept_marks.close(&s, &t, true, Instant::now());
        assert!(kept_marks
            .take("1.1", 1, Instant::now(), |_, _| None)
            .is_err());
    }

    struct Nobody;
    impl StreamSubscriber for Nobody {
        fn id(&self) -> SubscriberId {
            0
        }
        fn deliver(&self, _: &Publication) -> usize {
            0
        }
    }

    /// A broker whose stream `orders` has a subscriber, and where that stream starts.
    fn orders() -> (MemoryBroker, Offset) {
        let b = MemoryBroker::default();
        b.stream_subscribe(&Namespace::Default, b"orders", Arc::new(Nobody));
        let start = b.position(&Namespace::Default, b"orders").unwrap();
        (b, start)
    }

    fn publish(b: &MemoryBroker, n: u32, socket: Option<&str>) -> Offset {
        let socket = socket.map_or(String::new(), |s| format!(r#","socket":"{s}""#));
        let payload = format!(r#"{{"event":"E","data":{{"n":{n}}}{socket}}}"#);
        let p = Publication::new(
            Namespace::Default,
            Bytes::from_static(b"orders"),
            payload.into(),
        );
        b.publish(p);
        b.position(&Namespace::Default, b"orders").unwrap()
    }

    #[test]
    fn owed_skips_what_was_counted_and_what_was_never_sent() {
        let (b, start) = orders();
        let old: Arc<str> = "1.1".into();
        let m = Mark::subscribed(None, start, &old);
        publish(&b, 1, None);
        publish(&b, 2, Some("1.1")); // toOthers from the old connection: never sent to it
        publish(&b, 3, None);
        let upto = publish(&b, 4, None);
        publish(&b, 5, None); // after the new subscription's mark: reaches it live
        let ns = Namespace::Default;
        let frames = owed(Source::Broker(&b, &ns), "orders", &m, 1, false, upto).unwrap();
        let text: Vec<String> = frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f[2..]).into_owned())
            .collect();
        assert_eq!(
            text,
            [
                r#"{"event":"E","channel":"orders","data":"{\"n\":3}"}"#,
                r#"{"event":"E","channel":"orders","data":"{\"n\":4}"}"#
            ]
        );
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &m, 4, false, upto),
            Err(Reason::Unknown)
        );
        // Resumed, then dropped again: counted from the old mark, or from the live part.
        let new: Arc<str> = "1.2".into();
        let r = resumed_mark(&m, false, upto, &new);
        let later = publish(&b, 6, Some("1.2"));
        let later = Offset {
            seq: later.seq + 1,
            ..later
        };
        publish(&b, 7, None);
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &r, 3, false, later)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &r, 0, true, later)
                .unwrap()
                .len(),
            2
        );
        let other = Offset {
            epoch: Epoch(1),
            seq: 1,
        };
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &m, 0, false, other),
            Err(Reason::TooOld)
        );
    }

    #[test]
    fn owed_from_what_was_read_is_owed_from_the_broker() {
        let ns = Namespace::Default;
        let (b, start) = orders();
        let old: Arc<str> = "1.1".into();
        let m = Mark::subscribed(None, start, &old);
        publish(&b, 1, None);
        publish(&b, 2, Some("1.1"));
        let upto = publish(&b, 3, None);
        publish(&b, 4, None);
        let after = m.reads_after(false).unwrap();
        assert_eq!(after, start);
        let read = b.since(&ns, b"orders", after).unwrap();
        let from_read = Source::Read {
            after,
            publications: &read,
        };
        let frames = owed(from_read, "orders", &m, 0, false, upto).unwrap();
        assert_eq!(texts(&frames), ["1", "3"]);
        assert_eq!(
            frames,
            owed(Source::Broker(&b, &ns), "orders", &m, 0, false, upto).unwrap()
        );
        let later = Offset {
            seq: after.seq + 1,
            ..after
        };
        let short = Source::Read {
            after: later,
            publications: &read[1..],
        };
        assert_eq!(
            owed(short, "orders", &m, 0, false, upto),
            Err(Reason::TooOld),
            "the read does not reach back to the mark"
        );
    }

    #[test]
    fn a_mark_at_a_clusters_origin_is_owed_the_epoch_read_from_it() {
        // Subscribed where the cluster had no history of the channel: at its origin, at 0.
        let ns = Namespace::Default;
        let (b, began) = orders();
        let origin = Offset {
            epoch: crate::broker::Epoch(began.epoch.0 ^ 1),
            seq: 0,
        };
        let old: Arc<str> = "1.1".into();
        let m = Mark::subscribed(None, origin, &old);
        assert_eq!(m.reads_after(false), Some(origin));
        publish(&b, 1, None);
        publish(&b, 2, None);
        let upto = publish(&b, 3, None);
        // What the cluster's history gave for the origin: the whole epoch.
        let read = b.since(&ns, b"orders", began).unwrap();
        let from_origin = || Source::Read {
            after: origin,
            publications: &read,
        };
        let frames = owed(from_origin(), "orders", &m, 1, false, upto).unwrap();
        assert_eq!(texts(&frames), ["2", "3"], "what it had not received");
        let nothing = Source::Read {
            after: origin,
            publications: &[],
        };
        assert_eq!(
            owed(nothing, "orders", &m, 0, false, upto),
            Err(Reason::TooOld),
            "a read from the origin that does not reach the subscription's start"
        );
        let other = Offset { seq: 2, ..origin };
        let m = Mark::subscribed(None, other, &old);
        assert_eq!(
            owed(from_origin(), "orders", &m, 0, false, upto),
            Err(Reason::TooOld),
            "a publication of another epoch is never compared with this one's"
        );
    }

    fn texts(frames: &[Bytes]) -> Vec<String> {
        let n = |f: &Bytes| {
            let v: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
            let data: serde_json::Value =
                serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
            data["n"].to_string()
        };
        frames.iter().map(n).collect()
    }

    #[test]
    fn a_counted_subscription_needs_the_history_only_back_to_where_its_client_stopped() {
        let b = MemoryBroker::with_history(crate::broker::history::HistoryLimits {
            size: 4,
            ..Default::default()
        });
        let ns = Namespace::Default;
        b.stream_subscribe(&ns, b"orders", Arc::new(Nobody));
        let start = b.position(&ns, b"orders").unwrap();
        let old: Arc<str> = "1.1".into();
        let mut m = Mark::subscribed(None, start, &old);
        for n in 1..=8 {
            publish(&b, n, None);
        }
        let mine = publish(&b, 9, Some("1.1")); // never sent to it
                                                // Sent 8 numbered frames up to 9; the history holds 7 to 10.
        let upto = publish(&b, 10, None);
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &m, 8, false, upto),
            Err(Reason::TooOld)
        );
        m.count(8, mine);
        // It received all 8: owed 10 only.
        let all = owed(Source::Broker(&b, &ns), "orders", &m, 8, false, upto).unwrap();
        assert_eq!(texts(&all), ["10"]);
        // It received 6: 7 and 8 are read back from the count, then 10.
        let back = owed(Source::Broker(&b, &ns), "orders", &m, 6, false, upto).unwrap();
        assert_eq!(texts(&back), ["7", "8", "10"]);
        // It received 4: 5 is gone from the history.
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &m, 4, false, upto),
            Err(Reason::TooOld)
        );
        assert_eq!(
            owed(Source::Broker(&b, &ns), "orders", &m, 10, false, upto),
            Err(Reason::Unknown)
        );
        // Resumed (upto), counted again on the new connection, dropped again.
        let new: Arc<str> = "1.2".into();
        let mut r = resumed_mark(&m, false, upto, &new);
        let last = publish(&b, 11, None);
        r.count(1, last);
        let later = publish(&b, 12, None);
        assert_eq!(
            texts(&owed(Source::Broker(&b, &ns), "orders", &r, 1, true, later).unwrap()),
            ["12"]
        );
        assert_eq!(
            texts(&owed(Source::Broker(&b, &ns), "orders", &r, 0, true, later).unwrap()),
            ["11", "12"]
        );
        // Not seen herald:resumed: 6 received before, the replay of 3, then 11.
        assert_eq!(
            texts(&owed(Source::Broker(&b, &ns), "orders", &r, 10, false, later).unwrap()),
            ["12"]
        );
        assert_eq!(
            texts(&owed(Source::Broker(&b, &ns), "orders", &r, 8, false, later).unwrap()),
            ["10", "11", "12"]
        );
    }
}
