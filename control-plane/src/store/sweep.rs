//! The sweep: a bounded scan of `sessions` from a cursor, so each run costs
//! the same whatever the store holds and no index tree is kept (sled's
//! memory grows with its number of keys). A run looks at up to
//! [`SWEEP_BATCH`] sessions after the one the previous run stopped at, and
//! wraps at the end; a full pass takes `stored / SWEEP_BATCH` runs.

use std::sync::PoisonError;

use super::{StoreError, codec::last_seen_ms, sled_store::Inner};

/// Sessions looked at per run.
pub const SWEEP_BATCH: usize = 4096;

impl Inner {
    /// Removes sessions idle past their TTL among the next `most` stored
    /// ones, from sled and the cache; returns how many.
    pub fn sweep_batch(&self, now_ms: u64, most: usize) -> Result<usize, StoreError> {
        // Changes still in the cache are recent, but a clean cache is what
        // the checks below rely on to decide from sled's copy.
        self.write_sessions()?;
        let expired = self.scan(now_ms, most)?;
        let mut removed = 0;
        for key in expired {
            // Under the key's lock: no update loads or changes it meanwhile.
            let mut shard = self.cache.shard(&key);
            match shard.peek(&key) {
                // Changed since the pass above: decided on the next pass.
                Some(id) if !shard.is_clean(id) => continue,
                Some(id) => {
                    // Clean: sled holds what is cached.
                    if self.is_live(shard.value(id).last_seen_ms, now_ms) {
                        continue;
                    }
                    shard.remove(id);
                }
                None => {
                    // Read again: it may have been refreshed since the scan.
                    let Some(raw) = self.sessions.get(&key)? else {
                        continue;
                    };
                    if self.is_live(last_seen_ms(&raw)?, now_ms) {
                        continue;
                    }
                }
            }
            self.remove_session(&key)?;
            removed += 1;
        }
        self.age_out_decisions(now_ms, most)?;
        Ok(removed)
    }

    /// Keys of expired-looking sessions among the next `most` from the
    /// cursor; moves the cursor past them (to the start after the last).
    fn scan(&self, now_ms: u64, most: usize) -> Result<Vec<sled::IVec>, StoreError> {
        let mut cursor = self
            .sweep_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut expired = Vec::new();
        let mut seen = 0;
        let mut last = None;
        for entry in self.sessions.range(cursor.as_slice()..).take(most) {
            let (key, raw) = entry?;
            seen += 1;
            match last_seen_ms(&raw) {
                Ok(t) if !self.is_live(t, now_ms) => expired.push(key.clone()),
                Ok(_) => {}
                // Left in place, and the pass goes on past it.
                Err(e) => tracing::warn!(error = %e, "sweep skipped an unreadable session"),
            }
            last = Some(key);
        }
        *cursor = match last {
            // The smallest key after `last`.
            Some(key) if seen == most => [&key[..], &[0]].concat(),
            _ => Vec::new(),
        };
        Ok(expired)
    }
}
