//! Sessions in front of sled, written behind: a map bounded in bytes,
//! sharded by key so that requests for different conversations rarely share
//! a lock. An
//! update marks its entry dirty; a write pass takes the dirty entries and
//! reports them written. Only clean entries are evicted (CLOCK: an entry
//! read or updated since the hand last passed gets a second round), so sled
//! never holds an older version than a session the cache dropped.
//!
//! Entries hold the stored encoding (codec.rs), not the decoded `Session`:
//! a third of the memory, and the decode on a read costs what the clone of
//! a decoded session would.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard},
};

/// Most shards; fewer for small caches, so each shard holds a few hundred
/// sessions.
const MAX_SHARDS: usize = 64;
const PER_SHARD_HINT: usize = 128 * 1024;

/// Memory of an entry besides its key and encoding: the slot, the map's
/// bucket and slack, allocator rounding.
const ENTRY_OVERHEAD: usize = 160;

/// A cached session and what sled holds of it.
#[derive(Debug)]
pub(super) struct Cached {
    /// The session in its stored encoding.
    pub bytes: Vec<u8>,
    /// The session's `last_seen_ms`, for expiry without decoding.
    pub last_seen_ms: u64,
}

/// Index of an entry in its shard, valid while the shard's lock is held or
/// while the entry is not clean (only clean entries are evicted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotId(usize);

struct Slot {
    key: Arc<[u8]>,
    value: Cached,
    /// Changed since last handed to a write pass (then on the dirty list).
    dirty: bool,
    /// Handed to a write pass that has not reported back.
    writing: bool,
    /// Read or updated since the clock hand last passed.
    referenced: bool,
}

impl Slot {
    fn clean(&self) -> bool {
        !self.dirty && !self.writing
    }
}

/// One shard: its map, the slots it points into, and the dirty list.
pub(super) struct Shard {
    index: HashMap<Arc<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    dirty: Vec<usize>,
    /// Entries dirty or being written (not evictable).
    unclean: usize,
    /// Memory of the entries, as [`cost`] counts it.
    bytes: usize,
    budget: usize,
}

/// The sharded cache.
pub(super) struct SessionCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl SessionCache {
    /// A cache of about `budget` bytes (at most one session more per shard
    /// while every entry is still to be written).
    pub fn new(budget: usize) -> Self {
        let n = (budget / PER_SHARD_HINT)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let per_shard = budget.div_ceil(n);
        Self {
            shards: (0..n)
                .map(|_| {
                    Mutex::new(Shard {
                        index: HashMap::new(),
                        slots: Vec::new(),
                        free: Vec::new(),
                        hand: 0,
                        dirty: Vec::new(),
                        unclean: 0,
                        bytes: 0,
                        budget: per_shard,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// The shard of `key`, locked.
    pub fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        // Power-of-two shard count: the low bits pick the shard.
        let i = self.hasher.hash_one(key) as usize & (self.shards.len() - 1);
        lock(&self.shards[i])
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `i`, locked (write passes walk them in turn).
    pub fn shard_at(&self, i: usize) -> MutexGuard<'_, Shard> {
        lock(&self.shards[i])
    }

    /// Sessions held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).index.len()).sum()
    }

    /// Memory held, as counted against the budget.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
    }

    /// Sessions held that are not yet written.
    #[cfg(test)]
    pub fn dirty(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = lock(s);
                let unclean = s.slots.iter().flatten().filter(|s| !s.clean()).count();
                assert_eq!(unclean, s.unclean, "unclean count in step");
                unclean
            })
            .sum()
    }
}

/// What an entry counts against the budget.
fn cost(key: &[u8], value: &Cached) -> usize {
    key.len() + value.bytes.len() + ENTRY_OVERHEAD
}

/// A panic in an update closure leaves the shard consistent (an entry is
/// replaced only after the closure returns): keep serving it.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shard {
    /// The entry of `key`, marked as recently used.
    pub fn find(&mut self, key: &[u8]) -> Option<SlotId> {
        let i = *self.index.get(key)?;
        self.slot(i).referenced = true;
        Some(SlotId(i))
    }

    /// The entry of `key`, without marking it used (the sweeper's view).
    pub fn peek(&self, key: &[u8]) -> Option<SlotId> {
        self.index.get(key).map(|&i| SlotId(i))
    }

    pub fn value(&mut self, id: SlotId) -> &Cached {
        &self.slot(id.0).value
    }

