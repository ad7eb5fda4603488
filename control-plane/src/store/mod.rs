//! The session store: one place for each conversation's state. sled is the
//! embedded default (sled_store.rs and the modules it names); Redis
//! (redis_store/) is shared by several control-plane replicas. Other
//! services build on the trait (the decision writer, `crate::decisions`).

mod activity;
mod activity_by;
#[cfg(test)]
mod activity_tests;
mod cache;
mod codec;
#[cfg(test)]
mod contract_tests;
mod flusher;
mod model_days;
mod redis_store;
mod segment;
mod sessions;
mod settings;
mod sled_store;
mod sweep;
#[cfg(test)]
mod sweep_tests;
mod sweeper;
mod tenant_days;
#[cfg(test)]
mod tests;
mod timeline;
#[cfg(test)]
mod timeline_tests;
mod upgrade;
#[cfg(test)]
mod write_behind_tests;

use std::{future::Future, pin::Pin};

use serde::{Deserialize, Serialize};

use crate::{
    budget::{Caps, Overrides, TenantDay},
    divergence::{DetectorState, DivergenceEvent},
};

pub use activity::{ConversationPage, ConversationSummary};
pub use activity_by::ListBy;
pub use codec::{decode_session, encode_session};
pub use model_days::{MODEL_DAYS_KEPT, ModelDay};
pub use redis_store::{Backend, Durability, RedisSettings, RedisStore};
pub use sled_store::{DEFAULT_SESSION_CACHE_BYTES, SledStore};
pub use sweeper::run_sweeper;

/// A conversation's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Catalog model name the conversation is pinned to.
    pub pinned_model: Option<String>,
    /// Profile that created the session.
    pub profile: String,
    /// Provider that last served the conversation (soft affinity, keeps the
    /// provider's prompt cache warm).
    pub provider_affinity: Option<String>,
    /// Key reference that last served the conversation (soft affinity within
    /// the provider: the prompt cache is per key at some providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_affinity: Option<String>,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    pub turns: u32,
    pub spend_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Loop detector state (bounded, a few KB). Defaulted so records written before
    /// divergence detection existed still load.
    #[serde(default)]
    pub divergence: DetectorState,
    /// Store bookkeeping, not for the router: the decision log segment
    /// holding the conversation's latest decision (timeline.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_head: Option<u64>,
    /// Run-time caps of this conversation alone (`Admin.SetBudgets` with a
    /// conversation id): the most specific scope, gone with the session.
    /// Only its conversation caps are used.
    #[serde(default, skip_serializing_if = "Caps::is_empty")]
    pub budget: Caps,
}

/// A stored decision, for the conversation's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    pub decision_id: String,
    pub turn: u32,
    pub kind: i32,
    pub model: String,
    pub provider: String,
    pub reason: String,
    pub at_ms: u64,
    /// Divergence nudges issued with this decision (empty in older records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<DivergenceEvent>,
    /// How the turn went, once its report arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TurnResult>,
}

/// The reported outcome of a decided turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    pub success: bool,
    pub latency_ms: u32,
    pub ttft_ms: u32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cached_input_tokens: u32,
    pub cache_creation_tokens: u32,
    pub cost_usd: f64,
    pub provider: String,
    pub key_ref: String,
    pub attempts: u32,
    /// The app went away before the answer was complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// The usage is the sidecar's estimate (the provider's never arrived).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
}

/// `(tenant, conversation id)` encoded as a store key. Neither part may
/// contain NUL (checked by the caller); `0xFF` never occurs in UTF-8, which
/// ended the conversation prefix of decision keys in earlier versions
/// (upgrade.rs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(Vec<u8>);

