//! Main line and side calls. Harnesses make auxiliary calls under the
//! agent's session id (titles, summaries, compaction, classifiers, token
//! counts), often on a small model and without tools. Only the main line
//! creates, keeps or moves a pin and counts turns; a side call is routed on
//! its own (decision kind `SIDE`) and never touches the session.
//!
//! A request of a conversation is a side call when
//! * the caller says so (`RouteRequest.side_call`: the sidecar recognises
//!   token counts, a harness's own markers and a request without tools on a
//!   conversation whose main line has them), or
//! * under a session-locked profile, it names a model below the profile's
//!   quality floor: a locked profile's pin only ever meets its floor.
//!
//! A side call naming a model gets that model; one that names none is served
//! by the conversation's pin when there is one (same model, warm cache),
//! else chosen by the profile. A main-line request naming a model at or
//! above the floor on a pinned conversation is served by the pin (the pin
//! wins; `pinned_unavailable` alone moves it).
//!
//! A repeated turn (`RouteRequest.repeat_turn`: the same history again, a
//! retry) of a pinned conversation is served by the pin as the same turn.

use keel::pb::{self, DecisionKind, RequestFeatures, RouteRequest};
use tonic::Status;

use super::{MAX_FALLBACKS, RouterState, budget::refused, internal, no_candidate};
use crate::{
    budget,
    config::Profile,
    policy::{Affinity, Choice, Placement},
    store::{DecisionEntry, Session, SessionKey},
};

/// The side call of a token count (`POST /v1/messages/count_tokens`).
pub const COUNT_TOKENS: &str = "count_tokens";

/// Longest side-call reason taken from the caller, bytes.
const MAX_REASON: usize = 128;

/// A request recognised as a side call, and why.
struct SideCall<'a> {
    req: &'a RouteRequest,
    profile: &'a Profile,
    requested: Option<&'a str>,
    features: &'a RequestFeatures,
    why: String,
}

impl RouterState {
    /// Decides a request that is not a new main-line turn (a side call or a
    /// repeated turn) without updating the session; `None` for the main
    /// line, which `decide` takes from here.
    pub(super) async fn off_main_line(
        &self,
        req: &RouteRequest,
        profile: &Profile,
        requested: Option<&str>,
        features: &RequestFeatures,
        decision_id: &str,
        now: u64,
    ) -> Result<Option<pb::Decision>, Status> {
        let key = (!req.conversation_id.is_empty())
            .then(|| SessionKey::new(keel::tenant_or_default(&req.tenant), &req.conversation_id));
        if let Some(why) = self.side_reason(req, profile, requested) {
            let call = SideCall {
                req,
                profile,
                requested,
                features,
                why,
            };
            return self.side_call(call, key, decision_id, now).await.map(Some);
        }
        match key.filter(|_| req.repeat_turn) {
            Some(key) => self.repeated_turn(&key, profile, decision_id, now),
            None => Ok(None),
        }
    }

    /// Routes a side call on its own and adds it to the timeline.
    async fn side_call(
        &self,
        call: SideCall<'_>,
        key: Option<SessionKey>,
        decision_id: &str,
        now: u64,
    ) -> Result<pb::Decision, Status> {
        let SideCall {
            req,
            profile,
            requested,
            features,
            why,
        } = call;
        let session = match &key {
            Some(key) => self.store.get(key, now).map_err(internal)?,
            None => None,
        };
        if let Some(s) = &session {
            self.check_side_spend(req, profile, s)?;
        }
        // Only a call that names no model may be served by the pin.
        let pinned = session.as_ref().filter(|_| requested.is_none());
        let mut choice = match self.served_by_pin(profile, pinned) {
            Some(c) => c,
            None => self
                .policy()
                .choose(profile, requested, features)
                .map_err(no_candidate)?,
        };
        choice.reason = format!("side call ({why}): {}", choice.reason);
        let fallbacks = self.policy().fallbacks(
            (choice.deployment, choice.key),
            Some((profile, features)),
            MAX_FALLBACKS,
        );
        let decision = self.decision(
            decision_id.to_owned(),
            profile,
            &choice,
            fallbacks,
            false,
            DecisionKind::Side,
            0,
        );
        if req.side_call == COUNT_TOKENS {
            // Never reported (it costs nothing and its latency says nothing
            // about the model's): nothing is left in flight.
            let provider = self.config.catalog.deployments()[choice.deployment].provider;
            self.capacity.finished(provider, choice.key);
        }
        if let Some(key) = key {
            self.record_off_line(key, &decision, now).await;
        }
        Ok(decision)
    }

