//! [`SessionStore`] on Redis (or Valkey), shared by any number of
//! control-plane replicas. Nothing is cached: every read goes to Redis,
//! every change is one atomic command or Lua script, so replicas never
//! disagree.
//!
//! - A session is a hash `{v: version, b: encoded session}` (codec.rs) that
//!   expires at `last_seen + TTL`. An update reads it, applies the change
//!   and writes it back only if the version is still the one read (a
//!   compare-and-set script), else tries again: two first turns racing on
//!   two replicas converge on one pin.
//! - A conversation's timeline is a list of JSON records (newest
//!   [`TIMELINE_MAX`] kept) expiring with the TTL; a result replaces its
//!   record only if the record is unchanged since read.
//! - Every session write also moves the conversation in an index by last
//!   activity across tenants (same script), which the console's list reads
//!   page by page (listing.rs); a degraded turn marks the session's hash.
//!   Likewise per profile and per pinned model (backfill.rs fills them for
//!   a store written before them).
//! - Tenant days are hashes whose totals grow by atomic increments.
//! - `flush` makes what was written durable as the server promises
//!   (link.rs): nothing to do with `appendfsync always`, `WAIT` for the
//!   replicas `min-replicas-to-write` asks for.
//! - An epoch key tells a store that lost its data (restarted without
//!   persistence, failed over to a replica that missed writes) from one
//!   that did not: a replica that sees it change says so in its log.
//!
//! The trait is synchronous (sled's calls are): calls run on the store's
//! own small runtime and the caller waits, with `block_in_place` on a
//! multi-threaded runtime so its other tasks move to another worker.

mod backfill;
mod keys;
mod link;
mod listing;
mod model_days;
pub mod settings;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use redis::{AsyncCommands, Script};
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use super::{
    ConversationPage, ConversationSummary, DecisionEntry, FlushFuture, Session, SessionKey,
    SessionStore, StoreError, TurnResult, Updated,
    codec::{decode_session, encode_session},
    timeline::TIMELINE_MAX,
};
use crate::budget::{Overrides, TenantDay};
use keys::{
    ADD_DAY, ALL_ACTIVITY_KEY, BUDGETS_KEY, CAS, EPOCH_KEY, MARK_DEGRADED, PARKED, PARKED_KEY,
    REPLACE_ITEM, activity_key, activity_key_of, conversation_id, model_activity_key,
    profile_activity_key, report_claim_key, session_key, tenant_day_key, timeline_key,
};
pub use link::Guarantee;
use link::{Link, within};
#[cfg(test)]
pub(super) use listing::MAX_SCAN as MAX_LIST_SCAN;
pub use settings::{Backend, Durability, RedisSettings};

/// Tenant-day totals are kept this long after their day.
const TENANT_DAY_KEEP_MS: u64 = 31 * 24 * 3600 * 1000;
/// Records searched back from the newest for one to complete.
const COMPLETE_SCAN: isize = 128;
/// Tries of a compare-and-set before the update gives up.
const CAS_TRIES: usize = 32;

struct Shared {
    link: Link,
    ttl_ms: u64,
    guarantee: Guarantee,
    /// The store's epoch as last seen.
    epoch: Mutex<String>,
    cas: Script,
    replace_item: Script,
    add_day: Script,
    parked: Script,
    mark_degraded: Script,
}

/// Sessions in Redis.
pub struct RedisStore {
    shared: Arc<Shared>,
    handle: Handle,
    runtime: Option<Runtime>,
}

