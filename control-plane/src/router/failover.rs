//! A pinned model down everywhere: the configured policy decides. `wait`
//! answers 503 with `Retry-After` and keeps the pin; `failover` re-pins to
//! the best healthy model of the same tier, announced as a switch. Never
//! between a tool call and its tool result, and never silently.

use keel::pb::RequestFeatures;

use super::RouterState;
use crate::{
    config::{PinnedUnavailable, Profile},
    policy::{Choice, Placement},
    refusal::Refusal,
    store::SessionKey,
};

impl RouterState {
    /// Handles a pinned conversation whose model has no healthy deployment:
    /// returns the switch to make, or the refusal to answer.
    pub(super) async fn pinned_model_down(
        &self,
        key: &SessionKey,
        model: &str,
        profile: &Profile,
        features: &RequestFeatures,
        now: u64,
    ) -> Result<Choice, Refusal> {
        let wait = |why: &str| {
            let secs = self.config.health.open_for.as_secs().max(1);
            Refusal::PinnedUnavailable {
                message: format!(
                    "every provider of pinned model `{model}` is unavailable; {why}; retry after {secs} s"
                ),
                retry_after_secs: secs,
            }
        };
        if self.config.routing.pinned_unavailable == PinnedUnavailable::Wait {
            return Err(wait(
                "the conversation keeps its model (pinned_unavailable = wait)",
            ));
        }
        if features.ends_with_tool_result {
            return Err(wait(
                "a tool result is answering this model's own tool call",
            ));
        }
        let catalog = &self.config.catalog;
        let Some(tier) = catalog
            .deployments_of(model)
            .first()
            .map(|&d| catalog.deployments()[d].tier)
        else {
            return Err(wait("the model is gone"));
        };
        let policy = self.policy();
        let same_tier = Profile {
            quality_floor: tier,
            ..profile.clone()
        };
        let replacement = policy
            .ranked(&same_tier, features)
            .into_iter()
            .map(|d| &catalog.deployments()[d])
            .find(|d| d.name != model && d.tier == tier)
            .map(|d| d.name.clone());
        let Some(new_model) = replacement else {
            return Err(wait("no healthy model of the same tier to fail over to"));
        };
        let Placement::Healthy(slot) = policy.place(profile, &new_model, Default::default()) else {
            return Err(wait("no healthy model of the same tier to fail over to"));
        };
        self.store.update(key, now, &mut |current| {
            let mut s = current.cloned().unwrap_or_default();
            if s.pinned_model.as_deref() == Some(model) {
                s.pinned_model = Some(new_model.clone());
                s.provider_affinity = None;
            }
            s
        })?;
        // The app is told about the new pin: it must survive a crash.
        self.store.flush().await?;
        tracing::warn!(from = %model, to = %new_model, tier, "pinned model down everywhere, re-pinned");
        Ok(Choice {
            slot,
            reason: format!(
                "failover: every provider of {model} is unavailable; re-pinned to {new_model} (tier {tier})"
            ),
        })
    }
}