    /// A retry of a pinned conversation's last turn: served by the pin as
    /// that turn. `None` when there is no pin to serve it.
    fn repeated_turn(
        &self,
        key: &SessionKey,
        profile: &Profile,
        decision_id: &str,
        now: u64,
    ) -> Result<Option<pb::Decision>, Status> {
        let Some(session) = self.store.get(key, now).map_err(internal)? else {
            return Ok(None);
        };
        let Some(mut choice) = self.served_by_pin(profile, Some(&session)) else {
            return Ok(None);
        };
        let turn = session.turns;
        choice.reason = format!("repeat of turn {turn} (a retry): {}", choice.reason);
        let fallbacks =
            self.policy()
                .fallbacks((choice.deployment, choice.key), None, MAX_FALLBACKS);
        Ok(Some(self.decision(
            decision_id.to_owned(),
            profile,
            &choice,
            fallbacks,
            true,
            DecisionKind::Retain,
            turn,
        )))
    }

    /// Why the request is a side call of its conversation, if it is one.
    fn side_reason(
        &self,
        req: &RouteRequest,
        profile: &Profile,
        requested: Option<&str>,
    ) -> Option<String> {
        if !req.side_call.is_empty() {
            // A token count is never a turn, with or without a conversation.
            let mut why = req.side_call.clone();
            if why.len() > MAX_REASON {
                let mut end = MAX_REASON;
                while !why.is_char_boundary(end) {
                    end -= 1;
                }
                why.truncate(end);
            }
            return Some(why);
        }
        let model =
            requested.filter(|_| profile.session_lock && !req.conversation_id.is_empty())?;
        let tier = self.config.catalog.tier_of(model)?;
        (tier < profile.quality_floor).then(|| {
            format!(
                "requested model {model} is tier {tier}, below the {} floor {}",
                profile.name, profile.quality_floor
            )
        })
    }

    /// A conversation paused by its USD cap pauses its side calls too; its
    /// turn cap does not apply (a side call is not a turn).
    fn check_side_spend(
        &self,
        req: &RouteRequest,
        profile: &Profile,
        session: &Session,
    ) -> Result<(), Status> {
        let mut caps = session.budget.over(self.caps(profile));
        caps.per_conversation_turns = None;
        // Checked for every request before this.
        caps.per_tenant_usd_per_day = None;
        if !caps.limits_conversation() {
            return Ok(());
        }
        let used = budget::Usage {
            conversation: Some((session.turns, session.spend_usd)),
            tenant_usd_today: 0.0,
        };
        budget::check(&caps, used).map_err(|e| {
            refused(
                keel::tenant_or_default(&req.tenant),
                Some(&req.conversation_id),
                &e,
            )
        })
    }

    /// Whether `model` may be a pin under `profile`: a locked profile's pin
    /// only ever meets its quality floor.
    pub(super) fn meets_floor(&self, profile: &Profile, model: &str) -> bool {
        self.config
            .catalog
            .tier_of(model)
            .is_some_and(|tier| tier >= profile.quality_floor)
    }

    /// The session's pinned model, placed, when it has one that can serve.
    fn served_by_pin(&self, profile: &Profile, session: Option<&Session>) -> Option<Choice> {
        let session = session?;
        let model = session.pinned_model.as_deref()?;
        let affinity = Affinity {
            provider: session.provider_affinity.as_deref(),
            key: session.key_affinity.as_deref(),
        };
        match self.policy().place(profile, model, affinity) {
            Placement::Healthy(deployment, key) => Some(Choice {
                deployment,
                key,
                reason: format!("served by the pin {model} ({})", session.profile),
            }),
            // Down, shed or gone: the main line's rules (failover, waiting)
            // or the profile's choice apply.
            Placement::AllOpen(..) | Placement::Shed | Placement::Unknown => None,
        }
    }

    /// Adds a side call to the conversation's timeline (turn 0: no turn is
    /// completed by its report). Dropped when the conversation has no
    /// session yet.
    async fn record_off_line(&self, key: SessionKey, decision: &pb::Decision, now: u64) {
        let Some(target) = decision.target.as_ref() else {
            return;
        };
        let entry = DecisionEntry {
            decision_id: decision.decision_id.clone(),
            turn: decision.turn,
            kind: decision.kind,
            model: target.model.clone(),
            provider: target.provider.clone(),
            reason: decision.reason.clone(),
            at_ms: now,
            events: Vec::new(),
            result: None,
        };
        self.decision_log.record(key, entry).await;
    }
}
