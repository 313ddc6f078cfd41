//! What a channel published lately: a bounded ring per channel stream, so a client that
//! lost its connection can be given everything after the last offset it saw, or be told
//! exactly that this is no longer possible.
//!
//! Recovery (socket.io's connection state recovery, herald's Pusher resume) asks one
//! question: "everything after offset X". [`Ring::since`] answers it with the retained
//! publications in order (none when X is the latest: nothing was missed), or with
//! [`TooOld`] when the answer would not be whole: X is of another epoch (the stream that
//! numbered it is gone, e.g. herald restarted), X is ahead of the stream, or the
//! publication right after X is no longer retained. There is no partial answer: a gap is
//! never papered over.
//!
//! # Bounds and policy
//! Each ring keeps at most [`HistoryLimits::size`] publications and none older than
//! [`HistoryLimits::ttl`]. All rings of one [`History`] share two budgets, kept in atomics:
//! bytes ([`HistoryLimits::memory`]: each entry's [`Weigh::weight`] plus the ring's slots)
//! and the number of rings holding anything ([`HistoryLimits::channels`]). When a budget
//! is full, a new publication first evicts its **own ring's** oldest entries, and if the
//! ring has none left to give, the publication is not kept (the ring is then empty: its
//! earlier entries could not be served without it). Both count in
//! `herald_history_evicted_total`, and the owner's periodic sweep logs them
//! ([`History::report_evictions`], at most once a minute). Evicting the globally oldest
//! entry instead would need a structure spanning every ring, and other streams' locks
//! taken under this one's; evicting one's own is O(1) under the lock already held, and a
//! flood on one busy channel cannot wipe out the last event of a quiet one (the "payment
//! received" on `orders.1`): the flooding channel pays for its flood.
//! What a full budget holds is freed as entries expire (the owner's sweep frees idle
//! channels'), so a budget starved by many channels recovers within one TTL.
//!
//! The defaults follow the peers: socket.io keeps every packet for 2 minutes (its
//! `maxDisconnectionDuration`, also herald's recovery window), with no count bound;
//! Centrifugo keeps `history_size` entries for `history_ttl` and has no default (both must
//! be set). herald keeps 120 s, and at most 1,000 entries per channel so that one busy
//! channel cannot take the budget: 2 minutes of any channel publishing up to 8 per second,
//! which no per-user or per-model Laravel channel approaches, and a few seconds of
//! reconnect at hundreds per second on a busy public one.
//!
//! # Cost
//! Appending is O(1) amortized and allocates only when a ring's buffer grows (doubling up
//! to `size`, freed when the ring empties). A ring reserves budget bytes ahead (a
//! sixteenth of what it holds) and gives back only a surplus of twice that, so a ring
//! turning over entries of similar sizes touches no shared atomic at all. The reserved
//! bytes are what the budget counts: the bound holds exactly, and what rings hold is at
//! least eight ninths of what they reserve.
//!
//! # Who calls what
//! A [`Ring`] lives in the broker's per-stream entry, under that stream's shard lock: the
//! broker assigns the offset and calls [`Ring::push`] in the same critical section, reads
//! with [`Ring::since`] and [`Ring::latest`] (a new subscriber's position), and sweeps idle
//! streams with [`Ring::expire`], one shard at a time (each call is O(1) when nothing
//! expired), dropping a stream whose ring retains nothing and that has no subscribers.
//! A stream dropped and created again gets a fresh epoch, so an offset of the old one is
//! answered [`TooOld`]: herald no longer knows what that client missed.
//!
//! # In Redis (`--cluster`)
//! The same answers from a Redis stream per channel (`broker/redis/history.rs`):
//! `XADD key MAXLEN <size> 0-<seq>` plus a small hash with the stream's epoch and latest
//! seq (a missing hash means the history was lost: a new epoch), both given the TTL on
//! each publication, in one script with the publish so every node sees one order. `since`
//! reads the hash and `XRANGE key 0-<X+1> +`, and answers `TooOld` on the same three
//! conditions (the first ID returned is not X+1). The memory budget is Redis's
//! `maxmemory`; TTL is per stream (entries live while the stream is active, bounded by
//! MAXLEN), as in centrifuge. Each node's rings keep what passes through it, numbered by
//! Redis, and answer first.

