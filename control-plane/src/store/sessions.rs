//! The sessions part: tree `sessions` behind a bounded cache (cache.rs),
//! written behind by write passes, and the activity index (activity.rs)
//! that every write to the tree keeps.
//!
//! Why this is safe without sled's compare-and-swap: the shard lock is held
//! from the cache lookup through the sled read of a miss to the cached
//! result, so every update of one key sees the one before it; only clean
//! entries are evicted, so a later miss never loads an older record than
//! the one evicted; and write passes run one at a time, so sled receives
//! each session's versions in order.

use std::sync::{Arc, Mutex, PoisonError};

use super::{
    Session, StoreError, Updated,
    activity::Activity,
    cache::{Cached, SessionCache, Shard},
    codec::{self, decode_session, encode_session, is_compact},
};

/// How long a session stays live after its last turn.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ttl(u64);

impl Ttl {
    pub fn from_ms(ms: u64) -> Self {
        Self(ms)
    }

    /// Whether a session last seen at `last_seen_ms` is live at `now_ms`.
    pub fn is_live(self, last_seen_ms: u64, now_ms: u64) -> bool {
        last_seen_ms.saturating_add(self.0) > now_ms
    }
}

/// Sessions: the tree, the cache in front of it, and the index of its
/// records by activity.
pub(super) struct Sessions {
    tree: sled::Tree,
    cache: SessionCache,
    index: Activity,
    ttl: Ttl,
    /// One write pass at a time, so two passes never reorder the writes of
    /// one session.
    pass: Mutex<()>,
}

/// A session taken by a write pass.
struct Pending {
    key: Arc<[u8]>,
    bytes: Vec<u8>,
}

/// Sessions that looked idle in a scan, and where the next scan starts.
pub(super) struct Scan {
    pub idle: Vec<sled::IVec>,
    /// The smallest key after the last one scanned; empty after the end.
    pub resume: Vec<u8>,
}

impl Sessions {
    /// Opens the tree and its index; indexes every stored session if the
    /// index is new (a store from before it).
    pub fn open(db: &sled::Db, ttl: Ttl, cache_bytes: usize) -> Result<Self, StoreError> {
        let tree = db.open_tree("sessions")?;
        let sessions = Self {
            index: Activity::open(db, tree.clone(), ttl)?,
            tree,
            cache: SessionCache::new(cache_bytes),
            ttl,
            pass: Mutex::new(()),
        };
        let indexed = sessions.index.backfill(&sessions.tree)?;
        if indexed > 0 {
            tracing::info!(sessions = indexed, "indexed stored sessions by activity");
        }
        Ok(sessions)
    }

    /// The index by activity (the console's list, degraded marks).
    pub fn index(&self) -> &Activity {
        &self.index
    }

    pub fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Session>, StoreError> {
        let mut shard = self.cache.shard(key);
        if let Some(id) = shard.find(key) {
            let cached = shard.value(id);
            if !self.ttl.is_live(cached.last_seen_ms, now_ms) {
                return Ok(None);
            }
            return decode_session(&cached.bytes).map(Some);
        }
        let Some(raw) = self.tree.get(key)? else {
            return Ok(None);
        };
        let session = decode_session(&raw)?;
        if !self.ttl.is_live(session.last_seen_ms, now_ms) {
            return Ok(None);
        }
        // Full of unwritten sessions: served, just not cached.
        let _ = shard.insert(key, cached(&session, Some(&raw)), false);
        Ok(Some(session))
    }

