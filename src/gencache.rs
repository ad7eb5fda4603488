//! A bounded, sharded map from 128-bit xxh3 keys to small values, evicting by
//! generation: each shard fills a young map; when it is full the old map is
//! dropped (outside the lock) and the young one becomes old. A hit in the old
//! map is promoted, so what every request re-reads stays. Shared by every
//! request of a sidecar (the fingerprint cache, the message facts cache).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

/// Independent locks, so concurrent requests rarely wait on each other; each
/// critical section is one hash map probe and a copy of a few words.
const SHARDS: usize = 16;

/// Keys are already uniform xxh3 output: hash maps use their low bits as is.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, i: u128) {
        // Truncation on purpose: the low half of a 128-bit xxh3 is itself uniform.
        self.0 = i as u64;
    }
}

type Map<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

struct Shard<V> {
    young: Map<V>,
    old: Map<V>,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            young: Map::default(),
            old: Map::default(),
        }
    }
}

/// See the module docs.
pub struct GenerationCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Entries per generation per shard.
    generation: usize,
}

impl<V> GenerationCache<V> {
    /// A cache holding at most `capacity` entries (rounded up to a multiple of 32).
    pub fn new(capacity: usize) -> Self {
        let generation = capacity.div_ceil(2 * SHARDS).max(1);
        GenerationCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation,
        }
    }

    /// Most entries held.
    pub fn capacity(&self) -> usize {
        self.generation * 2 * SHARDS
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                s.young.len() + s.old.len()
            })
            .sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: u128) -> &Mutex<Shard<V>> {
        // High bits pick the shard; the maps use the low ones.
        &self.shards[(key >> 64) as usize % SHARDS]
    }

    /// `read` of the entry under `key`, if any.
    pub fn get<T>(&self, key: u128, read: impl FnOnce(&V) -> T) -> Option<T> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = shard.young.get(&key) {
            return Some(read(e));
        }
        let e = shard.old.remove(&key)?;
        let out = read(&e);
        let dropped = shard.put(key, e, self.generation);
        drop(shard);
        drop(dropped);
        Some(out)
    }

    /// Holds `value` under `key`.
    pub fn insert(&self, key: u128, value: V) {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let dropped = shard.put(key, value, self.generation);
        // Freeing a whole generation is the only slow step: do it after unlocking.
        drop(shard);
        drop(dropped);
    }
}

impl<V> Shard<V> {
    /// Inserts into the young generation, rotating first when it is full; returns the
    /// evicted generation for the caller to drop outside the lock.
    fn put(&mut self, key: u128, value: V, generation: usize) -> Option<Map<V>> {
        let mut evicted = None;
        if self.young.len() >= generation && !self.young.contains_key(&key) {
            let young = std::mem::take(&mut self.young);
            evicted = Some(std::mem::replace(&mut self.old, young));
        }
        self.young.insert(key, value);
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_keeps_what_is_read() {
        let cache = GenerationCache::new(64);
        assert_eq!(cache.capacity(), 64);
        // Keys in one shard (same high bits), so its two generations fill.
        let key = |i: u128| i;
        cache.insert(key(0), 0u32);
        for i in 1..200 {
            cache.insert(key(i), i as u32);
            // Read every time: promoted from old to young, never evicted.
            assert_eq!(cache.get(key(0), |v| *v), Some(0));
        }
        // All in one shard: at most its two generations of 2 entries each.
        assert!(cache.len() <= 4, "{}", cache.len());
        assert_eq!(cache.get(key(199), |v| *v), Some(199));
        assert_eq!(cache.get(key(1), |v| *v), None, "the oldest is gone");
    }
}
