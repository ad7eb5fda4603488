//! `Report`: outcomes feed the live signals (latency, breakers, parked
//! keys, key load), the tenant's and the conversation's spend and turns, and
//! complete the turn's decision record. A conversation first served while
//! the control plane was unreachable adopts the model it was served with as
//! its pin, unless it has one.

use std::time::Instant;

use keel::pb;
use tonic::Status;

use super::{RouterState, internal};
use crate::{
    budget::utc_day,
    signals::AttemptKind,
    store::{DecisionEntry, ModelDay, SessionKey, StoreError, TurnResult, now_ms},
};

/// A provider key: indexes into the catalog's providers and into that
/// provider's keys (what `Capacity` counts by; not a deployment and key).
#[derive(Debug, Clone, Copy)]
struct KeyId {
    provider: usize,
    key: usize,
}

/// How long a key a provider rejected (401/403) is not chosen (the
/// sidecar parks it as long).
const REJECTED_KEY_PARK_SECS: u64 = 300;

impl RouterState {
    /// Whether the outcome of `decision_id` is new here: to every replica
    /// when the store is shared, else to this control plane.
    fn first_report(&self, decision_id: &str) -> Result<bool, Status> {
        if self.store.shared() {
            self.store.claim_report(decision_id).map_err(internal)
        } else {
            Ok(self.seen.first(decision_id))
        }
    }

    /// Applies a batch of outcomes to signals and sessions.
    pub async fn report(&self, batch: pb::ReportBatch) -> Result<u32, Status> {
        let mut accepted = 0;
        let mut adopted = false;
        // Tenants whose day changed: written once for the whole batch.
        let mut spenders: Vec<String> = Vec::new();
        let now = Instant::now();
        for outcome in batch.outcomes {
            if !outcome.decision_id.is_empty() && !self.first_report(&outcome.decision_id)? {
                // Sent again after a lost ack: applied already.
                accepted += 1;
                continue;
            }
            let usage = outcome.usage.unwrap_or_default();
            let last = outcome.attempts.len().saturating_sub(1);
            // Served, then neither completed nor cancelled: the answer
            // broke off part-way, whatever class the caller gave it.
            let broke = !outcome.success && !outcome.stream_completed && !outcome.cancelled;
            for (i, a) in outcome.attempts.iter().enumerate() {
                let tokens = if i == last {
                    u64::from(usage.input_tokens) + u64::from(usage.output_tokens)
                } else {
                    0
                };
                self.record_attempt(a, tokens, i == last && broke, now);
            }
            if !outcome.decision_id.is_empty() {
                // `Route` counted the decision's primary key as in flight.
                self.release(&outcome);
            }
            let cost = self.cost(&outcome);
            self.measure(&outcome, cost);
            if outcome.success || cost > 0.0 {
                let tenant = keel::tenant_or_default(&outcome.tenant);
                self.tenants
                    .add_unpersisted(
                        &*self.store,
                        tenant,
                        utc_day(now_ms()),
                        cost,
                        u64::from(outcome.success),
                    )
                    .map_err(internal)?;
                if !spenders.iter().any(|t| t == tenant) {
                    spenders.push(tenant.to_owned());
                }
            }
            if !outcome.conversation_id.is_empty() {
                // A turn cut short (cancelled, broken) still spent: counted.
                if outcome.success || cost > 0.0 {
                    adopted |= self
                        .apply_to_session(&outcome, cost)
                        .await
                        .map_err(internal)?;
                } else if !outcome.decision_id.is_empty() {
                    self.complete_record(&outcome, cost, None).await;
                }
            }
            accepted += 1;
        }
        for tenant in &spenders {
            self.tenants
                .persist(&*self.store, tenant)
                .map_err(internal)?;
        }
        if adopted {
            // An adopted pin is what the app was served: keep it across a crash.
            self.store.flush().await.map_err(internal)?;
        }
        Ok(accepted)
    }

