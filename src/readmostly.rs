//! A list that every publication reads and only start-up changes: the stream patterns
//! the WebSocket edges hold, the Redis key prefixes learned from publications.
//!
//! A read-write lock would have each reading core write the lock's word, bouncing its
//! cache line between cores on every publication; an `ArcSwap` snapshot is read
//! without writing anything shared.

use arc_swap::{ArcSwap, Guard};
use std::sync::Arc;

pub struct ReadMostly<T: ?Sized>(ArcSwap<Vec<Arc<T>>>);

impl<T: ?Sized> Default for ReadMostly<T> {
    fn default() -> Self {
        ReadMostly(ArcSwap::from_pointee(Vec::new()))
    }
}

impl<T: ?Sized> ReadMostly<T> {
    pub fn push(&self, item: Arc<T>) {
        self.update(|items| {
            let mut items = items.to_vec();
            items.push(item.clone());
            items
        });
    }

    /// Replace the list with `f` of it (`f` runs again if another writer got in
    /// first); returns the list it replaced.
    pub fn update(&self, f: impl Fn(&[Arc<T>]) -> Vec<Arc<T>>) -> Arc<Vec<Arc<T>>> {
        self.0.rcu(|items| f(items))
    }

    /// The list as it is now.
    pub fn load(&self) -> Guard<Arc<Vec<Arc<T>>>> {
        self.0.load()
    }
}