    /// Replaces the entry's session and marks it dirty.
    pub fn update(&mut self, id: SlotId, bytes: Vec<u8>, last_seen_ms: u64) {
        let (new, value) = (bytes.len(), &mut self.slot(id.0).value);
        let old = std::mem::replace(&mut value.bytes, bytes).len();
        value.last_seen_ms = last_seen_ms;
        // A grown entry may take the shard past its budget until the next
        // insert evicts.
        self.bytes = self.bytes + new - old;
        self.set_dirty(id);
    }

    /// Changes the entry's encoding in place (same `last_seen_ms`) and
    /// marks it dirty.
    pub fn patch(&mut self, id: SlotId, f: impl FnOnce(&mut Vec<u8>)) {
        let bytes = &mut self.slot(id.0).value.bytes;
        let old = bytes.len();
        f(bytes);
        let new = bytes.len();
        self.bytes = self.bytes + new - old;
        self.set_dirty(id);
    }

    /// Whether sled holds the entry as cached.
    pub fn is_clean(&self, id: SlotId) -> bool {
        self.slots[id.0].as_ref().is_some_and(Slot::clean)
    }

    /// Marks the entry changed: the next write pass writes it.
    pub fn set_dirty(&mut self, id: SlotId) {
        let slot = self.slot(id.0);
        if slot.dirty {
            return;
        }
        slot.dirty = true;
        if !slot.writing {
            self.unclean += 1;
        }
        self.dirty.push(id.0);
    }

    /// Caches `value` under `key` (not cached yet), evicting clean entries
    /// to stay within the budget. Gives `value` back when the others are
    /// still to be written: the caller writes it through instead.
    pub fn insert(&mut self, key: &[u8], value: Cached, dirty: bool) -> Result<SlotId, Cached> {
        debug_assert!(!self.index.contains_key(key));
        let cost = cost(key, &value);
        while self.bytes + cost > self.budget {
            if !self.evict() {
                return Err(value);
            }
        }
        self.bytes += cost;
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let key: Arc<[u8]> = Arc::from(key);
        self.slots[i] = Some(Slot {
            key: Arc::clone(&key),
            value,
            dirty,
            writing: false,
            referenced: false,
        });
        self.index.insert(key, i);
        if dirty {
            self.dirty.push(i);
            self.unclean += 1;
        }
        Ok(SlotId(i))
    }

    /// Drops a clean entry (swept).
    pub fn remove(&mut self, id: SlotId) {
        debug_assert!(self.is_clean(id), "only clean entries leave the cache");
        self.drop_slot(id.0);
    }

    fn drop_slot(&mut self, i: usize) {
        let slot = self.slots[i].take().expect("slot of a live id");
        self.bytes -= cost(&slot.key, &slot.value);
        self.index.remove(&slot.key);
        self.free.push(i);
    }

    /// Hands every dirty entry to a write pass: `f` makes what the pass
    /// writes. Each must be reported with [`Shard::written`].
    pub fn take_dirty<T>(
        &mut self,
        mut f: impl FnMut(&Arc<[u8]>, &Cached) -> T,
    ) -> Vec<(SlotId, T)> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out = Vec::with_capacity(dirty.len());
        for &i in &dirty {
            let slot = self.slot(i);
            slot.dirty = false;
            slot.writing = true;
            out.push((SlotId(i), f(&slot.key, &slot.value)));
        }
        // Keep the list's allocation for the next round.
        self.dirty = dirty;
        self.dirty.clear();
        out
    }

    /// Reports a write of the pass: on success sled holds the version
    /// taken; on failure the entry is dirty again and the next pass
    /// retries it.
    pub fn written(&mut self, id: SlotId, ok: bool) {
        let slot = self.slot(id.0);
        slot.writing = false;
        if !ok {
            // Still unclean: dirty again for the next pass.
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(id.0);
            }
            return;
        }
        if !slot.dirty {
            self.unclean -= 1;
        }
    }

    fn slot(&mut self, i: usize) -> &mut Slot {
        self.slots[i].as_mut().expect("slot of a live id")
    }

    /// Drops a clean entry; false when every entry is dirty or being
    /// written.
    fn evict(&mut self) -> bool {
        if self.unclean >= self.index.len() {
            return false;
        }
        let n = self.slots.len();
        // Two rounds: the first may only clear reference bits.
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            if std::mem::take(&mut slot.referenced) || !slot.clean() {
                continue;
            }
            self.drop_slot(i);
            return true;
        }
        false
    }
}