use super::offset::{Epoch, Offset};
use crate::metrics::Counter;
use std::collections::{vec_deque, VecDeque};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much history herald keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Publications kept per channel; 0 keeps none (offsets are still counted)
    /// [default: 1000].
    pub size: usize,
    /// How long a publication is kept [default: 120 s, socket.io's 2 minutes].
    pub ttl: Duration,
    /// Bytes all channels' history may hold, payloads and bookkeeping [default: 64 MiB].
    pub memory: usize,
    /// Channels that may hold history at once [default: 100,000].
    pub channels: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            size: 1000,
            ttl: Duration::from_secs(120),
            memory: 64 * 1024 * 1024,
            channels: 100_000,
        }
    }
}

/// What a retained value costs, in bytes beyond its inline size (a payload's length).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for bytes::Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// The answer when the publications after an offset cannot all be given: the broker's.
pub use super::TooOld;

/// The limits and the budgets shared by every ring. Cheap to share: rings hold an `Arc`.
pub struct History {
    limits: HistoryLimits,
    /// Bytes reserved by all rings (never above `limits.memory`).
    bytes: AtomicUsize,
    /// Rings holding at least one entry (never above `limits.channels`).
    channels: AtomicUsize,
    evicted: Counter,
    /// `evicted` when last logged, and when the next log may be, in ms after `born`.
    reported: AtomicU64,
    next_report: AtomicU64,
    born: Instant,
}

impl History {
    pub fn new(limits: HistoryLimits) -> Arc<History> {
        Arc::new(History {
            limits,
            bytes: AtomicUsize::new(0),
            channels: AtomicUsize::new(0),
            evicted: Counter::new(),
            reported: AtomicU64::new(0),
            next_report: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// An empty ring for a stream of this epoch (its latest offset is `epoch-0`).
    pub fn ring<V: Weigh>(self: &Arc<Self>, epoch: Epoch) -> Ring<V> {
        Ring {
            history: self.clone(),
            epoch,
            latest: 0,
            entries: VecDeque::new(),
            charged: 0,
            reserved: 0,
            holds_channel: false,
        }
    }

    pub fn limits(&self) -> &HistoryLimits {
        &self.limits
    }

    /// Bytes the rings hold now, as the budget counts them.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Channels holding history now.
    pub fn channels(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    /// Entries dropped before their TTL because a budget was full (or never kept).
    pub fn evicted(&self) -> u64 {
        self.evicted.get()
    }

    /// Rows for `metrics::render`'s `extra`.
    pub fn metrics(&self) -> [(&'static str, &'static str, u64); 3] {
        [
            ("herald_history_evicted_total", "counter", self.evicted()),
            ("herald_history_bytes", "gauge", self.bytes() as u64),
            ("herald_history_channels", "gauge", self.channels() as u64),
        ]
    }

    fn take(budget: &AtomicUsize, n: usize, limit: usize) -> bool {
        budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&u| u <= limit)
            })
            .is_ok()
    }

    fn reserve(&self, n: usize) -> bool {
        History::take(&self.bytes, n, self.limits.memory)
    }

    fn release(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Log the evictions counted since the last report, at most once a minute; returns
    /// how many it reported (0: nothing logged). For the owner's periodic sweep, outside
    /// every lock: pushes only count.
    pub fn report_evictions(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.born).as_millis() as u64;
        let total = self.evicted();
        let new = total - self.reported.load(Ordering::Relaxed);
        if new == 0 || ms < self.next_report.load(Ordering::Relaxed) {
            return 0;
        }
        self.reported.store(total, Ordering::Relaxed);
        self.next_report.store(ms + 60_000, Ordering::Relaxed);
        tracing::warn!(
            evicted = new,
            bytes = self.bytes(),
            channels = self.channels(),
            "history budget full (--history-max-bytes, --history-max-channels): publications \
             dropped before their TTL; clients that missed them will not be recovered"
        );
        new
    }
}

struct Entry<V> {
    /// When it arrived; never earlier than the entry before it.
    at: Instant,
    /// `value.weight()` when it was appended, as charged.
    weight: usize,
    value: V,
}

/// One channel stream's retained publications: contiguous offsets ending at `latest`.
pub struct Ring<V> {
    history: Arc<History>,
    epoch: Epoch,
    /// Sequence number of the last publication pushed (retained or not); 0 before any.
    latest: u64,
    entries: VecDeque<Entry<V>>,
    /// Entries' weights plus the buffer's slots.
    charged: usize,
    /// Bytes taken from the budget: at least `charged`.
    reserved: usize,
    /// Counted in `History::channels`; true exactly while `entries` is not empty
    /// (between the calls of this module).
    holds_channel: bool,
}

/// Bytes one slot of a ring's buffer costs.
const fn slot<V>() -> usize {
    size_of::<Entry<V>>()
}

impl<V: Weigh> Ring<V> {
    /// The offset of the last publication: where a client that starts now stands.
    pub fn latest(&self) -> Offset {
        Offset {
            epoch: self.epoch,
            seq: self.latest,
        }
    }

