//! `Report`: outcomes feed the live signals (latency, breakers, parked
//! keys) and the conversation's spend and turns. A conversation first served
//! while the control plane was unreachable adopts the model it was served
//! with as its pin, unless it has one.

use keel::pb;
use tonic::Status;

use super::{RouterState, internal};
use crate::{
    signals::AttemptKind,
    store::{SessionKey, StoreError, now_ms},
};

impl RouterState {
    /// Applies a batch of outcomes to signals and sessions.
    pub async fn report(&self, batch: pb::ReportBatch) -> Result<u32, Status> {
        let mut accepted = 0;
        let mut adopted = false;
        for outcome in batch.outcomes {
            for a in &outcome.attempts {
                self.record_attempt(a);
            }
            if !outcome.conversation_id.is_empty() && outcome.success {
                adopted |= self.apply_to_session(&outcome).map_err(internal)?;
            }
            accepted += 1;
        }
        if adopted {
            // An adopted pin is what the app was served: keep it across a crash.
            self.store.flush().await.map_err(internal)?;
        }
        Ok(accepted)
    }

    fn record_attempt(&self, a: &pb::Attempt) {
        let Some(t) = &a.target else { return };
        let catalog = &self.config.catalog;
        let Some(deployment) = catalog.deployment_index(&t.model, &t.provider) else {
            return;
        };
        let d = &catalog.deployments()[deployment];
        let key = catalog
            .providers()
            .get(d.provider)
            .and_then(|p| p.keys.iter().position(|k| k.key_ref == t.key_ref))
            .map(|k| (d.provider, k));
        let retry_after = a
            .rate_limit_headers
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.signals.record(
            deployment,
            key,
            AttemptKind::of(a.status, &a.error_class),
            a.latency_ms,
            a.ttft_ms,
            retry_after,
        );
    }

    /// Adds spend and usage; for outcomes served without the control plane,
    /// counts the turn and adopts the model as the pin. Returns whether a pin
    /// was adopted.
    fn apply_to_session(&self, outcome: &pb::Outcome) -> Result<bool, StoreError> {
        let Some(served) = outcome.attempts.last().and_then(|a| a.target.as_ref()) else {
            return Ok(false);
        };
        let usage = outcome.usage.unwrap_or_default();
        let catalog = &self.config.catalog;
        let cost = catalog
            .deployment_index(&served.model, &served.provider)
            .map_or(0.0, |d| {
                catalog.deployments()[d].cost_usd(
                    u64::from(usage.input_tokens),
                    u64::from(usage.output_tokens),
                )
            });
        let tenant = if outcome.tenant.is_empty() {
            keel::DEFAULT_TENANT
        } else {
            &outcome.tenant
        };
        let locks = self
            .config
            .profiles
            .get(&outcome.profile)
            .or_else(|| {
                self.config
                    .profiles
                    .get(&self.config.routing.default_profile)
            })
            .is_some_and(|p| p.session_lock);
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
            s.provider_affinity = Some(served.provider.clone());
            if outcome.degraded {
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
