//! A hash map split into shards, each behind its own read-write lock: the one structure
//! behind the broker's channel registry, socket.io's rooms and each Pusher app's channels.
//!
//! Every publication looks a channel name up here, on whichever core it runs, so:
//! - publications to different channels take different locks and never contend, and
//!   publications to the same channel share a read lock;
//! - keys are hashed with foldhash (randomly seeded per map, so channel names chosen by
//!   clients cannot force collisions), several times cheaper than std's SipHash on
//!   channel-sized keys;
//! - the number of keys in all shards is kept in one atomic that writers update and
//!   readers only load, so "is anything subscribed at all?" costs a shared read, not a
//!   lock. An edge nobody uses is skipped by every publication at that price.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

type Hasher = foldhash::fast::RandomState;

/// One shard's map.
pub type Map<K, V> = HashMap<K, V, Hasher>;

pub struct Sharded<K, V> {
    /// Picks the shard; each shard's map has its own seed, so keys that share a shard
    /// still spread over that map's buckets.
    hasher: Hasher,
    shards: Box<[RwLock<Map<K, V>>]>,
    keys: AtomicUsize,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    pub fn new(shards: usize) -> Self {
        Sharded {
            hasher: Hasher::default(),
            shards: (0..shards).map(|_| RwLock::new(Map::default())).collect(),
            keys: AtomicUsize::new(0),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<Map<K, V>> {
        &self.shards[self.hasher.hash_one(key) as usize % self.shards.len()]
    }

    /// The shard that holds `key`, for reading.
    pub fn read<Q>(&self, key: &Q) -> RwLockReadGuard<'_, Map<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.shard(key).read()
    }

    /// The shard that holds `key`, for changing; the key count follows on release.
    pub fn write<Q>(&self, key: &Q) -> WriteGuard<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.lock(self.shard(key))
    }

    fn lock<'a>(&'a self, shard: &'a RwLock<Map<K, V>>) -> WriteGuard<'a, K, V> {
        let map = shard.write();
        WriteGuard {
            before: map.len(),
            map,
            keys: &self.keys,
        }
    }

    /// Look `key` up under its shard's read lock, skipping the lock when the map is empty.
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.is_empty() {
            return f(None);
        }
        f(self.read(key).get(key))
    }

    /// Keys in all shards. Exact once the writers of the moment are done.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every shard, for the rare walks over all keys (listings, `PUBSUB CHANNELS`).
    pub fn shards(&self) -> impl Iterator<Item = RwLockReadGuard<'_, Map<K, V>>> {
        self.shards.iter().map(|s| s.read())
    }

    /// Every shard in turn, for changing (the broker's sweep): each is locked when the
    /// iterator reaches it, so a walk that drops each guard before taking the next (a
    /// `for` loop's body) never holds two.
    pub fn write_each(&self) -> impl Iterator<Item = WriteGuard<'_, K, V>> {
        self.shards.iter().map(|s| self.lock(s))
    }
}

/// A shard locked for writing; dropping it publishes the change in its key count.
pub struct WriteGuard<'a, K, V> {
    map: RwLockWriteGuard<'a, Map<K, V>>,
    before: usize,
    keys: &'a AtomicUsize,
}

impl<K, V> Drop for WriteGuard<'_, K, V> {
    fn drop(&mut self) {
        let after = self.map.len();
        if after > self.before {
            self.keys.fetch_add(after - self.before, Ordering::Release);
        } else if after < self.before {
            self.keys.fetch_sub(self.before - after, Ordering::Release);
        }
    }
}

impl<K, V> Deref for WriteGuard<'_, K, V> {
    type Target = Map<K, V>;
    fn deref(&self) -> &Map<K, V> {
        &self.map
    }
}

impl<K, V> DerefMut for WriteGuard<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Map<K, V> {
        &mut self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keys_across_shards_and_skips_lookups_when_empty() {
        let m: Sharded<Box<str>, u32> = Sharded::new(8);
        assert!(m.is_empty());
        assert_eq!(m.with("a", |v| v.copied()), None);
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            m.write(*k).insert((*k).into(), i as u32);
        }
        m.write("a").insert("a".into(), 9); // replaced, not added
        assert_eq!(m.len(), 5);
        assert_eq!(m.with("a", |v| v.copied()), Some(9));
        assert_eq!(m.with("z", |v| v.copied()), None);
        m.write("b").remove("b");
        m.write("z").remove("z"); // absent: no change
        assert_eq!(m.len(), 4);
        assert_eq!(m.shards().map(|s| s.len()).sum::<usize>(), 4);
        for k in ["a", "c", "d", "e"] {
            m.write(k).remove(k);
        }
        assert!(m.is_empty());
    }
}