    /// Stand at `offset`, holding nothing: where a stream that has numbered nothing yet
    /// learns its history stands elsewhere (a cluster's).
    pub fn restart_at(&mut self, offset: Offset) {
        self.entries.clear();
        self.vacate();
        self.epoch = offset.epoch;
        self.latest = offset.seq;
    }

    /// Append the publication numbered `offset`, which arrived at `now`. If `offset` does
    /// not follow [`Ring::latest`] (another epoch, or a skipped number), what the ring held
    /// can no longer be served and is dropped: `since` answers [`TooOld`] before `offset`.
    pub fn push(&mut self, offset: Offset, value: V, now: Instant) {
        if offset.epoch != self.epoch || self.latest.checked_add(1) != Some(offset.seq) {
            self.entries.clear();
            self.vacate();
            self.epoch = offset.epoch;
        }
        self.latest = offset.seq;
        self.drop_expired(now);
        let size = self.history.limits.size;
        if size == 0 {
            return;
        }
        if self.entries.len() == size {
            self.pop();
        }
        let weight = value.weight();
        let mut evicted = 0;
        while !self.make_room(weight) {
            if self.entries.is_empty() {
                self.vacate();
                self.history.evicted.add(evicted + 1);
                return;
            }
            self.pop();
            evicted += 1;
        }
        let at = self.entries.back().map_or(now, |e| e.at.max(now));
        self.entries.push_back(Entry { at, weight, value });
        self.trim();
        if evicted > 0 {
            self.history.evicted.add(evicted);
        }
    }

    /// Every retained publication after `after`, in order, with its offset: empty when
    /// `after` is the latest. [`TooOld`] when `after` is of another epoch, ahead of the
    /// latest, or the publication right after it is no longer retained (evicted, expired
    /// at `now`, or never kept).
    pub fn since(&self, after: Offset, now: Instant) -> Result<Since<'_, V>, TooOld> {
        if after.epoch != self.epoch || after.seq > self.latest {
            return Err(TooOld);
        }
        let ttl = self.history.limits.ttl;
        let expired = self
            .entries
            .partition_point(|e| now.saturating_duration_since(e.at) >= ttl);
        let live = (self.entries.len() - expired) as u64;
        let first = self.latest + 1 - live;
        if after.seq + 1 < first {
            return Err(TooOld);
        }
        let start = expired + (after.seq + 1 - first) as usize;
        Ok(Since {
            epoch: self.epoch,
            seq: after.seq + 1,
            entries: self.entries.range(start..),
        })
    }

    /// Drop the entries expired at `now`; true when the ring retains nothing (the owner
    /// may then drop the stream if nobody is subscribed). O(1) when nothing expired.
    pub fn expire(&mut self, now: Instant) -> bool {
        self.drop_expired(now);
        if self.entries.is_empty() {
            self.vacate();
        } else {
            self.trim();
        }
        self.entries.is_empty()
    }

