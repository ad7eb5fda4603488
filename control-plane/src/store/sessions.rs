//! Sessions through the cache: reads and updates under the key's shard lock
//! (loading from sled on a miss), and write passes.
//!
//! Why this is safe without sled's compare-and-swap: the shard lock is held
//! from the cache lookup through the sled read of a miss to the cached
//! result, so every update of one key sees the one before it; only clean
//! entries are evicted, so a later miss never loads an older record than
//! the one evicted; and write passes run one at a time, so sled receives
//! each session's versions in order.

use std::sync::{Arc, PoisonError};

use super::{
    Session, StoreError, Updated,
    cache::{Cached, Shard},
    codec::{self, decode_session, encode_session, is_compact},
    sled_store::Inner,
};

/// A session taken by a write pass.
struct Pending {
    key: Arc<[u8]>,
    bytes: Vec<u8>,
}

impl Inner {
    pub fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Session>, StoreError> {
        let mut shard = self.cache.shard(key);
        if let Some(id) = shard.find(key) {
            let cached = shard.value(id);
            if !self.is_live(cached.last_seen_ms, now_ms) {
                return Ok(None);
            }
            return decode_session(&cached.bytes).map(Some);
        }
        let Some(raw) = self.sessions.get(key)? else {
            return Ok(None);
        };
        let session = decode_session(&raw)?;
        if !self.is_live(session.last_seen_ms, now_ms) {
            return Ok(None);
        }
        // Full of unwritten sessions: served, just not cached.
        let _ = shard.insert(key, self.cached(&session, Some(&raw)), false);
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
            let before = if self.is_live(cached.last_seen_ms, now_ms) {
                Some(decode_session(&cached.bytes)?)
            } else {
                None
            };
            let after = f(before.as_ref());
            shard.update(id, encode_session(&after), after.last_seen_ms);
            return Ok(Updated { before, after });
        }
        let stored = self
            .sessions
            .get(key)?
            .map(|raw| decode_session(&raw))
            .transpose()?;
        let before = stored.filter(|s| self.is_live(s.last_seen_ms, now_ms));
        let after = f(before.as_ref());
        self.cache_changed(&mut shard, key, &after)?;
        Ok(Updated { before, after })
    }

    /// Caches `s`, changed and not yet in the cache, to be written behind.
    fn cache_changed(&self, shard: &mut Shard, key: &[u8], s: &Session) -> Result<(), StoreError> {
        if let Err(cached) = shard.insert(key, self.cached(s, None), true) {
            // Every cached session is still to be written (the flusher is
            // behind): write this one through, as if there were no cache.
            // The shard lock is still held, and the key is not cached, so
            // no pass writes it meanwhile.
            let old = self.sessions.insert(key, cached.bytes.as_slice())?;
            self.index_written(key, old.as_deref(), &cached.bytes)?;
        }
        Ok(())
    }

    /// The session's decision log head, live or not; None when there is no
    /// session.
    pub fn decision_head(&self, key: &[u8]) -> Result<Option<Option<u64>>, StoreError> {
        let mut shard = self.cache.shard(key);
        let raw = match shard.peek(key) {
            Some(id) => return Ok(Some(codec::decision_head(&shard.value(id).bytes)?)),
            None => self.sessions.get(key)?,
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
        let Some(raw) = self.sessions.get(key)? else {
            return Ok(());
        };
        let session = Session {
            decision_head: Some(head),
            ..decode_session(&raw)?
        };
        self.cache_changed(&mut shard, key, &session)
    }

    /// `s` as cached; `stored` is its record in sled, if that is `s`.
    fn cached(&self, s: &Session, stored: Option<&[u8]>) -> Cached {
        Cached {
            // A record in the compact encoding is kept as read.
            bytes: match stored {
                Some(raw) if is_compact(raw) => raw.to_vec(),
                _ => encode_session(s),
            },
            last_seen_ms: s.last_seen_ms,
        }
    }

    /// Writes every dirty session to sled; returns how many.
    pub fn write_sessions(&self) -> Result<usize, StoreError> {
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
        let result = batch.iter().try_for_each(|(_, _, p)| {
            let old = self.sessions.insert(&*p.key, p.bytes.as_slice())?;
            self.index_written(&p.key, old.as_deref(), &p.bytes)
        });
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
}
