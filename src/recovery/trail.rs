//! What was written to one connection lately: the offsets of its frames, in order.
//!
//! A client reports the offset of the last event it received. It received exactly the
//! frames written before that one (one connection is one ordered byte stream), so the
//! trail answers, for each channel the connection is in, "where did the client stand on
//! this channel at that moment" ([`Trail::positions`]). Each entry is one [`Offset`]
//! (16 bytes, no frame): a channel's stream has its own random epoch, so an offset names
//! its channel too. Entries are recorded when a frame is handed to the connection's
//! queue, even if the queue refused it (closed): the edge stops writing to a connection
//! only by taking it out of the channel, and what the channel published after that is
//! told by the channel's own last offset at that moment (`at_leave` below).
//!
//! The trail keeps the latest [`Trail::capacity`] entries; a client whose last offset is
//! older than that (or was never written to this connection) gets no positions: a new
//! session, never a guess.

use crate::broker::{Epoch, Offset};
use std::collections::VecDeque;

/// The offsets written to one connection, oldest first, at most `capacity` of them.
#[derive(Debug)]
pub struct Trail {
    ring: VecDeque<Offset>,
    capacity: usize,
}

impl Trail {
    /// An empty trail keeping up to `capacity` entries; it allocates as entries come.
    pub fn new(capacity: usize) -> Trail {
        Trail {
            ring: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The offsets recorded, oldest first: what another node needs to rebuild it.
    pub fn entries(&self) -> impl Iterator<Item = &Offset> {
        self.ring.iter()
    }

    /// A trail of `capacity` holding `entries` (the latest of them, if more).
    pub fn from_entries(capacity: usize, entries: impl IntoIterator<Item = Offset>) -> Trail {
        let mut t = Trail::new(capacity);
        for o in entries {
            t.record(o);
        }
        t
    }

    /// One more frame written, carrying `offset`.
    pub fn record(&mut self, offset: Offset) {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(offset);
    }

    /// A mark to [`record`](Self::record) with a frame that carries no channel's
    /// offset: an offset of an epoch no stream has, for a client that has received no
    /// event yet.
    pub fn mark() -> Offset {
        Offset {
            epoch: Epoch::fresh(),
            seq: 0,
        }
    }

    /// Where the client stood on each channel when it received `last`, given for each
    /// channel its last offset when the connection left it (`at_leave`: the channel's
    /// last publication then, delivered to this connection or not). None when `last`
    /// is not in the trail, or a channel's `at_leave` is unknown.
    ///
    /// For a channel C, with `i` the place of `last`:
    /// - the last C entry at or before `i`: the client received it;
    /// - else the entry before the first C entry after `i`: nothing of C was written
    ///   between `i` and it (or it would be recorded), nor in the trail before `i`;
    /// - else `at_leave`: nothing of C was written after `i` until the connection left
    ///   C, and what C published before `i` reached the client or was not for it
    ///   (`toOthers`, skipped again on replay).
    pub fn positions(&self, last: Offset, at_leave: &[Option<Offset>]) -> Option<Vec<Offset>> {
        let i = self.ring.iter().rposition(|o| *o == last)?;
        at_leave
            .iter()
            .map(|left| {
                let left = (*left)?;
                let epoch = left.epoch;
                if let Some(o) = self.ring.range(..=i).rev().find(|o| o.epoch == epoch) {
                    return Some(*o);
                }
                if let Some(f) = self.ring.range(i + 1..).find(|o| o.epoch == epoch) {
                    return Some(Offset {
                        epoch,
                        seq: f.seq.checked_sub(1)?,
                    });
                }
                Some(left)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(epoch: u64, seq: u64) -> Offset {
        Offset {
            epoch: Epoch(epoch),
            seq,
        }
    }

    #[test]
    fn a_position_on_every_channel_from_one_offset() {
        let mut t = Trail::new(8);
        // a: 1 2 3, b: 7, written interleaved; the client received up to a-2.
        for x in [o(1, 1), o(2, 7), o(1, 2), o(1, 3), o(2, 8)] {
            t.record(x);
        }
        let left = [Some(o(1, 3)), Some(o(2, 9)), Some(o(3, 4))];
        assert_eq!(
            t.positions(o(1, 2), &left),
            Some(vec![o(1, 2), o(2, 7), o(3, 4)]),
            "a: what it got; b: what it got; c: nothing written, where c stood"
        );
        // It received only b-7: a stands before the first a written after it.
        assert_eq!(t.positions(o(2, 7), &left[..1]), Some(vec![o(1, 1)]));
        // A channel whose last offset at leave is unknown: no answer.
        assert_eq!(t.positions(o(1, 2), &[None]), None);
    }

    #[test]
    fn a_mark_names_a_place_before_any_event() {
        let mut t = Trail::new(8);
        let m = Trail::mark();
        t.record(m);
        t.record(o(1, 5));
        assert_eq!(t.positions(m, &[Some(o(1, 6))]), Some(vec![o(1, 4)]));
        assert_eq!(
            t.positions(m, &[Some(o(2, 0))]),
            Some(vec![o(2, 0)]),
            "joined, nothing published"
        );
    }

    #[test]
    fn bounded_and_never_guesses() {
        let mut t = Trail::new(2);
        for s in 1..=3 {
            t.record(o(1, s));
        }
        assert_eq!(t.positions(o(1, 1), &[Some(o(1, 3))]), None, "fell out");
        assert_eq!(t.positions(o(1, 2), &[Some(o(1, 3))]), Some(vec![o(1, 2)]));
        assert_eq!(t.positions(o(9, 9), &[]), None, "never written here");
    }
}