    pub fn update(
        &self,
        key: &[u8],
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError> {
        let mut shard = self.cache.shard(key);
        if let Some(id) = shard.find(key) {
            let cached = shard.value(id);
            let before = if self.ttl.is_live(cached.last_seen_ms, now_ms) {
                Some(decode_session(&cached.bytes)?)
            } else {
                None
            };
            let after = f(before.as_ref());
            shard.update(id, encode_session(&after), after.last_seen_ms);
            return Ok(Updated { before, after });
        }
        let stored = self
            .tree
            .get(key)?
            .map(|raw| decode_session(&raw))
            .transpose()?;
        let before = stored.filter(|s| self.ttl.is_live(s.last_seen_ms, now_ms));
        let after = f(before.as_ref());
        self.cache_changed(&mut shard, key, &after)?;
        Ok(Updated { before, after })
    }

    /// Caches `s`, changed and not yet in the cache, to be written behind.
    fn cache_changed(&self, shard: &mut Shard, key: &[u8], s: &Session) -> Result<(), StoreError> {
        if let Err(cached) = shard.insert(key, cached(s, None), true) {
            // Every cached session is still to be written (the flusher is
            // behind): write this one through, as if there were no cache.
            // The shard lock is still held, and the key is not cached, so
            // no pass writes it meanwhile.
            self.write(key, &cached.bytes)?;
        }
        Ok(())
    }

    /// Writes a record to the tree and moves its index entry.
    fn write(&self, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        let old = self.tree.insert(key, bytes)?;
        self.index.written(key, old.as_deref(), bytes)
    }

    /// The session's decision log head, live or not; None when there is no
    /// session.
    pub fn decision_head(&self, key: &[u8]) -> Result<Option<Option<u64>>, StoreError> {
        let mut shard = self.cache.shard(key);
        let raw = match shard.peek(key) {
            Some(id) => return Ok(Some(codec::decision_head(&shard.value(id).bytes)?)),
            None => self.tree.get(key)?,
        };
        drop(shard);
        raw.map(|raw| codec::decision_head(&raw)).transpose()
    }

    /// Sets the session's decision log head (nothing else, not even
    /// `last_seen_ms`, changes); does nothing when there is no session.
    pub fn set_decision_head(&self, key: &[u8], head: u64) -> Result<(), StoreError> {
        let mut shard = self.cache.shard(key);
        if let Some(id) = shard.peek(key) {
            let compact = is_compact(&shard.value(id).bytes);
            let session = (!compact)
                .then(|| decode_session(&shard.value(id).bytes))
                .transpose()?;
            shard.patch(id, |bytes| {
                if let Some(s) = session {
                    *bytes = encode_session(&s);
                }
                codec::set_decision_head(bytes, Some(head));
            });
            return Ok(());
        }
        let Some(raw) = self.tree.get(key)? else {
            return Ok(());
        };
        let session = Session {
            decision_head: Some(head),
            ..decode_session(&raw)?
        };
        self.cache_changed(&mut shard, key, &session)
    }

    /// Writes every dirty session to sled; returns how many.
    pub fn write_pass(&self) -> Result<usize, StoreError> {
        let _pass = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = Vec::new();
        for i in 0..self.cache.shard_count() {
            // Taken under the lock, written without it: requests for the
            // shard's other sessions do not wait for sled.
            let taken = self.cache.shard_at(i).take_dirty(|key, cached| Pending {
                key: Arc::clone(key),
                bytes: cached.bytes.clone(),
            });
            batch.extend(taken.into_iter().map(|(id, p)| (i, id, p)));
        }
        if batch.is_empty() {
            return Ok(0);
        }
        // In key order: sessions sharing a sled leaf are written while it is
        // in sled's cache, instead of each loading it again (what a write
        // mostly costs with many more sessions than the cache holds).
        batch.sort_unstable_by(|a, b| a.2.key.cmp(&b.2.key));
        let result = batch
            .iter()
            .try_for_each(|(_, _, p)| self.write(&p.key, &p.bytes));
        batch.sort_unstable_by_key(|&(i, _, _)| i);
        for group in batch.chunk_by(|a, b| a.0 == b.0) {
            let mut shard = self.cache.shard_at(group[0].0);
            for (_, id, _) in group {
                shard.written(*id, result.is_ok());
            }
        }
        result?;
        Ok(batch.len())
    }

    /// Keys of idle-looking sessions among the next `most` stored from
    /// `from` (sled's copy: run a write pass first).
    pub fn scan_idle(&self, from: &[u8], now_ms: u64, most: usize) -> Result<Scan, StoreError> {
        let mut idle = Vec::new();
        let mut seen = 0;
        let mut last = None;
        for entry in self.tree.range(from..).take(most) {
            let (key, raw) = entry?;
            seen += 1;
            match codec::last_seen_ms(&raw) {
                Ok(t) if !self.ttl.is_live(t, now_ms) => idle.push(key.clone()),
                Ok(_) => {}
                // Left in place, and the pass goes on past it.
                Err(e) => tracing::warn!(error = %e, "sweep skipped an unreadable session"),
            }
            last = Some(key);
        }
        let resume = match last {
            Some(key) if seen == most => [&key[..], &[0]].concat(),
            _ => Vec::new(),
        };
        Ok(Scan { idle, resume })
    }

    /// Removes the session if it is idle at `now_ms`, from the cache, the
    /// tree and the index; `then` runs with the decision head its last
    /// record names, still under the key's lock (no update loads or
    /// changes the session meanwhile). Whether it was removed.
    pub fn remove_if_idle(
        &self,
        key: &[u8],
        now_ms: u64,
        then: impl FnOnce(Option<u64>) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let mut shard = self.cache.shard(key);
        match shard.peek(key) {
            // Changed since the last pass: decided on the next one.
            Some(id) if !shard.is_clean(id) => return Ok(false),
            Some(id) => {
                // Clean: sled holds what is cached.
                if self.ttl.is_live(shard.value(id).last_seen_ms, now_ms) {
                    return Ok(false);
                }
                shard.remove(id);
            }
            None => {
                // Read again: it may have been refreshed since the scan.
                let Some(raw) = self.tree.get(key)? else {
                    return Ok(false);
                };
                if self.ttl.is_live(codec::last_seen_ms(&raw)?, now_ms) {
                    return Ok(false);
                }
            }
        }
        let raw = self.tree.remove(key)?;
        if let Some(raw) = &raw {
            self.index.removed(key, raw)?;
        }
        // Unreadable: its records go with their segments' age.
        then(raw.and_then(|raw| codec::decision_head(&raw).unwrap_or(None)))?;
        Ok(true)
    }

    /// The raw tree, for tests of the stored form.
    #[cfg(test)]
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The cache, for tests of its bounds.
    #[cfg(test)]
    pub fn cache(&self) -> &SessionCache {
        &self.cache
    }
}

/// `s` as cached; `stored` is its record in sled, if that is `s`.
fn cached(s: &Session, stored: Option<&[u8]>) -> Cached {
    Cached {
        // A record in the compact encoding is kept as read.
        bytes: match stored {
            Some(raw) if is_compact(raw) => raw.to_vec(),
            _ => encode_session(s),
        },
        last_seen_ms: s.last_seen_ms,
    }
}
