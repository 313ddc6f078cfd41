//! A fixed ring of the last N samples, oldest first: what the dashboard's chart draws.
//!
//! The sampler pushes one sample a second and a new viewer reads the whole ring once;
//! memory is bounded by the capacity whatever the uptime, and the oldest sample is the
//! one that gives way.

use std::collections::VecDeque;

/// At most `capacity` items; pushing into a full ring drops the oldest.
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring of `capacity` (at least 1) items.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Ring {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Keep `item` as the newest, dropping the oldest if the ring is full.
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_capacity_items_oldest_first() {
        let mut r = Ring::new(3);
        assert_eq!(r.iter().count(), 0);
        for i in 1..=2 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [1, 2]);
        for i in 3..=7 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [5, 6, 7]);
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_newest() {
        let mut r = Ring::new(0);
        r.push('a');
        r.push('b');
        assert_eq!(r.iter().collect::<Vec<_>>(), [&'b']);
    }
}