impl SessionKey {
    pub fn new(tenant: &str, conversation_id: &str) -> Self {
        let mut k = Vec::with_capacity(tenant.len() + 1 + conversation_id.len());
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k.extend_from_slice(conversation_id.as_bytes());
        Self(k)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The result of an [`SessionStore::update`].
#[derive(Debug)]
pub struct Updated {
    /// The live session before the update (None if absent or expired).
    pub before: Option<Session>,
    /// The session now stored.
    pub after: Session,
}

/// Errors of the store; all are internal to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {0}")]
    Sled(#[from] sled::Error),
    #[error("session store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("session store: corrupt record: truncated")]
    Truncated,
    #[error("session store: redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store cannot keep acknowledged pins: {0}")]
    Durability(String),
}

/// Future returned by [`SessionStore::flush`].
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Storage of sessions.
pub trait SessionStore: Send + Sync + 'static {
    /// The live session, or None if absent or idle past its TTL.
    fn get(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Session>, StoreError>;

    /// Atomically replaces the session with `f(current)`, so two racing
    /// first turns converge on one pin. `f` may run more than once, and may
    /// run under a lock of the key: it must not use the store. Not durable
    /// until [`SessionStore::flush`].
    fn update(
        &self,
        key: &SessionKey,
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError>;

    /// Makes every update so far durable.
    fn flush(&self) -> FlushFuture<'_>;

    /// Appends a decision to the conversation's timeline.
    fn record_decision(&self, key: &SessionKey, entry: &DecisionEntry) -> Result<(), StoreError>;

    /// Appends several decisions in one write.
    fn record_decisions(&self, entries: &[(SessionKey, DecisionEntry)]) -> Result<(), StoreError>;

    /// The conversation's timeline, oldest first (bounded: see timeline.rs).
    fn decisions(&self, key: &SessionKey) -> Result<Vec<DecisionEntry>, StoreError>;

    /// Adds the reported result to the decision of `turn` with
    /// `decision_id`; false when no such decision is stored.
    fn complete_decision(
        &self,
        key: &SessionKey,
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
    ) -> Result<bool, StoreError>;

    /// A tenant's spend and turns on a UTC day.
    fn tenant_day(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError>;

    /// Stores a tenant's spend and turns for `day.day`.
    fn put_tenant_day(&self, tenant: &str, day: &TenantDay) -> Result<(), StoreError>;

    /// Whether other control planes share this store: then nothing read
    /// may be kept in memory as the truth (tenant days are added with
    /// [`SessionStore::add_tenant_day`], read on every check).
    fn shared(&self) -> bool {
        false
    }

    /// Atomically adds to a tenant's totals of `day`; returns the new
    /// totals. A store not [`shared`](SessionStore::shared) may leave
    /// this to the caller's memory.
    fn add_tenant_day(
        &self,
        tenant: &str,
        day: u64,
        usd: f64,
        turns: u64,
    ) -> Result<TenantDay, StoreError> {
        let mut current = self.tenant_day(tenant, day)?.unwrap_or(TenantDay {
            day,
            ..TenantDay::default()
        });
        current.usd += usd;
        current.turns += turns;
        self.put_tenant_day(tenant, &current)?;
        Ok(current)
    }

    /// Atomically adds `add`'s spend, turns and tokens to the totals of
    /// its model and tenant on its UTC day (kept [`MODEL_DAYS_KEPT`] days).
    /// A store without the totals keeps none.
    fn add_model_day(&self, add: &ModelDay) -> Result<(), StoreError> {
        let _ = add;
        Ok(())
    }

    /// Every model's totals per tenant on the UTC days `from..=to`.
    fn model_days(&self, from: u64, to: u64) -> Result<Vec<ModelDay>, StoreError> {
        let _ = (from, to);
        Ok(Vec::new())
    }

    /// Run-time budget caps (`Admin.SetBudgets`).
    fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError>;

    /// Stores run-time budget caps (not durable until flushed).
    fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError>;

    /// Shares that a 429 parked `key` (`provider/key_ref`) until
    /// `until_ms`; a store that is not shared keeps nothing.
    fn park_key(&self, _key: &str, _until_ms: u64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Keys parked by any replica and still parked at `now_ms`, with when
    /// they may be used again.
    fn parked_keys(&self, _now_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(Vec::new())
    }

    /// Removes sessions idle past their TTL among the next batch of stored
    /// ones (each call goes on where the last stopped, and wraps); returns
    /// how many.
    fn sweep(&self, now_ms: u64) -> Result<usize, StoreError>;

    /// Live conversations, most recently active first, that `keep` accepts:
    /// up to `limit` from `cursor` (a page's `next`), without reading every
    /// session (an index by activity; with fields in `by`, which `keep`
    /// must check too, the index of the most selective one; otherwise a
    /// filtered page reads a bounded part of it and says where to go on).
    /// A store without the index lists none.
    fn list_conversations(
        &self,
        by: ListBy<'_>,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        let _ = (by, keep, cursor, limit, now_ms);
        Ok(ConversationPage::default())
    }

    /// Notes that a sidecar served one of the conversation's turns without
    /// the control plane, for [`ConversationSummary::degraded`].
    fn mark_degraded(&self, key: &SessionKey) {
        let _ = key;
    }

    /// Whether this is the first claim, by any control plane sharing the
    /// store, to apply the report of `decision_id` (a sidecar sends a batch
    /// again, maybe to another replica, when its ack was lost). Claims are
    /// kept [`REPORT_CLAIM_MS`]. A store not [`shared`](SessionStore::shared)
    /// claims nothing: the router remembers in memory.
    fn claim_report(&self, decision_id: &str) -> Result<bool, StoreError> {
        let _ = decision_id;
        Ok(true)
    }
}

/// How long a shared store remembers an applied report (a sidecar resends
/// an unacknowledged batch within seconds while a replica answers).
pub const REPORT_CLAIM_MS: u64 = 5 * 60 * 1000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
