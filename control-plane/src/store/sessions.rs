//! Sessions through the cache: reads and updates under the key's shard lock
//! (loading from sled on a miss), write passes, and the sweep.
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
    cache::Cached,
    codec::{decode_session, encode_session, is_compact},
    sled_store::Inner,
};

/// A session taken by a write pass.
struct Pending {
    key: Arc<[u8]>,
    bytes: Vec<u8>,
    bucket: u64,
    /// The expiry bucket moved: index the session under the new one.
    index: bool,
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
        let stored_bucket = stored.as_ref().map(|s| self.bucket(s.last_seen_ms));
        let before = stored.filter(|s| self.is_live(s.last_seen_ms, now_ms));
        let after = f(before.as_ref());
        let cached = Cached {
            stored_bucket,
            ..self.cached(&after, None)
        };
        if let Err(cached) = shard.insert(key, cached, true) {
            // Every cached session is still to be written (the flusher is
            // behind): write this one through, as if there were no cache.
            // The shard lock is still held, and the key is not cached, so
            // no pass writes it meanwhile.
            let bucket = self.bucket(cached.last_seen_ms);
            if cached.stored_bucket != Some(bucket) {
                self.expiry.insert(Self::expiry_key(bucket, key), &[][..])?;
            }
            self.sessions.insert(key, cached.bytes)?;
        }
        Ok(Updated { before, after })
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
            stored_bucket: stored.map(|_| self.bucket(s.last_seen_ms)),
        }
    }

    /// Writes every dirty session to sled; returns how many.
    pub fn write_sessions(&self) -> Result<usize, StoreError> {
        let _pass = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = Vec::new();
        for i in 0..self.cache.shard_count() {
            // Taken under the lock, written without it: requests for the
            // shard's other sessions do not wait for sled.
            let taken = self.cache.shard_at(i).take_dirty(|key, cached| {
                let bucket = self.bucket(cached.last_seen_ms);
                Pending {
                    key: Arc::clone(key),
                    bytes: cached.bytes.clone(),
                    bucket,
                    index: cached.stored_bucket != Some(bucket),
                }
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
        let result = batch.iter().try_for_each(|(_, _, p)| self.write_one(p));
        batch.sort_unstable_by_key(|&(i, _, _)| i);
        for group in batch.chunk_by(|a, b| a.0 == b.0) {
            let mut shard = self.cache.shard_at(group[0].0);
            for (_, id, p) in group {
                shard.written(*id, result.is_ok(), p.bucket);
            }
        }
        result?;
        Ok(batch.len())
    }

    fn write_one(&self, p: &Pending) -> Result<(), StoreError> {
        // Index first: a crash in between leaves an index entry pointing at
        // an older record, which the sweep checks anyway.
        if p.index {
            self.expiry
                .insert(Self::expiry_key(p.bucket, &p.key), &[][..])?;
        }
        self.sessions.insert(&*p.key, p.bytes.as_slice())?;
        Ok(())
    }

    /// Removes sessions idle past their TTL, from sled and the cache.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        // Sessions only in the cache are not in the expiry index yet.
        self.write_sessions()?;
        let mut removed = 0;
        let end = (now_ms + 1).to_be_bytes();
        for entry in self.expiry.range(..&end[..]) {
            let (index_key, _) = entry?;
            let key = &index_key[8..];
            // Under the key's lock: no update loads or changes it meanwhile.
            let mut shard = self.cache.shard(key);
            match shard.peek(key) {
                // Changed since the pass above: decided at the next sweep.
                Some(id) if !shard.is_clean(id) => continue,
                Some(id) => {
                    // Clean: sled holds what is cached.
                    if !self.is_live(shard.value(id).last_seen_ms, now_ms) {
                        shard.remove(id);
                        self.remove_session(key)?;
                        removed += 1;
                    }
                }
                None => {
                    // The index may point at a session refreshed since; only
                    // the session's own last_seen decides.
                    if let Some(raw) = self.sessions.get(key)?
                        && !self.is_live(decode_session(&raw)?.last_seen_ms, now_ms)
                    {
                        self.remove_session(key)?;
                        removed += 1;
                    }
                }
            }
            self.expiry.remove(index_key)?;
        }
        Ok(removed)
    }
}
