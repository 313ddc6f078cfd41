//! What a node must not answer from Redis's history: the offsets after which it delivered
//! publications Redis never numbered.
//!
//! While Redis cannot be reached, a node still delivers its own publications to its own
//! clients, numbered in an epoch of its own (the stream's, see `streams.rs`). A client
//! of this node that stood before such a stretch (its last cluster offset on the channel
//! is `E-n`, then it missed some of the node's own) must not be given Redis's entries
//! after `E-n` as if that were all it missed: the node's own are in no history once the
//! stream went back to Redis's numbering. So each stretch leaves a taint, the channel's
//! position when it began, and [`Taints::covers`] refuses reading Redis's history from
//! any offset of that epoch up to it, for one history TTL (after which the history no
//! longer reaches back there anyway). A channel with no stream here when it began is
//! tainted whole. Another node does not know of this node's stretch: what its clients
//! missed of it is lost to them (the README says so).

use super::super::{Namespace, Offset};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Up to which offset of which epoch (None: every offset) Redis's history is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Taint {
    upto: Option<Offset>,
    until: Instant,
}

pub struct Taints {
    ttl: Duration,
    by_channel: Mutex<HashMap<(Namespace, Bytes), Vec<Taint>>>,
}

impl Taints {
    pub fn new(ttl: Duration) -> Taints {
        Taints {
            ttl,
            by_channel: Mutex::default(),
        }
    }

    /// The node numbers a publication of `channel` itself, its stream standing at
    /// `position` (None: no stream here).
    pub fn add(&self, namespace: &Namespace, channel: &[u8], position: Option<Offset>) {
        let taint = Taint {
            upto: position,
            until: Instant::now() + self.ttl,
        };
        let mut map = self.by_channel.lock();
        let held = map
            .entry((namespace.clone(), Bytes::copy_from_slice(channel)))
            .or_default();
        match held.iter_mut().find(|t| same_epoch(t.upto, position)) {
            Some(t) => {
                if let (Some(held), Some(now)) = (t.upto, position) {
                    t.upto = Some(if now.seq > held.seq { now } else { held });
                }
                t.until = taint.until;
            }
            None => held.push(taint),
        }
    }

    /// Whether Redis's history after `offset` would hide publications of this node's.
    pub fn covers(&self, namespace: &Namespace, channel: &[u8], offset: Offset) -> bool {
        let now = Instant::now();
        let map = self.by_channel.lock();
        let key = (namespace.clone(), Bytes::copy_from_slice(channel));
        map.get(&key).is_some_and(|held| {
            held.iter().any(|t| {
                t.until > now
                    && t.upto
                        .is_none_or(|u| u.epoch == offset.epoch && offset.seq <= u.seq)
            })
        })
    }

    /// Forget the taints older than a history TTL.
    pub fn sweep(&self, now: Instant) {
        self.by_channel.lock().retain(|_, held| {
            held.retain(|t| t.until > now);
            !held.is_empty()
        });
    }
}

fn same_epoch(a: Option<Offset>, b: Option<Offset>) -> bool {
    a.map(|o| o.epoch) == b.map(|o| o.epoch)
}

#[cfg(test)]
mod tests {
    use super::super::super::Epoch;
    use super::*;

    fn at(epoch: u64, seq: u64) -> Offset {
        Offset {
            epoch: Epoch(epoch),
            seq,
        }
    }

    #[test]
    fn refuses_up_to_where_the_stretch_began_in_that_epoch_for_a_ttl() {
        let t = Taints::new(Duration::from_secs(60));
        let ns = Namespace::Default;
        t.add(&ns, b"a", Some(at(1, 5)));
        t.add(&ns, b"a", Some(at(1, 7)));
        assert!(t.covers(&ns, b"a", at(1, 7)));
        assert!(t.covers(&ns, b"a", at(1, 2)));
        assert!(!t.covers(&ns, b"a", at(1, 8)), "after the stretch");
        assert!(!t.covers(&ns, b"a", at(2, 1)), "another epoch");
        assert!(!t.covers(&ns, b"b", at(1, 1)), "another channel");
        t.add(&ns, b"b", None);
        assert!(t.covers(&ns, b"b", at(9, 100)), "no stream here: all of it");
        t.sweep(Instant::now() + Duration::from_secs(61));
        assert!(!t.covers(&ns, b"a", at(1, 2)), "forgotten after a TTL");
        assert!(t.by_channel.lock().is_empty());
    }
}