    fn drop_expired(&mut self, now: Instant) {
        let ttl = self.history.limits.ttl;
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) >= ttl)
        {
            self.pop();
        }
    }

    /// Drop the oldest entry; its buffer slot stays (the caller vacates an empty ring).
    fn pop(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.charged -= e.weight;
        }
    }

    /// Budget for one more entry of `weight`: a channel if the ring holds none, buffer
    /// growth if it is full, the bytes. False if a budget is full.
    fn make_room(&mut self, weight: usize) -> bool {
        if !self.holds_channel {
            let limit = self.history.limits.channels;
            if !History::take(&self.history.channels, 1, limit) {
                return false;
            }
            self.holds_channel = true;
        }
        let cap = self.entries.capacity();
        let grow = if self.entries.len() == cap {
            (cap * 2).max(4).min(self.history.limits.size) - cap
        } else {
            0
        };
        if !self.cover(weight + grow * slot::<V>()) {
            return false;
        }
        self.charged += weight;
        if grow > 0 {
            self.entries.reserve_exact(grow);
            self.charged += (self.entries.capacity() - cap) * slot::<V>();
            if self.charged > self.reserved {
                // The allocator gave more than asked: count it, over the limit or not.
                self.history
                    .bytes
                    .fetch_add(self.charged - self.reserved, Ordering::Relaxed);
                self.reserved = self.charged;
            }
        }
        true
    }

    /// Make the reservation cover `n` more bytes, taking some headroom when it can.
    fn cover(&mut self, n: usize) -> bool {
        let want = self.charged + n;
        if want <= self.reserved {
            return true;
        }
        let more = want - self.reserved;
        let headroom = want / 16;
        for ask in [more + headroom, more] {
            if self.history.reserve(ask) {
                self.reserved += ask;
                return true;
            }
        }
        false
    }

    /// Give back a reservation more than twice the headroom above what is charged.
    fn trim(&mut self) {
        let headroom = self.charged / 16;
        let spare = self.reserved - self.charged;
        if spare > 2 * headroom {
            self.history.release(spare - headroom);
            self.reserved -= spare - headroom;
        }
    }

    /// An empty ring gives back its buffer, its bytes and its channel.
    fn vacate(&mut self) {
        debug_assert!(self.entries.is_empty());
        self.entries = VecDeque::new();
        self.charged = 0;
        self.history.release(self.reserved);
        self.reserved = 0;
        if self.holds_channel {
            self.history.channels.fetch_sub(1, Ordering::Relaxed);
            self.holds_channel = false;
        }
    }
}