impl RedisStore {
    /// Connects, checks that the server keeps the promise `settings` asks
    /// for, and reads (or starts) the store's epoch.
    pub fn open(settings: &RedisSettings, ttl: std::time::Duration) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keel-redis")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let settings = settings.clone();
        let shared = wait(&handle, async move {
            let link = Link::connect(&settings).await?;
            let guarantee = link.check_durability(settings.durability).await?;
            let epoch = start_epoch(&link).await?;
            tracing::info!(?guarantee, %epoch, "session store: Redis");
            let ttl_ms = ttl.as_millis() as u64;
            let indexed = backfill::backfill(&link, super::now_ms(), ttl_ms).await?;
            if indexed > 0 {
                tracing::info!(
                    conversations = indexed,
                    "indexed stored conversations by profile and model"
                );
            }
            Ok(Shared {
                link,
                ttl_ms: ttl.as_millis() as u64,
                guarantee,
                epoch: Mutex::new(epoch),
                cas: Script::new(CAS),
                replace_item: Script::new(REPLACE_ITEM),
                add_day: Script::new(ADD_DAY),
                parked: Script::new(PARKED),
                mark_degraded: Script::new(MARK_DEGRADED),
            })
        })?;
        Ok(Self {
            shared: Arc::new(shared),
            handle,
            runtime: Some(runtime),
        })
    }

    /// What makes an acknowledged pin durable on this server.
    pub fn guarantee(&self) -> Guarantee {
        self.shared.guarantee
    }

    /// A tenant's conversations active at `now_ms` (within the TTL), newest
    /// activity first: up to `limit` (conversation id, last activity in
    /// Unix ms), those last active before `before_ms` when given (the last
    /// activity of the previous page; conversations active in that same
    /// millisecond after the page's last one are skipped). An index, not a
    /// scan: what a console's listing needs.
    pub fn conversations_by_activity(
        &self,
        tenant: &str,
        before_ms: Option<u64>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let k = activity_key_of(tenant.as_bytes());
        let max = before_ms.map_or_else(|| "+inf".to_owned(), |b| format!("({b}"));
        let min = now_ms.saturating_sub(self.shared.ttl_ms).saturating_add(1);
        let found: Vec<(String, u64)> = self.call(move |s| async move {
            let mut c = s.link.conn();
            within(
                s.link.timeout(),
                c.zrevrangebyscore_limit_withscores(&k, max, min, 0, limit as isize),
            )
            .await
        })?;
        Ok(found)
    }

    /// Runs `f` on the store's runtime and waits for it.
    fn call<T, F>(&self, f: impl FnOnce(Arc<Shared>) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let fut = f(Arc::clone(&shared));
        wait(&self.handle, async move {
            let r = fut.await;
            if let Err(StoreError::Redis(e)) = &r {
                shared.link.recover(e).await;
            }
            r
        })
    }

    /// The session and its version (0: absent).
    fn read(&self, key: &SessionKey) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        let k = session_key(key);
        self.call(move |s| async move {
            let mut c = s.link.conn();
            let (v, b): (Option<u64>, Option<Vec<u8>>) =
                within(s.link.timeout(), c.hmget(&k, &["v", "b"])).await?;
            Ok((v.unwrap_or(0), b))
        })
    }

    fn is_live(&self, session: &Session, now_ms: u64) -> bool {
        session.last_seen_ms.saturating_add(self.shared.ttl_ms) > now_ms
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // May be dropped on a runtime's worker, where a blocking shutdown panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The profile and model indexes a session written as `after` is added to,
/// and those it leaves (its replaced version's `profile` and `model`, where
/// they differ).
fn field_indexes(
    after: &Session,
    profile: Option<String>,
    model: Option<String>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut adds = vec![profile_activity_key(after.profile.as_bytes())];
    adds.extend(
        after
            .pinned_model
            .as_deref()
            .map(|m| model_activity_key(m.as_bytes())),
    );
    let mut removes = Vec::new();
    removes.extend(
        profile
            .filter(|p| *p != after.profile)
            .map(|p| profile_activity_key(p.as_bytes())),
    );
    removes.extend(
        model
            .filter(|m| after.pinned_model.as_ref() != Some(m))
            .map(|m| model_activity_key(m.as_bytes())),
    );
    (adds, removes)
}

/// Runs `fut` on `handle` and waits for its result from sync code.
fn wait<T: Send + 'static>(
    handle: &Handle,
    fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let recv = || {
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store runtime stopped".into())))
    };
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(recv)
        }
        _ => recv(),
    }
}

/// Reads the store's epoch, making one if it has none (a new store, or
/// one that lost everything).
async fn start_epoch(link: &Link) -> Result<String, StoreError> {
    let mut c = link.conn();
    let fresh = uuid::Uuid::new_v4().to_string();
    let _: Option<String> = within(
        link.timeout(),
        redis::cmd("SET")
            .arg(EPOCH_KEY)
            .arg(&fresh)
            .arg("NX")
            .query_async(&mut c),
    )
    .await?;
    let epoch: Option<String> = within(link.timeout(), c.get(EPOCH_KEY)).await?;
    Ok(epoch.unwrap_or(fresh))
}

