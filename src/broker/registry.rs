//! Who is subscribed to what: sharded maps for channels, a read-mostly list for patterns.
//!
//! Channel registries are split into shards by a hash of the channel name, each behind
//! its own read-write lock, so publishes to different channels never contend and
//! publishes to the same channel only share a read lock.

use super::{glob, Subscriber, SubscriberId, Via};
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::BuildHasher;
use std::sync::Arc;

const SHARDS: usize = 32;

type Subscribers = Vec<Arc<dyn Subscriber>>;

/// Exact-name subscriptions (channels or shard channels).
pub struct Registry {
    hasher: RandomState,
    shards: Box<[RwLock<HashMap<Bytes, Subscribers>>]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, name: &[u8]) -> &RwLock<HashMap<Bytes, Subscribers>> {
        let h = self.hasher.hash_one(name) as usize;
        &self.shards[h % SHARDS]
    }

    pub fn add(&self, name: Bytes, sub: Arc<dyn Subscriber>) -> bool {
        let mut shard = self.shard(&name).write();
        let subs = shard.entry(name).or_default();
        if subs.iter().any(|s| s.id() == sub.id()) {
            return false;
        }
        subs.push(sub);
        true
    }

    pub fn remove(&self, name: &[u8], id: SubscriberId) -> bool {
        let mut shard = self.shard(name).write();
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
        let shard = self.shard(name).read();
        match shard.get(name.as_ref()) {
            Some(subs) => {
                for s in subs {
                    s.deliver(via, name, payload);
                }
                subs.len()
            }
            None => 0,
        }
    }

    pub fn count(&self, name: &[u8]) -> usize {
        self.shard(name).read().get(name).map_or(0, Vec::len)
    }

    pub fn names(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(
                shard
                    .read()
                    .keys()
                    .filter(|k| pattern.is_none_or(|p| glob::matches(p, k)))
                    .cloned(),
            );
        }
        out
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// Pattern subscriptions: few, read on every publish, written rarely.
#[derive(Default)]
pub struct PatternRegistry {
    patterns: RwLock<HashMap<Bytes, Subscribers>>,
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
        }
        removed
    }

    pub fn deliver(&self, channel: &Bytes, payload: &Bytes) -> usize {
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
        self.patterns.read().len()
    }
}
