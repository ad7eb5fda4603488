//! The sweep: a bounded scan of `sessions` from a cursor, so each run costs
//! the same whatever the store holds and no index tree is kept (sled's
//! memory grows with its number of keys). A run looks at up to
//! [`SWEEP_BATCH`] sessions after the one the previous run stopped at, and
//! wraps at the end; a full pass takes `stored / SWEEP_BATCH` runs.
//! Tenant-day totals are aged out once per UTC day.

use std::sync::{PoisonError, atomic::Ordering};

use super::{StoreError, codec::last_seen_ms, sled_store::Inner};
use crate::budget::utc_day;

/// Sessions looked at per run.
pub const SWEEP_BATCH: usize = 4096;

/// Days a tenant's daily totals are kept after their day. `Route` and
/// `GetBudgets` read only today's; the rest is a month of history.
pub const TENANT_DAYS_KEPT: u64 = 31;

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
        self.age_out_tenant_days(now_ms)?;
        Ok(removed)
    }

    /// On the first run of a UTC day, drops the tenant-day totals of days
    /// more than [`TENANT_DAYS_KEPT`] before it (a scan of the small
    /// `tenant_days` tree: tenants times kept days); returns how many.
    fn age_out_tenant_days(&self, now_ms: u64) -> Result<usize, StoreError> {
        let today = utc_day(now_ms);
        if self.tenant_days_aged.load(Ordering::Relaxed) == today {
            return Ok(0);
        }
        let oldest_kept = today.saturating_sub(TENANT_DAYS_KEPT);
        let mut dropped = 0;
        for key in self.tenant_days.iter().keys() {
            let key = key?;
            // Tenant, 0, then the day as 8 bytes big endian.
            let day = key
                .len()
                .checked_sub(8)
                .and_then(|at| key[at..].try_into().ok())
                .map(u64::from_be_bytes);
            if day.is_some_and(|day| day < oldest_kept) {
                self.tenant_days.remove(&key)?;
                dropped += 1;
            }
        }
        self.tenant_days_aged.store(today, Ordering::Relaxed);
        Ok(dropped)
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