    /// Metrics of one reported request: cost and tokens of a served one,
    /// and whether a sidecar served it on its own.
    fn measure(&self, outcome: &pb::Outcome, cost: f64) {
        // Labels only from config: a report names what a sidecar sent.
        let profile = if self.config.profiles.contains_key(&outcome.profile) {
            outcome.profile.as_str()
        } else {
            "other"
        };
        if outcome.degraded {
            self.metrics.degraded(profile);
            if !outcome.conversation_id.is_empty() {
                self.store.mark_degraded(&SessionKey::new(
                    keel::tenant_or_default(&outcome.tenant),
                    &outcome.conversation_id,
                ));
            }
        }
        let served = outcome.attempts.last().and_then(|a| a.target.as_ref());
        let Some(t) = served.filter(|t| {
            self.config
                .catalog
                .deployment_index(&t.model, &t.provider)
                .is_some()
        }) else {
            return;
        };
        let usage = outcome.usage.unwrap_or_default();
        if outcome.success {
            self.metrics
                .served(profile, &t.model, &t.provider, &usage, cost);
        }
        // A turn cut short spent too (as the tenant's and session's totals).
        if outcome.success || cost > 0.0 {
            let served = ModelDay {
                day: utc_day(now_ms()),
                model: t.model.clone(),
                tenant: keel::tenant_or_default(&outcome.tenant).to_owned(),
                usd: cost,
                turns: 1,
                input_tokens: usage.input_tokens.into(),
                output_tokens: usage.output_tokens.into(),
                cached_input_tokens: usage.cached_input_tokens.into(),
            };
            if let Err(e) = self.store.add_model_day(&served) {
                tracing::warn!(error = %e, "could not add to the model's spend of the day");
            }
        }
    }

    /// The provider key of a reported target (of its deployment `d`).
    fn key_of(&self, t: &pb::Target, d: usize) -> Option<KeyId> {
        let catalog = &self.config.catalog;
        let provider = catalog.deployments()[d].provider;
        let key = catalog.providers()[provider]
            .keys
            .iter()
            .position(|k| k.key_ref == t.key_ref)?;
        Some(KeyId { provider, key })
    }

    /// Ends the in-flight count `Route` started on the decision's primary
    /// key (the first attempt's target).
    fn release(&self, outcome: &pb::Outcome) {
        let catalog = &self.config.catalog;
        if let Some(id) = outcome
            .attempts
            .first()
            .and_then(|a| a.target.as_ref())
            .and_then(|t| {
                let d = catalog.deployment_index(&t.model, &t.provider)?;
                self.key_of(t, d)
            })
        {
            self.capacity.finished(id.provider, id.key);
        }
    }

    /// USD of the outcome's usage at the serving deployment's catalog
    /// prices: every input token (cached ones included) and output token.
    fn cost(&self, outcome: &pb::Outcome) -> f64 {
        let Some(served) = outcome.attempts.last().and_then(|a| a.target.as_ref()) else {
            return 0.0;
        };
        let usage = outcome.usage.unwrap_or_default();
        let catalog = &self.config.catalog;
        catalog
            .deployment_index(&served.model, &served.provider)
            .map_or(0.0, |d| {
                catalog.deployments()[d].cost_usd(
                    u64::from(usage.input_tokens),
                    u64::from(usage.output_tokens),
                )
            })
    }

    /// Feeds one attempt to the deployment's signals and its key's load;
    /// `broke`: it was answered, then its answer broke off (a failure).
    fn record_attempt(&self, a: &pb::Attempt, tokens: u64, broke: bool, now: Instant) {
        let Some(t) = &a.target else { return };
        let catalog = &self.config.catalog;
        let Some(deployment) = catalog.deployment_index(&t.model, &t.provider) else {
            return;
        };
        let retry_after = a
            .rate_limit_headers
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let kind = match AttemptKind::of(a.status, &a.error_class) {
            AttemptKind::Success if broke => AttemptKind::ProviderFailure,
            kind => kind,
        };
        if let Some(KeyId {
            provider: p,
            key: k,
        }) = self.key_of(t, deployment)
        {
            // Parked keys are shared with the other replicas (shared.rs).
            match kind {
                AttemptKind::RateLimited => {
                    let wait = self.capacity.park(p, k, retry_after, now);
                    self.share_park(p, k, wait);
                }
                AttemptKind::KeyRejected => {
                    tracing::warn!(provider = %t.provider, key_ref = %t.key_ref, "provider rejected a key; parked");
                    let wait = self.capacity.park(p, k, Some(REJECTED_KEY_PARK_SECS), now);
                    self.share_park(p, k, wait);
                }
                _ => {}
            }
            self.capacity.observe(
                p,
                k,
                tokens,
                &a.rate_limit_headers,
                kind == AttemptKind::RateLimited,
                now,
            );
        }
        self.signals
            .record(deployment, kind, a.latency_ms, a.ttft_ms);
    }

