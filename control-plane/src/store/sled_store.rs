//! [`SessionStore`] on sled 0.34. sled has no TTL, so the deadline is checked
//! on every read (lazy expiry) and the sweep (sweep.rs) scans the sessions
//! a batch at a time. No expiry index: sled's memory grows with the number
//! of keys it holds, so the store keeps as few as it can; the one index,
//! sessions by activity (activity.rs), is what the console pages through.
//!
//! Sessions are served from a bounded in-memory cache and written behind
//! (sessions.rs): one process owns the embedded store, so the cache is the
//! truth and sled its durable copy, at most [`WRITE_BEHIND`] old.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use super::{
    DecisionEntry, FlushFuture, Session, SessionKey, SessionStore, StoreError, TurnResult, Updated,
    cache::SessionCache,
    codec,
    flusher::{Flusher, WriteBack},
    timeline::Log,
};
use crate::budget::{Overrides, TenantDay};

/// Key of the run-time budget caps in the `meta` tree.
const BUDGETS_KEY: &[u8] = b"budget_overrides";

/// How long a changed session (or tenant day) may stay only in memory.
/// Route's and Report's changes to one turn usually land in one write.
const WRITE_BEHIND: Duration = Duration::from_millis(250);

/// Memory for cached sessions when the configuration names no other size.
pub const DEFAULT_SESSION_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// sled-backed sessions: trees `sessions` and `decision_log` (timeline.rs); tenant
/// spend per day in `tenant_days`, run-time settings in `meta`.
pub struct SledStore {
    inner: Arc<Inner>,
    flusher: Flusher,
}

/// The trees and the cache in front of `sessions`, shared with the flusher.
pub(super) struct Inner {
    pub db: sled::Db,
    pub sessions: sled::Tree,
    pub(super) log: Log,
    pub(super) tenant_days: sled::Tree,
    meta: sled::Tree,
    /// Conversations by last activity (activity.rs).
    pub(super) activity: super::activity::Activity,
    /// Spend per model per day (model_days.rs).
    model_days: super::model_days::ModelDays,
    pub ttl_ms: u64,
    pub cache: SessionCache,
    /// One write pass at a time, so two passes never reorder the writes of
    /// one session.
    pub pass: Mutex<()>,
    /// Where the next sweep starts.
    pub sweep_cursor: Mutex<Vec<u8>>,
    /// Tenant days not yet written, by store key.
    tenant_days_pending: Mutex<HashMap<Vec<u8>, TenantDay>>,
    /// The UTC day tenant days were last aged out on (sweep.rs).
    pub tenant_days_aged: AtomicU64,
}

impl SledStore {
    /// Opens (or creates) the store at `path`, caching sessions in
    /// [`DEFAULT_SESSION_CACHE_BYTES`] of memory.
    pub fn open(path: &Path, cache_capacity_bytes: u64, ttl: Duration) -> Result<Self, StoreError> {
        Self::open_with_cache(path, cache_capacity_bytes, ttl, DEFAULT_SESSION_CACHE_BYTES)
    }

    /// Opens (or creates) the store at `path`, caching sessions in about
    /// `session_cache_bytes` of memory.
    pub fn open_with_cache(
        path: &Path,
        cache_capacity_bytes: u64,
        ttl: Duration,
        session_cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(Some(500))
            .open()?;
        Self::with_db(db, ttl, session_cache_bytes)
    }

    /// The sled database underneath (for the seal of `crate::store_guard`).
    pub fn sled(&self) -> &sled::Db {
        &self.inner.db
    }

    /// The store on an open sled database (stores of earlier versions
    /// included).
    pub(super) fn with_db(
        db: sled::Db,
        ttl: Duration,
        session_cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let inner = Arc::new(Inner {
            sessions: db.open_tree("sessions")?,
            log: Log::open(&db)?,
            tenant_days: db.open_tree("tenant_days")?,
            meta: db.open_tree("meta")?,
            activity: super::activity::Activity::open(&db)?,
            model_days: super::model_days::ModelDays::open(&db)?,
            db,
            ttl_ms: ttl.as_millis() as u64,
            cache: SessionCache::new(session_cache_bytes),
            pass: Mutex::new(()),
            sweep_cursor: Mutex::new(Vec::new()),
            tenant_days_pending: Mutex::new(HashMap::new()),
            tenant_days_aged: AtomicU64::new(0),
        });
        let target: std::sync::Weak<dyn WriteBack> = Arc::downgrade(&inner) as _;
        let flusher = Flusher::start(target, WRITE_BEHIND)
            .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        let store = Self { inner, flusher };
        store.inner.upgrade()?;
        let indexed = store.inner.index_backfill()?;
        if indexed > 0 {
            tracing::info!(sessions = indexed, "indexed stored sessions by activity");
        }
        Ok(store)
    }

    #[cfg(test)]
    pub(super) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The raw sessions tree, for tests of the stored form.
    #[cfg(test)]
    pub(crate) fn sessions_tree(&self) -> &sled::Tree {
        &self.inner.sessions
    }

