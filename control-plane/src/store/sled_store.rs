//! [`SessionStore`] on sled 0.34. sled has no TTL, so the deadline is checked
//! on every read (lazy expiry) and the sweep (sweep.rs) scans the sessions
//! a batch at a time. No expiry index: sled's memory grows with the number
//! of keys it holds, so the store keeps as few as it can; the one index,
//! sessions by activity (activity.rs), is what the console pages through.
//!
//! Sessions are served from a bounded in-memory cache and written behind
//! (sessions.rs): one process owns the embedded store, so the cache is the
//! truth and sled its durable copy, at most [`WRITE_BEHIND`] old.
//!
//! The store is its parts, each a type with private fields in its own
//! module: the sessions (with their cache and activity index), the decision
//! log (timeline.rs), tenant days, run-time settings and the sweep's cursor.
//! What spans parts (a write pass, a sweep, the upgrade of an old store) is
//! written here as calls between them.

use std::{path::Path, sync::Arc, time::Duration};

use super::{
    ConversationPage, ConversationSummary, DecisionEntry, FlushFuture, Session, SessionKey,
    SessionStore, StoreError, TurnResult, Updated,
    flusher::{Flusher, WriteBack},
    model_days::ModelDays,
    sessions::{Sessions, Ttl},
    settings::Settings,
    sweep::{self, SWEEP_BATCH, TENANT_DAYS_KEPT},
    tenant_days::TenantDays,
    timeline::Log,
    upgrade::upgrade,
};
use crate::budget::{Overrides, TenantDay};

/// How long a changed session (or tenant day) may stay only in memory.
/// Route's and Report's changes to one turn usually land in one write.
const WRITE_BEHIND: Duration = Duration::from_millis(250);

/// Memory for cached sessions when the configuration names no other size.
pub const DEFAULT_SESSION_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// sled-backed sessions: trees `sessions`, `activity` and `activity_by`
/// (sessions.rs), `decision_log` (timeline.rs), `tenant_days`, `meta`
/// (settings.rs).
pub struct SledStore {
    parts: Arc<Parts>,
    flusher: Flusher,
}

/// The parts, shared with the flusher.
struct Parts {
    db: sled::Db,
    sessions: Sessions,
    log: Log,
    tenant_days: TenantDays,
    settings: Settings,
    /// Spend per model per day (model_days.rs).
    model_days: ModelDays,
    sweep: sweep::Cursor,
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
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(Some(500));
        // sled panics recovering some damaged files (a truncated snapshot):
        // an error, so the guard refuses the store instead of a crash.
        let open = std::panic::AssertUnwindSafe(|| config.open());
        let db = std::panic::catch_unwind(open).map_err(|_| {
            StoreError::Unavailable("sled failed recovering the store's files".into())
        })??;
        Self::with_db(db, ttl, session_cache_bytes)
    }

    /// The sled database underneath (for the seal of `crate::store_guard`).
    pub fn sled(&self) -> &sled::Db {
        &self.parts.db
    }

    /// The store on an open sled database (stores of earlier versions
    /// included).
    pub(super) fn with_db(
        db: sled::Db,
        ttl: Duration,
        session_cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let ttl = Ttl::from_ms(ttl.as_millis() as u64);
        let parts = Arc::new(Parts {
            sessions: Sessions::open(&db, ttl, session_cache_bytes)?,
            log: Log::open(&db, ttl)?,
            tenant_days: TenantDays::open(&db)?,
            settings: Settings::open(&db)?,
            model_days: ModelDays::open(&db)?,
            sweep: sweep::Cursor::default(),
            db,
        });
        let target: std::sync::Weak<dyn WriteBack> = Arc::downgrade(&parts) as _;
        let flusher = Flusher::start(target, WRITE_BEHIND)
            .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        upgrade(&parts.db, &parts.log, &parts.sessions)?;
        Ok(Self { parts, flusher })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Before `parts` go: the flusher's last pass writes what is dirty.
        self.flusher.stop();
    }
}

impl Parts {
    /// Writes what is only in memory to sled (not synced); whether there
    /// was anything.
    fn write_pending(&self) -> Result<bool, StoreError> {
        // The decision log first: it hands the sessions their new heads.
        let log = self.log.write(&self.sessions)?;
        let written = self.sessions.write_pass()?
            + self.tenant_days.write_pass()?
            + self.model_days.write(super::now_ms())?;
        Ok(log || written > 0)
    }

