//! Who is subscribed to what: sharded maps for channels, a read-mostly list for patterns.
//!
//! Channel registries are [`Sharded`] maps, so publishes to different channels never
//! contend and publishes to the same channel only share a read lock. Both kinds keep a
//! count that a publication reads without locking when nobody is subscribed.

use super::{glob, Subscriber, SubscriberId, Via};
use crate::sharded::Sharded;
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SHARDS: usize = 32;

type Subscribers = Vec<Arc<dyn Subscriber>>;

/// Exact-name subscriptions (channels or shard channels).
pub struct Registry {
    map: Sharded<Bytes, Subscribers>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            map: Sharded::new(SHARDS),
        }
    }
}

impl Registry {
    pub fn add(&self, name: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        let mut shard = self.map.write(&name);
        let subs = shard.entry(name).or_default();
        if subs.iter().any(|s| s.id() == sub.id()) {
            return false;
        }
        subs.push(sub);
        true
    }

    pub fn remove(&self, name: &[u8], id: SubscriberId) -> bool {
        let mut shard = self.map.write(name);
        let Some(subs) = shard.get_mut(name) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| s.id() != id);
        let removed = subs.len() != before;
        if subs.is_empty() {
            shard.remove(name);
        }
        removed
    }

    pub fn deliver(&self, name: &Bytes, payload: &Bytes, via: Via<'_>) -> usize {
        self.map.with(name.as_ref(), |subs| match subs {
            Some(subs) => {
                for s in subs {
                    s.deliver(via, name, payload);
                }
                subs.len()
            }
            None => 0,
        })
    }

    pub fn count(&self, name: &[u8]) -> usize {
        self.map.with(name, |subs| subs.map_or(0, Vec::len))
    }

    pub fn names(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut out = Vec::new();
        for shard in self.map.shards() {
            out.extend(
                shard
                    .keys()
                    .filter(|k| pattern.is_none_or(|p| glob::matches(p, k)))
                    .cloned(),
            );
        }
        out
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Pattern subscriptions: few, read on every publish, written rarely.
#[derive(Default)]
pub struct PatternRegistry {
    patterns: RwLock<HashMap<Bytes, Subscribers>>,
    /// Patterns in the map, loaded without the lock by publications when there are none.
    count: AtomicUsize,
}

impl PatternRegistry {
    pub fn add(&self, pattern: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        let mut map = self.patterns.write();
        match map.entry(pattern) {
            Entry::Occupied(mut e) => {
                if e.get().iter().any(|s| s.id() == sub.id()) {
                    return false;
                }
                e.get_mut().push(sub);
            }
            Entry::Vacant(e) => {
                e.insert(vec![sub]);
                self.count.fetch_add(1, Ordering::Release);
            }
        }
        true
    }

    pub fn remove(&self, pattern: &[u8], id: SubscriberId) -> bool {
        let mut map = self.patterns.write();
        let Some(subs) = map.get_mut(pattern) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| s.id() != id);
        let removed = subs.len() != before;
        if subs.is_empty() {
            map.remove(pattern);
            self.count.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    pub fn deliver(&self, channel: &Bytes, payload: &Bytes) -> usize {
        if self.len() == 0 {
            return 0;
        }
        let map = self.patterns.read();
        let mut n = 0;
        for (pattern, subs) in map.iter() {
            if glob::matches(pattern, channel) {
                for s in subs {
                    s.deliver(Via::Pattern(pattern), channel, payload);
                }
                n += subs.len();
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}
