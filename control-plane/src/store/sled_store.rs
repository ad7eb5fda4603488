//! [`SessionStore`] on sled 0.34. sled has no TTL, so the deadline is checked
//! on every read (lazy expiry) and an expiry index, bucketed by minute so
//! that most turns add no index write, feeds the sweeper.

use std::{path::Path, time::Duration};

use super::{
    DecisionEntry, FlushFuture, Session, SessionKey, SessionStore, StoreError, TurnResult, Updated,
};
use crate::budget::{Overrides, TenantDay};

/// Key of the run-time budget caps in the `meta` tree.
const BUDGETS_KEY: &[u8] = b"budget_overrides";

const BUCKET_MS: u64 = 60_000;

/// sled-backed sessions: trees `sessions`, `expiry` and `decisions`; tenant
/// spend per day in `tenant_days`, run-time settings in `meta`.
pub struct SledStore {
    db: sled::Db,
    sessions: sled::Tree,
    expiry: sled::Tree,
    decisions: sled::Tree,
    tenant_days: sled::Tree,
    meta: sled::Tree,
    ttl_ms: u64,
}

impl SledStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, cache_capacity_bytes: u64, ttl: Duration) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Self {
            sessions: db.open_tree("sessions")?,
            expiry: db.open_tree("expiry")?,
            decisions: db.open_tree("decisions")?,
            tenant_days: db.open_tree("tenant_days")?,
            meta: db.open_tree("meta")?,
            db,
            ttl_ms: ttl.as_millis() as u64,
        })
    }

    /// The raw sessions tree, for tests of the stored form.
    #[cfg(test)]
    pub(crate) fn sessions_tree(&self) -> &sled::Tree {
        &self.sessions
    }

    fn live(&self, raw: Option<&[u8]>, now_ms: u64) -> Result<Option<Session>, StoreError> {
        let Some(raw) = raw else { return Ok(None) };
        let s: Session = super::codec::decode_session(raw)?;
        Ok((s.last_seen_ms.saturating_add(self.ttl_ms) > now_ms).then_some(s))
    }

    fn bucket(&self, last_seen_ms: u64) -> u64 {
        (last_seen_ms.saturating_add(self.ttl_ms)).div_ceil(BUCKET_MS) * BUCKET_MS
    }

    fn expiry_key(bucket: u64, key: &SessionKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(8 + key.as_bytes().len());
        k.extend_from_slice(&bucket.to_be_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn decision_prefix(key: &SessionKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.as_bytes().len() + 1);
        k.extend_from_slice(key.as_bytes());
        k.push(0xFF);
        k
    }

    fn decision_key(key: &SessionKey, turn: u32, decision_id: &str) -> Vec<u8> {
        let mut k = Self::decision_prefix(key);
        k.extend_from_slice(&turn.to_be_bytes());
        k.extend_from_slice(decision_id.as_bytes());
        k
    }

    fn tenant_day_key(tenant: &str, day: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(tenant.len() + 9);
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k.extend_from_slice(&day.to_be_bytes());
        k
    }

    fn remove_session(&self, key: &[u8]) -> Result<(), StoreError> {
        self.sessions.remove(key)?;
        let mut prefix = key.to_vec();
        prefix.push(0xFF);
        for entry in self.decisions.scan_prefix(&prefix).keys() {
            self.decisions.remove(entry?)?;
        }
        Ok(())
    }
}

impl SessionStore for SledStore {
    fn get(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Session>, StoreError> {
        let raw = self.sessions.get(key.as_bytes())?;
        self.live(raw.as_deref(), now_ms)
    }

    fn update(
        &self,
        key: &SessionKey,
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError> {
        let mut current = self.sessions.get(key.as_bytes())?;
        loop {
            let before = self.live(current.as_deref(), now_ms)?;
            let after = f(before.as_ref());
            let encoded = super::codec::encode_session(&after);
            match self.sessions.compare_and_swap(
                key.as_bytes(),
                current.as_deref(),
                Some(encoded),
            )? {
                Ok(()) => {
                    let new_bucket = self.bucket(after.last_seen_ms);
                    let old_bucket = before.as_ref().map(|b| self.bucket(b.last_seen_ms));
                    if old_bucket != Some(new_bucket) {
                        self.expiry
                            .insert(Self::expiry_key(new_bucket, key), &[][..])?;
                    }
                    return Ok(Updated { before, after });
                }
                Err(conflict) => current = conflict.current,
            }
        }
    }

    fn flush(&self) -> FlushFuture<'_> {
        Box::pin(async move {
            self.db.flush_async().await?;
            Ok(())
        })
    }

    fn record_decision(&self, key: &SessionKey, entry: &DecisionEntry) -> Result<(), StoreError> {
        let k = Self::decision_key(key, entry.turn, &entry.decision_id);
        self.decisions.insert(k, serde_json::to_vec(entry)?)?;
        Ok(())
    }

    fn record_decisions(&self, entries: &[(SessionKey, DecisionEntry)]) -> Result<(), StoreError> {
        // One insert each: `apply_batch` takes sled's exclusive write lock,
        // which stalls every session compare-and-swap of `Route` meanwhile.
        for (key, entry) in entries {
            let k = Self::decision_key(key, entry.turn, &entry.decision_id);
            self.decisions.insert(k, serde_json::to_vec(entry)?)?;
        }
        Ok(())
    }

    fn complete_decision(
        &self,
        key: &SessionKey,
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
    ) -> Result<bool, StoreError> {
        let k = Self::decision_key(key, turn, decision_id);
        let Some(raw) = self.decisions.get(&k)? else {
            return Ok(false);
        };
        let mut entry: DecisionEntry = serde_json::from_slice(&raw)?;
        entry.result = Some(result.clone());
        // A sweep may have removed the conversation meanwhile: only replace
        // what is still there.
        Ok(self
            .decisions
            .compare_and_swap(&k, Some(raw), Some(serde_json::to_vec(&entry)?))?
            .is_ok())
    }

    fn tenant_day(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError> {
        self.tenant_days
            .get(Self::tenant_day_key(tenant, day))?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    fn put_tenant_day(&self, tenant: &str, day: &TenantDay) -> Result<(), StoreError> {
        self.tenant_days.insert(
            Self::tenant_day_key(tenant, day.day),
            serde_json::to_vec(day)?,
        )?;
        Ok(())
    }

    fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError> {
        self.meta
            .get(BUDGETS_KEY)?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError> {
        self.meta
            .insert(BUDGETS_KEY, serde_json::to_vec(overrides)?)?;
        Ok(())
    }

    fn decisions(&self, key: &SessionKey) -> Result<Vec<DecisionEntry>, StoreError> {
        self.decisions
            .scan_prefix(Self::decision_prefix(key))
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        let end = (now_ms + 1).to_be_bytes();
        for entry in self.expiry.range(..&end[..]) {
            let (index_key, _) = entry?;
            let session_key = &index_key[8..];
            let raw = self.sessions.get(session_key)?;
            // The index may point at a session refreshed since; only the
            // session's own last_seen decides.
            if raw.is_some() && self.live(raw.as_deref(), now_ms)?.is_none() {
                self.remove_session(session_key)?;
                removed += 1;
            }
            self.expiry.remove(index_key)?;
        }
        Ok(removed)
    }
}