    /// Removes sessions idle past their TTL among the next `most` stored
    /// ones, with their decisions; ages out the decision log and tenant
    /// days. Returns how many sessions went.
    fn sweep(&self, now_ms: u64, most: usize) -> Result<usize, StoreError> {
        // Changes still in the cache are recent, but a clean cache is what
        // the removal relies on to decide from sled's copy.
        self.sessions.write_pass()?;
        let mut removed = 0;
        for key in self.sweep.next_batch(&self.sessions, now_ms, most)? {
            // The records go under the session's lock with it.
            let gone = self
                .sessions
                .remove_if_idle(&key, now_ms, |head| self.log.remove(&key, head))?;
            removed += usize::from(gone);
        }
        self.log.age_out(now_ms, most)?;
        self.tenant_days.age_out(now_ms, TENANT_DAYS_KEPT)?;
        Ok(removed)
    }
}

impl WriteBack for Parts {
    fn write_back(&self, sync: bool) -> Result<(), StoreError> {
        if self.write_pending()? || sync {
            self.db.flush()?;
        }
        Ok(())
    }
}

impl SessionStore for SledStore {
    fn get(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Session>, StoreError> {
        self.parts.sessions.get(key.as_bytes(), now_ms)
    }

    fn update(
        &self,
        key: &SessionKey,
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError> {
        self.parts.sessions.update(key.as_bytes(), now_ms, f)
    }

    fn flush(&self) -> FlushFuture<'_> {
        let done = self.flusher.request();
        Box::pin(async move {
            if done.await == Ok(true) {
                return Ok(());
            }
            // The flusher failed (or is gone): write here and report why.
            self.parts.write_pending()?;
            self.parts.db.flush_async().await?;
            Ok(())
        })
    }

    fn record_decision(&self, key: &SessionKey, entry: &DecisionEntry) -> Result<(), StoreError> {
        self.record_decisions(&[(key.clone(), entry.clone())])
    }

    fn record_decisions(&self, entries: &[(SessionKey, DecisionEntry)]) -> Result<(), StoreError> {
        self.parts.log.append(entries, &self.parts.sessions)
    }

    fn complete_decision(
        &self,
        key: &SessionKey,
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
    ) -> Result<bool, StoreError> {
        let (log, sessions) = (&self.parts.log, &self.parts.sessions);
        log.complete(key.as_bytes(), turn, decision_id, result, sessions)
    }

    fn tenant_day(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError> {
        self.parts.tenant_days.get(tenant, day)
    }

    fn put_tenant_day(&self, tenant: &str, day: &TenantDay) -> Result<(), StoreError> {
        self.parts.tenant_days.put(tenant, day);
        Ok(())
    }

    fn add_model_day(&self, add: &super::ModelDay) -> Result<(), StoreError> {
        self.parts.model_days.add(add);
        Ok(())
    }

    fn model_days(&self, from: u64, to: u64) -> Result<Vec<super::ModelDay>, StoreError> {
        self.parts.model_days.range(from, to)
    }

    fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError> {
        self.parts.settings.budget_overrides()
    }

    fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError> {
        self.parts.settings.put_budget_overrides(overrides)
    }

    fn decisions(&self, key: &SessionKey) -> Result<Vec<DecisionEntry>, StoreError> {
        self.parts
            .log
            .timeline(key.as_bytes(), &self.parts.sessions)
    }

    fn list_conversations(
        &self,
        by: super::ListBy<'_>,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        let index = self.parts.sessions.index();
        index.list(by, keep, cursor, limit, now_ms)
    }

    fn mark_degraded(&self, key: &SessionKey) {
        self.parts.sessions.index().mark_degraded(key.as_bytes());
    }

    fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.parts.sweep(now_ms, SWEEP_BATCH)
    }
}

/// The parts, for tests of what they hold.
#[cfg(test)]
impl SledStore {
    /// The raw sessions tree, for tests of the stored form.
    pub(crate) fn sessions_tree(&self) -> &sled::Tree {
        self.parts.sessions.tree()
    }

    pub(super) fn cache(&self) -> &super::cache::SessionCache {
        self.parts.sessions.cache()
    }

    pub(super) fn log(&self) -> &Log {
        &self.parts.log
    }

    pub(super) fn activity_tree(&self) -> &sled::Tree {
        self.parts.sessions.index().tree()
    }

    pub(super) fn activity_by_tree(&self) -> &sled::Tree {
        self.parts.sessions.index().by_tree()
    }

    /// A sweep run of at most `most` sessions.
    pub(super) fn sweep_batch(&self, now_ms: u64, most: usize) -> Result<usize, StoreError> {
        self.parts.sweep(now_ms, most)
    }

    /// A write pass, without the flusher.
    pub(super) fn write_pending(&self) -> Result<bool, StoreError> {
        self.parts.write_pending()
    }
}
