//! Live frames held back while a recovering connection's replay is read.
//!
//! A recovering connection rejoins its channels first, so nothing published from then
//! on can pass it by, and reads what it missed ([`crate::broker::Broker::since`]) after.
//! Publications in between reach it twice: live, and at the end of the replay. The
//! edge holds the live ones ([`Held`]) until the replay is written, then writes only
//! those the replay did not cover ([`Held::release`]): a channel's frames come in offset
//! order, so a held frame is covered when the replay of its channel reached its offset.
//! The hold lasts one read of the history, so it stays small.
//!
//! In a cluster the replay may be read from Redis, which can be ahead of what has reached
//! this node yet: publications it covered may still arrive live after it was written.
//! [`Covered`] drops those, channel by channel, until a live frame passes where the
//! channel's replay stopped.

use crate::broker::Offset;

/// Frames queued for a connection while its replay is read, in order, with their
/// offsets (None for frames that belong to no channel's stream).
#[derive(Debug)]
pub struct Held<F> {
    frames: Vec<(Option<Offset>, F)>,
}

impl<F> Default for Held<F> {
    fn default() -> Self {
        Held { frames: Vec::new() }
    }
}

impl<F> Held<F> {
    pub fn hold(&mut self, offset: Option<Offset>, frame: F) {
        self.frames.push((offset, frame));
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Apply `f` to every held frame (e.g. re-frame them for another transport).
    pub fn map_frames(&mut self, mut f: impl FnMut(&F) -> F) {
        for (_, frame) in &mut self.frames {
            *frame = f(frame);
        }
    }

    /// The held frames `replayed` does not cover, in the order they came.
    pub fn release<'a>(
        self,
        replayed: &'a [Offset],
    ) -> impl Iterator<Item = (Option<Offset>, F)> + 'a
    where
        F: 'a,
    {
        self.frames.into_iter().filter(move |(o, _)| match o {
            Some(o) => !replayed
                .iter()
                .any(|r| r.epoch == o.epoch && o.seq <= r.seq),
            None => true,
        })
    }
}

/// Where a written replay stopped on each channel whose live frames have not passed it
/// yet.
#[derive(Debug)]
pub struct Covered(Vec<Offset>);

impl Covered {
    /// After a replay that stopped at `replayed`; None if it covered nothing.
    pub fn after(replayed: &[Offset]) -> Option<Covered> {
        (!replayed.is_empty()).then(|| Covered(replayed.to_vec()))
    }

    /// Whether a live frame at `offset` is new (the replay did not cover it); the first
    /// new one of a channel ends that channel's cover.
    pub fn passes(&mut self, offset: Offset) -> bool {
        match self.0.iter().position(|c| c.epoch == offset.epoch) {
            Some(i) if offset.seq <= self.0[i].seq => false,
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => true,
        }
    }

    /// Whether no channel is covered any more.
    pub fn is_over(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Epoch;

    #[test]
    fn drops_what_the_replay_covered_and_keeps_the_order() {
        let o = |e, seq| Offset {
            epoch: Epoch(e),
            seq,
        };
        let mut h = Held::default();
        for (off, f) in [
            (Some(o(1, 4)), "a4"),
            (None, "joining"),
            (Some(o(2, 9)), "b9"),
            (Some(o(1, 5)), "a5"),
            (Some(o(3, 1)), "c1"),
        ] {
            h.hold(off, f);
        }
        // The replay of a went up to 4, of b up to 9; c was not replayed.
        let kept: Vec<_> = h.release(&[o(1, 4), o(2, 9)]).map(|(_, f)| f).collect();
        assert_eq!(kept, ["joining", "a5", "c1"]);
    }

    #[test]
    fn after_the_replay_drops_what_it_covered_until_each_channel_passes_it() {
        let o = |e, seq| Offset {
            epoch: Epoch(e),
            seq,
        };
        assert!(Covered::after(&[]).is_none());
        let mut c = Covered::after(&[o(1, 4), o(2, 9)]).unwrap();
        assert!(!c.passes(o(1, 3)) && !c.passes(o(1, 4)), "replayed already");
        assert!(c.passes(o(3, 1)), "not replayed");
        assert!(c.passes(o(1, 5)));
        assert!(!c.is_over(), "b still covered");
        assert!(c.passes(o(2, 10)));
        assert!(c.is_over());
    }
}
