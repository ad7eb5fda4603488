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

use keel::pb::{self, DecisionKind, RouteRequest};

use super::{
    MAX_FALLBACKS, RouterState,
    decide::{Ask, Placed},
};
use crate::{
    budget,
    config::Profile,
    policy::{Affinity, Choice, Placement},
    refusal::Refusal,
    store::{Session, SessionKey},
};

/// The side call of a token count (`POST /v1/messages/count_tokens`).
pub const COUNT_TOKENS: &str = "count_tokens";

/// Longest side-call reason taken from the caller, bytes.
const MAX_REASON: usize = 128;

impl RouterState {
    /// Decides a request that is not a new main-line turn (a side call or a
    /// repeated turn) without updating the session; `None` for the main
    /// line, which `decide` takes from here.
    pub(super) async fn off_main_line(
        &self,
        ask: &Ask<'_>,
    ) -> Result<Option<pb::Decision>, Refusal> {
        let req = ask.req;
        let key = (!req.conversation_id.is_empty())
            .then(|| SessionKey::new(ask.tenant, &req.conversation_id));
        if let Some(why) = self.side_reason(req, ask.profile, ask.requested) {
            return self.side_call(ask, &why, key).await.map(Some);
        }
        match key.filter(|_| req.repeat_turn) {
            Some(key) => self.repeated_turn(ask, &key),
            None => Ok(None),
        }
    }

    /// Routes a side call on its own and adds it to the timeline.
    async fn side_call(
        &self,
        ask: &Ask<'_>,
        why: &str,
        key: Option<SessionKey>,
    ) -> Result<pb::Decision, Refusal> {
        let profile = ask.profile;
        let session = match &key {
            Some(key) => self.store.get(key, ask.now)?,
            None => None,
        };
        if let Some(s) = &session {
            self.check_side_spend(ask, s)?;
        }
        // Only a call that names no model may be served by the pin.
        let pinned = session.as_ref().filter(|_| ask.requested.is_none());
        let mut choice = match self.served_by_pin(profile, pinned) {
            Some(c) => c,
            None => self
                .policy()
                .choose(profile, ask.requested, &ask.features)?,
        };
        choice.reason = format!("side call ({why}): {}", choice.reason);
        let slot = choice.slot;
        let fallbacks =
            self.policy()
                .fallbacks(slot, Some((profile, &ask.features)), MAX_FALLBACKS);
        let placed = Placed {
            choice,
            pinned: false,
            kind: DecisionKind::Side,
        };
        let decision = self.build(ask, profile, &placed, &fallbacks, 0);
        // A token count is never reported (it costs nothing and its latency
        // says nothing about the model's), so it is not put in flight.
        if ask.req.side_call != COUNT_TOKENS {
            self.start(slot);
        }
        if let Some(key) = key {
            // Turn 0: no turn is completed by its report.
            self.record(key, &decision, Vec::new(), ask.now).await;
        }
        Ok(decision)
    }

    /// A retry of a pinned conversation's last turn: served by the pin as
    /// that turn. `None` when there is no pin to serve it.
    fn repeated_turn(
        &self,
        ask: &Ask<'_>,
        key: &SessionKey,
    ) -> Result<Option<pb::Decision>, Refusal> {
        let Some(session) = self.store.get(key, ask.now)? else {
            return Ok(None);
        };
        let Some(mut choice) = self.served_by_pin(ask.profile, Some(&session)) else {
            return Ok(None);
        };
        let turn = session.turns;
        choice.reason = format!("repeat of turn {turn} (a retry): {}", choice.reason);
        let slot = choice.slot;
        let fallbacks = self.policy().fallbacks(slot, None, MAX_FALLBACKS);
        let placed = Placed {
            choice,
            pinned: true,
            kind: DecisionKind::Retain,
        };
        let decision = self.build(ask, ask.profile, &placed, &fallbacks, turn);
        self.start(slot);
        Ok(Some(decision))
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
    fn check_side_spend(&self, ask: &Ask<'_>, session: &Session) -> Result<(), Refusal> {
        let mut caps = session.budget.over(self.caps(ask.profile));
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
        budget::check(&caps, used)
            .map_err(|e| self.refused(ask.tenant, Some(&ask.req.conversation_id), e))
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
            Placement::Healthy(slot) => Some(Choice {
                slot,
                reason: format!("served by the pin {model} ({})", session.profile),
            }),
            // Down, shed or gone: the main line's rules (failover, waiting)
            // or the profile's choice apply.
            Placement::AllOpen(..) | Placement::Shed | Placement::Unknown => None,
        }
    }
}
