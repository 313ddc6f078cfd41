//! Live frames held back while a recovering connection's replay is read.
//!
//! A recovering connection rejoins its channels first, so nothing published from then
//! on can pass it by, and reads what it missed ([`crate::broker::Broker::since`]) after.
//! Publications in between reach it twice: live, and at the end of the replay. The
//! edge holds the live ones ([`Held`]) until the replay is written, then writes only
//! those the replay did not cover ([`Held::release`]): a channel's frames come in offset
//! order, so a held frame is covered when the replay of its channel reached its offset.
//! The hold lasts one synchronous read of the history, so it stays small.

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
}