impl<V> Drop for Ring<V> {
    fn drop(&mut self) {
        self.history.release(self.reserved);
        if self.holds_channel {
            self.history.channels.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The publications [`Ring::since`] gives, oldest first, with their offsets.
pub struct Since<'a, V> {
    epoch: Epoch,
    seq: u64,
    entries: vec_deque::Iter<'a, Entry<V>>,
}

impl<'a, V> Iterator for Since<'a, V> {
    type Item = (Offset, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.next()?;
        let offset = Offset {
            epoch: self.epoch,
            seq: self.seq,
        };
        self.seq += 1;
        Some((offset, &e.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<V> ExactSizeIterator for Since<'_, V> {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const E: Epoch = Epoch(0xe);

    fn at(e: Epoch, seq: u64) -> Offset {
        Offset { epoch: e, seq }
    }

    fn limits(size: usize, ttl_secs: u64, memory: usize, channels: usize) -> HistoryLimits {
        HistoryLimits {
            size,
            ttl: Duration::from_secs(ttl_secs),
            memory,
            channels,
        }
    }

    /// A payload of `len` bytes that names its offset.
    fn payload(seq: u64, len: usize) -> Bytes {
        let mut p = format!("p{seq}").into_bytes();
        p.resize(len.max(p.len()), b'.');
        Bytes::from(p)
    }

    /// `since` as (seq, payload) pairs, each offset checked to be of the ring's epoch.
    fn since(r: &Ring<Bytes>, after: Offset, now: Instant) -> Result<Vec<(u64, Bytes)>, TooOld> {
        Ok(r.since(after, now)?
            .map(|(o, v)| {
                assert_eq!(o.epoch, r.epoch);
                (o.seq, v.clone())
            })
            .collect())
    }

    fn seqs(r: &Ring<Bytes>, after: Offset, now: Instant) -> Result<Vec<u64>, TooOld> {
        Ok(since(r, after, now)?.into_iter().map(|(s, _)| s).collect())
    }

    /// Push publications `from..=to` of `len` bytes at `now`.
    fn push(r: &mut Ring<Bytes>, from: u64, to: u64, len: usize, now: Instant) {
        for seq in from..=to {
            r.push(at(r.epoch, seq), payload(seq, len), now);
        }
    }

    /// The bookkeeping adds up: each ring's charge is its entries and slots, the budget
    /// is the sum of the reservations, and neither budget is over its limit.
    fn check(h: &History, rings: &[Ring<Bytes>]) {
        for r in rings {
            let weights: usize = r.entries.iter().map(|e| e.weight).sum();
            assert_eq!(r.charged, weights + r.entries.capacity() * slot::<Bytes>());
            assert!(r.reserved >= r.charged);
            assert_eq!(r.holds_channel, !r.entries.is_empty());
        }
        assert_eq!(h.bytes(), rings.iter().map(|r| r.reserved).sum::<usize>());
        assert!(h.bytes() <= h.limits.memory, "{} bytes", h.bytes());
        let holding = rings.iter().filter(|r| r.holds_channel).count();
        assert_eq!(h.channels(), holding);
        assert!(holding <= h.limits.channels);
    }

    #[test]
    fn since_answers_exactly() {
        let h = History::new(limits(10, 120, 1 << 20, 10));
        let now = Instant::now();
        let mut r = h.ring(E);
        assert_eq!(r.latest(), at(E, 0));
        assert_eq!(
            seqs(&r, at(E, 0), now),
            Ok(vec![]),
            "new stream: nothing missed"
        );
        assert_eq!(
            seqs(&r, at(E, 1), now),
            Err(TooOld),
            "ahead of a new stream"
        );

        push(&mut r, 1, 5, 10, now);
        assert_eq!(r.latest(), at(E, 5));
        assert_eq!(
            since(&r, at(E, 5), now),
            Ok(vec![]),
            "latest: nothing missed"
        );
        assert_eq!(
            since(&r, at(E, 2), now),
            Ok(vec![
                (3, payload(3, 10)),
                (4, payload(4, 10)),
                (5, payload(5, 10))
            ]),
            "the suffix, in order, with offsets"
        );
        assert_eq!(seqs(&r, at(E, 0), now), Ok(vec![1, 2, 3, 4, 5]));
        assert_eq!(seqs(&r, at(E, 6), now), Err(TooOld), "future seq");
        assert_eq!(seqs(&r, at(Epoch(0xf), 3), now), Err(TooOld), "other epoch");
        assert_eq!(r.since(at(E, 3), now).map(|s| s.len()), Ok(2));
        check(&h, &[r]);
    }

    #[test]
    fn keeps_at_most_size() {
        let h = History::new(limits(3, 120, 1 << 20, 10));
        let now = Instant::now();
        let mut r = h.ring(E);
        push(&mut r, 1, 5, 10, now);
        assert_eq!(seqs(&r, at(E, 2), now), Ok(vec![3, 4, 5]));
        assert_eq!(seqs(&r, at(E, 1), now), Err(TooOld), "2 fell off");
        assert_eq!(seqs(&r, at(E, 0), now), Err(TooOld));
        assert!(
            r.entries.capacity() <= 3,
            "the buffer grows to size, no more"
        );
        assert_eq!(h.evicted(), 0, "turning over by size is not an eviction");
        check(&h, &[r]);
    }

    #[test]
    fn expires_after_ttl() {
        let h = History::new(limits(10, 10, 1 << 20, 10));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = h.ring(E);
        push(&mut r, 1, 1, 10, t0);
        push(&mut r, 2, 2, 10, t0 + s(1));
        push(&mut r, 3, 3, 10, t0 + s(2));
        let just_before = t0 + s(10) - Duration::from_millis(1);
        assert_eq!(seqs(&r, at(E, 0), just_before), Ok(vec![1, 2, 3]));
        assert_eq!(seqs(&r, at(E, 0), t0 + s(10)), Err(TooOld), "1 expired");
        assert_eq!(seqs(&r, at(E, 1), t0 + s(10)), Ok(vec![2, 3]));
        assert_eq!(seqs(&r, at(E, 3), t0 + s(12)), Ok(vec![]), "latest still");
        assert_eq!(seqs(&r, at(E, 2), t0 + s(12)), Err(TooOld), "3 expired");

        assert!(!r.expire(t0 + s(11)), "3 is live until t0+12s");
        assert_eq!(r.entries.len(), 1);
        check(&h, std::slice::from_ref(&r));
        assert!(r.expire(t0 + s(12)), "all expired: the owner may drop it");
        assert_eq!(
            (h.bytes(), h.channels()),
            (0, 0),
            "an empty ring holds nothing"
        );
        assert_eq!(r.latest(), at(E, 3), "the position survives");
        assert_eq!(h.evicted(), 0, "expiry is not an eviction");
        check(&h, &[r]);
    }

    #[test]
    fn reservations_follow_what_is_held() {
        let h = History::new(limits(100, 10, 1 << 20, 10));
        let t0 = Instant::now();
        let mut r = h.ring(E);
        push(&mut r, 1, 99, 1000, t0);
        push(&mut r, 100, 100, 1000, t0 + Duration::from_secs(5));
        assert!(h.bytes() > 100_000);
        assert!(!r.expire(t0 + Duration::from_secs(10)));
        assert_eq!(r.entries.len(), 1);
        assert!(
            h.bytes() <= r.charged + r.charged / 8,
            "{} bytes reserved for {} held",
            h.bytes(),
            r.charged
        );
        check(&h, &[r]);
    }

    #[test]
    fn arrival_times_never_go_back() {
        // Publishers read the clock before taking the stream's lock, so a later entry can
        // carry an earlier instant: it is kept at least as long as the one before it.
        let h = History::new(limits(10, 10, 1 << 20, 10));
        let t0 = Instant::now();
        let mut r = h.ring(E);
        push(&mut r, 1, 1, 10, t0 + Duration::from_secs(5));
        push(&mut r, 2, 2, 10, t0 + Duration::from_secs(4));
        let t = t0 + Duration::from_millis(14_500);
        assert_eq!(seqs(&r, at(E, 1), t), Ok(vec![2]));
        assert_eq!(seqs(&r, at(E, 0), t), Ok(vec![1, 2]));
    }

    #[test]
    fn budget_holds_with_many_channels() {
        let memory = 64 * 1024;
        let h = History::new(limits(100, 120, memory, 10_000));
        let now = Instant::now();
        let mut rings: Vec<Ring<Bytes>> = (0..1000).map(|i| h.ring(Epoch(i))).collect();
        for round in 1..=10 {
            for r in rings.iter_mut() {
                push(r, round, round, 100, now);
                assert!(h.bytes() <= memory, "{} bytes", h.bytes());
            }
        }
        check(&h, &rings);
        assert!(h.evicted() > 0, "1000 × 10 × 100 B cannot fit in 64 KiB");
        for r in &rings {
            assert_eq!(seqs(r, at(r.epoch, 10), now), Ok(vec![]));
            // Whatever is retained is a suffix ending at the latest.
            let first = (0..=10)
                .find(|&a| r.since(at(r.epoch, a), now).is_ok())
                .unwrap();
            let want: Vec<u64> = (first + 1..=10).collect();
            assert_eq!(seqs(r, at(r.epoch, first), now), Ok(want));
            assert_eq!(first, 10 - r.entries.len() as u64);
        }
        let holding = rings.iter().filter(|r| !r.entries.is_empty()).count();
        assert!(
            holding > 100,
            "the budget is used, not left idle ({holding})"
        );
        assert_eq!(
            h.report_evictions(now),
            h.evicted(),
            "the evictions are logged"
        );
        push(&mut rings[999], 11, 11, 100, now);
        assert_eq!(h.report_evictions(now), 0, "at most once a minute");
        drop(rings);
        assert_eq!(
            (h.bytes(), h.channels()),
            (0, 0),
            "dropped rings give all back"
        );
    }

    #[test]
    fn a_flood_evicts_its_own_channel_only() {
        let h = History::new(limits(1000, 120, 16 * 1024, 10));
        let now = Instant::now();
        let mut quiet = h.ring(Epoch(1));
        let mut busy = h.ring(Epoch(2));
        push(&mut quiet, 1, 1, 100, now);
        push(&mut busy, 1, 500, 100, now);
        assert!(h.evicted() > 0, "500 × 100 B cannot fit in 16 KiB");
        assert_eq!(
            seqs(&quiet, at(Epoch(1), 0), now),
            Ok(vec![1]),
            "the quiet channel's event survives the flood"
        );
        let kept = busy.entries.len() as u64;
        assert!(kept > 10, "the busy channel keeps what fits ({kept})");
        assert_eq!(
            seqs(&busy, at(Epoch(2), 500 - kept), now),
            Ok((501 - kept..=500).collect::<Vec<_>>()),
            "its newest entries"
        );
        assert_eq!(seqs(&busy, at(Epoch(2), 499 - kept), now), Err(TooOld));
        let evicted = h.evicted();
        push(&mut busy, 501, 501, 100, now);
        assert_eq!(h.evicted(), evicted + 1, "one in, its own oldest out");
        assert_eq!(busy.entries.len() as u64, kept);

        // A new channel finds the budget full and keeps nothing, and says so.
        let evicted = h.evicted();
        let mut late = h.ring(Epoch(3));
        let slack = h.limits.memory - h.bytes();
        push(&mut late, 1, 1, slack + 1, now);
        assert_eq!(h.evicted(), evicted + 1);
        assert_eq!(seqs(&late, at(Epoch(3), 0), now), Err(TooOld), "1 not kept");
        assert_eq!(
            seqs(&late, at(Epoch(3), 1), now),
            Ok(vec![]),
            "nothing after 1"
        );
        check(&h, &[quiet, busy, late]);
    }

    #[test]
    fn channel_bound_holds() {
        let h = History::new(limits(10, 10, 1 << 20, 2));
        let t0 = Instant::now();
        let mut rings: Vec<Ring<Bytes>> = (0..3).map(|i| h.ring(Epoch(i))).collect();
        push(&mut rings[0], 1, 1, 10, t0);
        push(&mut rings[1], 1, 1, 10, t0 + Duration::from_secs(5));
        push(&mut rings[2], 1, 1, 10, t0 + Duration::from_secs(5));
        assert_eq!(h.channels(), 2);
        assert_eq!(
            h.evicted(),
            1,
            "the third channel's publication is not kept"
        );
        assert_eq!(seqs(&rings[2], at(Epoch(2), 0), t0), Err(TooOld));
        check(&h, &rings);

        let t10 = t0 + Duration::from_secs(10);
        assert!(rings[0].expire(t10), "the first ring's entry expired");
        assert!(!rings[1].expire(t10));
        push(&mut rings[2], 2, 2, 10, t10);
        assert_eq!(seqs(&rings[2], at(Epoch(2), 1), t10), Ok(vec![2]));
        check(&h, &rings);
    }

    #[test]
    fn a_skipped_offset_or_new_epoch_drops_what_cannot_be_served() {
        let h = History::new(limits(10, 120, 1 << 20, 10));
        let now = Instant::now();
        let mut r = h.ring(E);
        push(&mut r, 1, 3, 10, now);
        push(&mut r, 5, 5, 10, now);
        assert_eq!(seqs(&r, at(E, 4), now), Ok(vec![5]));
        assert_eq!(seqs(&r, at(E, 3), now), Err(TooOld), "4 was never kept");
        assert_eq!(seqs(&r, at(E, 0), now), Err(TooOld));

        let f = Epoch(0xf);
        r.push(at(f, 1), payload(1, 10), now);
        assert_eq!(r.latest(), at(f, 1));
        assert_eq!(
            seqs(&r, at(E, 5), now),
            Err(TooOld),
            "the old epoch is gone"
        );
        assert_eq!(seqs(&r, at(f, 0), now), Ok(vec![1]));
        assert_eq!(h.evicted(), 0);
        check(&h, &[r]);
    }

    #[test]
    fn size_zero_keeps_nothing_but_counts() {
        let h = History::new(limits(0, 120, 1 << 20, 10));
        let now = Instant::now();
        let mut r = h.ring(E);
        push(&mut r, 1, 2, 10, now);
        assert_eq!(r.latest(), at(E, 2));
        assert_eq!(seqs(&r, at(E, 2), now), Ok(vec![]));
        assert_eq!(seqs(&r, at(E, 1), now), Err(TooOld));
        assert_eq!((h.bytes(), h.channels(), h.evicted()), (0, 0, 0));
        assert!(r.expire(now));
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_not_kept() {
        let h = History::new(limits(10, 120, 1000, 10));
        let now = Instant::now();
        let mut r = h.ring(E);
        push(&mut r, 1, 1, 100, now);
        push(&mut r, 2, 2, 2000, now);
        assert_eq!(
            h.evicted(),
            2,
            "the new one, and 1 before it, which it would follow"
        );
        assert_eq!(seqs(&r, at(E, 1), now), Err(TooOld));
        assert_eq!(seqs(&r, at(E, 2), now), Ok(vec![]));
        assert_eq!((h.bytes(), h.channels()), (0, 0));
        push(&mut r, 3, 3, 100, now);
        assert_eq!(
            seqs(&r, at(E, 2), now),
            Ok(vec![3]),
            "small ones are kept again"
        );
        check(&h, &[r]);
    }
}