impl SessionStore for RedisStore {
    fn get(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Session>, StoreError> {
        let (_, raw) = self.read(key)?;
        let Some(raw) = raw else { return Ok(None) };
        let session = decode_session(&raw)?;
        Ok(self.is_live(&session, now_ms).then_some(session))
    }

    fn update(
        &self,
        key: &SessionKey,
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError> {
        for _ in 0..CAS_TRIES {
            let (version, raw) = self.read(key)?;
            let stored = raw.map(|raw| decode_session(&raw)).transpose()?;
            let (profile, model) = stored.as_ref().map_or((None, None), |s| {
                (Some(s.profile.clone()), s.pinned_model.clone())
            });
            let before = stored.filter(|s| self.is_live(s, now_ms));
            let after = f(before.as_ref());
            let fields = field_indexes(&after, profile, model);
            let bytes = encode_session(&after);
            let deadline = after
                .last_seen_ms
                .max(now_ms)
                .saturating_add(self.shared.ttl_ms);
            let (k, index) = (session_key(key), activity_key(key));
            let member = conversation_id(key).to_vec();
            let entry = key.as_bytes().to_vec();
            let active = after.last_seen_ms;
            let live_since = now_ms.saturating_sub(self.shared.ttl_ms);
            let set: bool = self.call(move |s| async move {
                let mut c = s.link.conn();
                let mut inv = s.cas.key(&k);
                inv.key(&index).key(ALL_ACTIVITY_KEY);
                let (adds, removes) = fields;
                let added = adds.len();
                for k in adds.into_iter().chain(removes) {
                    inv.key(k);
                }
                inv.arg(version.to_string()).arg(bytes).arg(deadline);
                inv.arg(active).arg(member).arg(live_since).arg(entry);
                inv.arg(added);
                within(s.link.timeout(), inv.invoke_async(&mut c)).await
            })?;
            if set {
                return Ok(Updated { before, after });
            }
        }
        Err(StoreError::Unavailable(format!(
            "session changed by others {CAS_TRIES} times in a row"
        )))
    }

    fn flush(&self) -> FlushFuture<'_> {
        let Guarantee::Replicas(n) = self.shared.guarantee else {
            // Fsync: acknowledged writes are on disk. None: nothing to wait for.
            return Box::pin(std::future::ready(Ok(())));
        };
        let shared = Arc::clone(&self.shared);
        let task = self.handle.spawn(async move {
            let mut c = shared.link.conn();
            let timeout = shared.link.timeout();
            // The server gives up waiting before the client gives up on it.
            let wait_ms = (timeout.as_millis() as u64 * 3 / 4).max(1);
            let acked: u32 = within(
                timeout,
                redis::cmd("WAIT").arg(n).arg(wait_ms).query_async(&mut c),
            )
            .await?;
            if acked < n {
                return Err(StoreError::Durability(format!(
                    "{acked} of {n} Redis replicas acknowledged the write"
                )));
            }
            Ok(())
        });
        Box::pin(async move {
            task.await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("store runtime stopped".into())))
        })
    }

    fn record_decision(&self, key: &SessionKey, entry: &DecisionEntry) -> Result<(), StoreError> {
        self.record_decisions(&[(key.clone(), entry.clone())])
    }

    fn record_decisions(&self, entries: &[(SessionKey, DecisionEntry)]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for (key, entry) in entries {
            let k = timeline_key(key);
            pipe.rpush(&k, serde_json::to_vec(entry)?)
                .ignore()
                .ltrim(&k, -(TIMELINE_MAX as isize), -1)
                .ignore()
                .pexpire(&k, self.shared.ttl_ms as i64)
                .ignore();
        }
        self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), pipe.query_async::<()>(&mut c)).await
        })
    }

    fn decisions(&self, key: &SessionKey) -> Result<Vec<DecisionEntry>, StoreError> {
        let k = timeline_key(key);
        let raw: Vec<Vec<u8>> = self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), c.lrange(&k, 0, -1)).await
        })?;
        let mut out = raw
            .iter()
            .map(|r| serde_json::from_slice(r))
            .collect::<Result<Vec<DecisionEntry>, _>>()?;
        // As sled orders them: by turn, then decision id.
        out.sort_by(|a, b| (a.turn, &a.decision_id).cmp(&(b.turn, &b.decision_id)));
        Ok(out)
    }

    fn complete_decision(
        &self,
        key: &SessionKey,
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
    ) -> Result<bool, StoreError> {
        for _ in 0..CAS_TRIES {
            let k = timeline_key(key);
            let raw: Vec<Vec<u8>> = self.call(move |s| async move {
                let mut c = s.link.conn();
                within(s.link.timeout(), c.lrange(&k, -COMPLETE_SCAN, -1)).await
            })?;
            let n = raw.len() as isize;
            let found = raw.iter().enumerate().rev().find_map(|(i, r)| {
                let e: DecisionEntry = serde_json::from_slice(r).ok()?;
                (e.turn == turn && e.decision_id == decision_id).then_some((i, e))
            });
            let Some((i, mut entry)) = found else {
                return Ok(false);
            };
            entry.result = Some(result.clone());
            let old = raw[i].clone();
            let new = serde_json::to_vec(&entry)?;
            let index = i as isize - n;
            let k = timeline_key(key);
            let set: bool = self.call(move |s| async move {
                let mut c = s.link.conn();
                let mut inv = s.replace_item.key(&k);
                inv.arg(index).arg(old).arg(new);
                within(s.link.timeout(), inv.invoke_async(&mut c)).await
            })?;
            if set {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn tenant_day(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError> {
        let k = tenant_day_key(tenant, day);
        let (usd, turns): (Option<f64>, Option<u64>) = self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), c.hmget(&k, &["usd", "turns"])).await
        })?;
        Ok((usd.is_some() || turns.is_some()).then(|| TenantDay {
            day,
            usd: usd.unwrap_or(0.0),
            turns: turns.unwrap_or(0),
        }))
    }

    fn put_tenant_day(&self, tenant: &str, day: &TenantDay) -> Result<(), StoreError> {
        let k = tenant_day_key(tenant, day.day);
        let (usd, turns, until) = (day.usd, day.turns, day_expiry(day.day));
        self.call(move |s| async move {
            let mut c = s.link.conn();
            let mut pipe = redis::pipe();
            pipe.hset_multiple(
                &k,
                &[("usd", usd.to_string()), ("turns", turns.to_string())],
            )
            .ignore()
            .pexpire_at(&k, until as i64)
            .ignore();
            within(s.link.timeout(), pipe.query_async::<()>(&mut c)).await
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn add_tenant_day(
        &self,
        tenant: &str,
        day: u64,
        usd: f64,
        turns: u64,
    ) -> Result<TenantDay, StoreError> {
        let k = tenant_day_key(tenant, day);
        let until = day_expiry(day);
        let (usd, turns): (String, u64) = self.call(move |s| async move {
            let mut c = s.link.conn();
            let mut inv = s.add_day.key(&k);
            inv.arg(usd).arg(turns).arg(until);
            within(s.link.timeout(), inv.invoke_async(&mut c)).await
        })?;
        Ok(TenantDay {
            day,
            usd: usd.parse().unwrap_or(0.0),
            turns,
        })
    }

    fn add_model_day(&self, add: &crate::store::ModelDay) -> Result<(), StoreError> {
        self.add_model_day_totals(add)
    }

    fn model_days(&self, from: u64, to: u64) -> Result<Vec<crate::store::ModelDay>, StoreError> {
        self.model_day_totals(from, to)
    }

    fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError> {
        let raw: Option<Vec<u8>> = self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), c.get(BUDGETS_KEY)).await
        })?;
        raw.map(|r| serde_json::from_slice(&r).map_err(StoreError::from))
            .transpose()
    }

    fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError> {
        let raw = serde_json::to_vec(overrides)?;
        self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), c.set(BUDGETS_KEY, raw)).await
        })
    }

    fn park_key(&self, key: &str, until_ms: u64) -> Result<(), StoreError> {
        let field = key.to_owned();
        self.call(move |s| async move {
            let mut c = s.link.conn();
            within(s.link.timeout(), c.hset(PARKED_KEY, field, until_ms)).await
        })
    }

    fn parked_keys(&self, now_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.call(move |s| async move {
            let mut c = s.link.conn();
            let mut inv = s.parked.key(PARKED_KEY);
            inv.arg(now_ms);
            within(s.link.timeout(), inv.invoke_async(&mut c)).await
        })
    }

    fn sweep(&self, _now_ms: u64) -> Result<usize, StoreError> {
        // Redis expires sessions itself; the sweep checks the epoch.
        self.call(|s| async move {
            let epoch = start_epoch(&s.link).await?;
            let mut seen = s.epoch.lock().unwrap_or_else(|e| e.into_inner());
            if *seen != epoch {
                tracing::error!(
                    was = %seen,
                    now = %epoch,
                    "the session store lost data (restarted without persistence, or failed over \
                     to a replica that missed writes): pins made before may be gone; a \
                     conversation whose sidecar remembers its pin gets it back, announced"
                );
                *seen = epoch;
            }
            Ok(0)
        })
    }

    fn list_conversations(
        &self,
        by: super::ListBy<'_>,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        self.list_page(by, keep, cursor, limit, now_ms)
    }

    fn claim_report(&self, decision_id: &str) -> Result<bool, StoreError> {
        let k = report_claim_key(decision_id);
        self.call(move |s| async move {
            let mut c = s.link.conn();
            let mut set = redis::cmd("SET");
            set.arg(&k)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(super::REPORT_CLAIM_MS);
            let claimed: Option<String> = within(s.link.timeout(), set.query_async(&mut c)).await?;
            Ok(claimed.is_some())
        })
    }

    fn mark_degraded(&self, key: &SessionKey) {
        let k = session_key(key);
        let marked = self.call(move |s| async move {
            let mut c = s.link.conn();
            let inv = s.mark_degraded.key(&k);
            within(s.link.timeout(), inv.invoke_async::<()>(&mut c)).await
        });
        if let Err(e) = marked {
            tracing::warn!(error = %e, "could not mark a conversation degraded");
        }
    }
}

/// When a tenant day's totals may go.
fn day_expiry(day: u64) -> u64 {
    (day + 1) * 24 * 3600 * 1000 + TENANT_DAY_KEEP_MS
}