    /// The session cache, for tests of its bounds.
    #[cfg(test)]
    pub(super) fn cache(&self) -> &SessionCache {
        &self.inner.cache
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Before `inner` goes: the flusher's last pass writes what is dirty.
        self.flusher.stop();
    }
}

impl Inner {
    /// Whether a session last seen at `last_seen_ms` is live at `now_ms`.
    pub fn is_live(&self, last_seen_ms: u64, now_ms: u64) -> bool {
        last_seen_ms.saturating_add(self.ttl_ms) > now_ms
    }

    fn tenant_day_key(tenant: &str, day: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(tenant.len() + 9);
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k.extend_from_slice(&day.to_be_bytes());
        k
    }

    /// Removes a session and its decisions from sled. The caller holds the
    /// key's shard lock, and the session is not cached or clean: sled holds
    /// its latest version.
    pub fn remove_session(&self, key: &[u8]) -> Result<(), StoreError> {
        let pending = self.take_pending_head(key);
        let Some(raw) = self.sessions.remove(key)? else {
            return Ok(());
        };
        self.index_removed(key, &raw)?;
        // Unreadable: its records go with their segments' age.
        let stored = codec::decision_head(&raw).unwrap_or(None);
        self.remove_decisions(key, pending.or(stored))
    }

    /// Writes the pending tenant days. The lock is held while writing so a
    /// read never falls between the map and sled.
    fn write_tenant_days(&self) -> Result<usize, StoreError> {
        let mut pending = self
            .tenant_days_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (k, day) in pending.iter() {
            self.tenant_days
                .insert(k.as_slice(), serde_json::to_vec(day)?)?;
        }
        let n = pending.len();
        pending.clear();
        Ok(n)
    }

    /// Writes what is only in memory to sled (not synced); whether there
    /// was anything.
    pub(super) fn write_pending(&self) -> Result<bool, StoreError> {
        // The decision log first: it hands the sessions their new heads.
        let log = self.write_decision_log()?;
        let written = self.write_sessions()?
            + self.write_tenant_days()?
            + self.model_days.write(super::now_ms())?;
        Ok(log || written > 0)
    }
}

impl WriteBack for Inner {
    fn write_back(&self, sync: bool) -> Result<(), StoreError> {
        if self.write_pending()? || sync {
            self.db.flush()?;
        }
        Ok(())
    }
}

impl SessionStore for SledStore {
    fn get(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Session>, StoreError> {
        self.inner.get(key.as_bytes(), now_ms)
    }

    fn update(
        &self,
        key: &SessionKey,
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError> {
        self.inner.update(key.as_bytes(), now_ms, f)
    }

    fn flush(&self) -> FlushFuture<'_> {
        let done = self.flusher.request();
        Box::pin(async move {
            if done.await == Ok(true) {
                return Ok(());
            }
            // The flusher failed (or is gone): write here and report why.
            self.inner.write_pending()?;
            self.inner.db.flush_async().await?;
            Ok(())
        })
    }

    fn record_decision(&self, key: &SessionKey, entry: &DecisionEntry) -> Result<(), StoreError> {
        self.inner.append_decisions(&[(key.clone(), entry.clone())])
    }

    fn record_decisions(&self, entries: &[(SessionKey, DecisionEntry)]) -> Result<(), StoreError> {
        self.inner.append_decisions(entries)
    }

    fn complete_decision(
        &self,
        key: &SessionKey,
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
    ) -> Result<bool, StoreError> {
        self.inner
            .complete_decision(key.as_bytes(), turn, decision_id, result)
    }

    fn tenant_day(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError> {
        let k = Inner::tenant_day_key(tenant, day);
        let pending = self
            .inner
            .tenant_days_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(d) = pending.get(&k) {
            return Ok(Some(*d));
        }
        self.inner
            .tenant_days
            .get(k)?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    fn put_tenant_day(&self, tenant: &str, day: &TenantDay) -> Result<(), StoreError> {
        // Written behind with the sessions: one write per tenant per pass.
        self.inner
            .tenant_days_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Inner::tenant_day_key(tenant, day.day), *day);
        Ok(())
    }

    fn add_model_day(&self, add: &super::ModelDay) -> Result<(), StoreError> {
        self.inner.model_days.add(add);
        Ok(())
    }

    fn model_days(&self, from: u64, to: u64) -> Result<Vec<super::ModelDay>, StoreError> {
        self.inner.model_days.range(from, to)
    }

    fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError> {
        self.inner
            .meta
            .get(BUDGETS_KEY)?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError> {
        self.inner
            .meta
            .insert(BUDGETS_KEY, serde_json::to_vec(overrides)?)?;
        Ok(())
    }

    fn decisions(&self, key: &SessionKey) -> Result<Vec<DecisionEntry>, StoreError> {
        self.inner.timeline(key.as_bytes())
    }

    fn list_conversations(
        &self,
        keep: &dyn Fn(&super::ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<super::ConversationPage, StoreError> {
        self.inner.list_conversations(keep, cursor, limit, now_ms)
    }

    fn mark_degraded(&self, key: &SessionKey) {
        self.inner.activity.mark_degraded(key.as_bytes());
    }

    fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.inner.sweep_batch(now_ms, super::sweep::SWEEP_BATCH)
    }
}
