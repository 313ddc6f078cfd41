//! Who is subscribed to what over RESP: sharded maps for channels, one map for patterns;
//! and [`Keyed`], the subscriber set both these and the streams use.
//!
//! Channel registries are [`Sharded`] maps, so publishes to different channels never
//! contend and publishes to the same channel only share a read lock. Both kinds keep a
//! count that a publication reads without locking when nobody is subscribed.

use super::{glob, Subscriber, SubscriberId, Via};
use crate::sharded::{Map, Sharded};
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SHARDS: usize = 32;

/// A set of subscribers keyed by id: adding, finding and removing one costs the same
/// however many there are (a mass reconnect of n subscribers to one channel is O(n), not
/// O(n²)), and a publication walks a plain vector of the subscribers alone (their ids
/// are kept in a vector beside it, so the walk reads no more memory than a `Vec` would).
pub struct Keyed<V> {
    values: Vec<V>,
    ids: Vec<SubscriberId>,
    at: Map<SubscriberId, usize>,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            values: Vec::new(),
            ids: Vec::new(),
            at: Map::default(),
        }
    }
}

impl<V> Keyed<V> {
    /// Add `v` as `id`'s; false (and nothing changed) if `id` is already here.
    pub fn insert(&mut self, id: SubscriberId, v: V) -> bool {
        match self.at.entry(id) {
            Entry::Occupied(_) => false,
            Entry::Vacant(e) => {
                e.insert(self.values.len());
                self.values.push(v);
                self.ids.push(id);
                true
            }
        }
    }

    pub fn get(&self, id: SubscriberId) -> Option<&V> {
        Some(&self.values[*self.at.get(&id)?])
    }

    pub fn get_mut(&mut self, id: SubscriberId) -> Option<&mut V> {
        let i = *self.at.get(&id)?;
        Some(&mut self.values[i])
    }

    pub fn remove(&mut self, id: SubscriberId) -> Option<V> {
        let i = self.at.remove(&id)?;
        let v = self.values.swap_remove(i);
        self.ids.swap_remove(i);
        if let Some(&moved) = self.ids.get(i) {
            self.at.insert(moved, i);
        }
        Some(v)
    }

    pub fn values(&self) -> std::slice::Iter<'_, V> {
        self.values.iter()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

type Subscribers = Keyed<Arc<dyn Subscriber>>;

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
        shard.entry(name).or_default().insert(sub.id(), sub)
    }

    pub fn remove(&self, name: &[u8], id: SubscriberId) -> bool {
        let mut shard = self.map.write(name);
        let Some(subs) = shard.get_mut(name) else {
            return false;
        };
        let removed = subs.remove(id).is_some();
        if subs.is_empty() {
            shard.remove(name);
        }
        removed
    }

    pub fn deliver(&self, name: &Bytes, payload: &Bytes, via: Via<'_>) -> usize {
        self.map.with(name.as_ref(), |subs| match subs {
            Some(subs) => {
                for s in subs.values() {
                    s.deliver(via, name, payload);
                }
                subs.len()
            }
            None => 0,
        })
    }

    pub fn count(&self, name: &[u8]) -> usize {
        self.map.with(name, |subs| subs.map_or(0, Keyed::len))
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
        let subs = map.entry(pattern).or_insert_with(|| {
            self.count.fetch_add(1, Ordering::Release);
            Keyed::default()
        });
        subs.insert(sub.id(), sub)
    }

    pub fn remove(&self, pattern: &[u8], id: SubscriberId) -> bool {
        let mut map = self.patterns.write();
        let Some(subs) = map.get_mut(pattern) else {
            return false;
        };
        let removed = subs.remove(id).is_some();
        if subs.is_empty() {
            map.remove(pattern);
            self.count.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    /// Inlined, so that a publication checks for "no patterns at all" without a call.
    #[inline]
    pub fn deliver(&self, channel: &Bytes, payload: &Bytes) -> usize {
        if self.len() == 0 {
            return 0;
        }
        self.deliver_matching(channel, payload)
    }

    fn deliver_matching(&self, channel: &Bytes, payload: &Bytes) -> usize {
        let map = self.patterns.read();
        let mut n = 0;
        for (pattern, subs) in map.iter() {
            if glob::matches(pattern, channel) {
                for s in subs.values() {
                    s.deliver(Via::Pattern(pattern), channel, payload);
                }
                n += subs.len();
            }
        }
        n
    }

    /// The pattern subscriptions `channel` matches, as [`PatternRegistry::deliver`]
    /// counts them, without delivering.
    pub fn count(&self, channel: &[u8]) -> usize {
        if self.len() == 0 {
            return 0;
        }
        let map = self.patterns.read();
        (map.iter())
            .filter(|(pattern, _)| glob::matches(pattern, channel))
            .map(|(_, subs)| subs.len())
            .sum()
    }

    pub fn names(&self) -> Vec<Bytes> {
        self.patterns.read().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_sets_find_and_remove_by_id_after_swaps() {
        let mut k = Keyed::default();
        for id in 1..=5u64 {
            assert!(k.insert(id, id * 10));
        }
        assert!(!k.insert(3, 0), "already there");
        assert_eq!(k.remove(1), Some(10)); // 5 moves into 1's place
        assert_eq!(k.remove(1), None);
        *k.get_mut(5).unwrap() += 1;
        assert_eq!(k.remove(5), Some(51));
        assert!(k.get(2).is_some() && k.get(5).is_none());
        let mut left: Vec<u64> = k.values().copied().collect();
        left.sort();
        assert_eq!(left, [20, 30, 40]);
        for id in [4, 2, 3] {
            assert!(k.remove(id).is_some());
        }
        assert!(k.is_empty() && k.at.is_empty());
    }
}