    /// Adds spend and usage (of a turn cut short too); for a successful
    /// outcome, the affinity to what served it, and when served without the
    /// control plane, counts the turn and adopts the model as the pin.
    /// Returns whether a pin was adopted.
    async fn apply_to_session(&self, outcome: &pb::Outcome, cost: f64) -> Result<bool, StoreError> {
        let Some(served) = outcome.attempts.last().and_then(|a| a.target.as_ref()) else {
            return Ok(false);
        };
        let usage = outcome.usage.unwrap_or_default();
        let tenant = keel::tenant_or_default(&outcome.tenant);
        // A pin adopted from a degraded turn meets the profile's floor.
        let locks = self
            .config
            .profiles
            .get(&outcome.profile)
            .or_else(|| {
                self.config
                    .profiles
                    .get(&self.config.routing.default_profile)
            })
            .is_some_and(|p| p.session_lock && self.meets_floor(p, &served.model));
        // A side call (turn 0, also when served degraded) is served on its
        // own: it counts no turn, and the main line's provider and key
        // affinity stay.
        let main_line = outcome.turn > 0;
        let key = SessionKey::new(tenant, &outcome.conversation_id);
        let now = now_ms();
        let updated = self.store.update(&key, now, &mut |current| {
            let mut s = current.cloned().unwrap_or_else(|| crate::store::Session {
                profile: outcome.profile.clone(),
                created_ms: now,
                last_seen_ms: now,
                ..Default::default()
            });
            s.spend_usd += cost;
            s.input_tokens += u64::from(usage.input_tokens);
            s.output_tokens += u64::from(usage.output_tokens);
            s.cached_input_tokens += u64::from(usage.cached_input_tokens);
            if !outcome.success {
                // Spend of a turn cut short: nothing else is learnt from it.
                return s;
            }
            if main_line {
                s.provider_affinity = Some(served.provider.clone());
                s.key_affinity = Some(served.key_ref.clone());
            }
            if outcome.degraded && main_line {
                // Served from the sidecar's cache or default: Route never
                // counted this turn.
                s.turns += 1;
                s.last_seen_ms = now;
                if s.pinned_model.is_none() && locks && !served.model.is_empty() {
                    s.pinned_model = Some(served.model.clone());
                }
            }
            s
        })?;
        let adopted = updated.after.pinned_model.is_some()
            && updated
                .before
                .as_ref()
                .is_none_or(|b| b.pinned_model.is_none());
        let degraded_turn = (outcome.degraded && main_line).then_some(updated.after.turns);
        self.complete_record(outcome, cost, degraded_turn).await;
        if adopted {
            tracing::info!(
                conversation_id = %outcome.conversation_id,
                model = %served.model,
                "adopted the model served while degraded as the pin"
            );
        }
        Ok(adopted)
    }
}

impl RouterState {
    /// Completes the turn's decision record with how it went. A turn served
    /// without the control plane (`degraded_turn`, its number as now
    /// counted) had no decision: it gets a record of its own.
    async fn complete_record(&self, outcome: &pb::Outcome, cost: f64, degraded_turn: Option<u32>) {
        let usage = outcome.usage.unwrap_or_default();
        let served = outcome.attempts.last().and_then(|a| a.target.as_ref());
        let result = TurnResult {
            success: outcome.success,
            latency_ms: outcome.total_latency_ms,
            ttft_ms: outcome.attempts.last().map_or(0, |a| a.ttft_ms),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_creation_tokens: usage.cache_creation_tokens,
            cost_usd: cost,
            provider: served.map(|t| t.provider.clone()).unwrap_or_default(),
            key_ref: served.map(|t| t.key_ref.clone()).unwrap_or_default(),
            attempts: u32::try_from(outcome.attempts.len()).unwrap_or(u32::MAX),
            cancelled: outcome.cancelled,
            usage_estimated: usage.estimated,
        };
        let key = SessionKey::new(
            keel::tenant_or_default(&outcome.tenant),
            &outcome.conversation_id,
        );
        if let Some(turn) = degraded_turn {
            let entry = DecisionEntry {
                decision_id: String::new(),
                turn,
                kind: pb::DecisionKind::Unspecified as i32,
                model: served.map(|t| t.model.clone()).unwrap_or_default(),
                provider: result.provider.clone(),
                reason: "served by the sidecar while the control plane was unreachable".into(),
                at_ms: outcome.started_at_unix_ms,
                events: Vec::new(),
                result: Some(result),
            };
            return self.decision_log.record(key, entry).await;
        }
        if outcome.decision_id.is_empty() || outcome.turn == 0 {
            return;
        }
        self.decision_log
            .complete(key, outcome.turn, outcome.decision_id.clone(), result)
            .await;
    }
}
