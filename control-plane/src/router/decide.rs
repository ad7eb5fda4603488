//! The routing decision for one request, as its steps:
//!
//! 1. [`resolve`](RouterState::resolve) the request against the config
//!    (profile, requested model, caps);
//! 2. check the tenant's cap ([`check_tenant`](RouterState::check_tenant));
//! 3. [`update_session`](RouterState::update_session): count the turn,
//!    observe divergence, create a pin (atomically in the store, which
//!    may run the update more than once), check the conversation's caps —
//!    returning what changed;
//! 4. place the turn: on the pin ([`place_pinned`](RouterState::place_pinned))
//!    or freely ([`place_unpinned`](RouterState::place_unpinned));
//! 5. [`build`](RouterState::build) the decision (no side effects);
//! 6. [`start`](RouterState::start) it (breaker probe, key in flight) and
//!    [`record`](RouterState::record) it in the conversation's timeline.
//!
//! A request without a session skips 3 and 6's record.

use std::borrow::Cow;

use keel::pb::{self, DecisionKind, RequestFeatures, RouteRequest};

use super::{MAX_FALLBACKS, RouterState, budget::check_conversation, validate_ids};
use crate::{
    budget::{Caps, Exceeded},
    config::{Objective, Profile},
    divergence::{Escalation, Nudge},
    policy::{Affinity, Choice, Placement, PolicyError, Slot},
    refusal::Refusal,
    store::{DecisionEntry, Session, SessionKey, now_ms},
};

/// A request resolved against the config (step 1).
pub(super) struct Ask<'a> {
    pub(super) req: &'a RouteRequest,
    pub(super) profile: &'a Profile,
    /// A catalog model the app named (aliases resolved); `None` for `auto`.
    pub(super) requested: Option<&'a str>,
    pub(super) features: RequestFeatures,
    pub(super) tenant: &'a str,
    pub(super) caps: Caps,
    pub(super) decision_id: String,
    pub(super) now: u64,
}

/// The session after this turn's update (step 3).
struct Turned {
    session: Session,
    /// This update created the conversation's pin.
    created_pin: bool,
    /// A divergence nudge for this turn.
    nudge: Option<Nudge>,
    /// The choice made inside the update for a new pin (absent when the
    /// session already had one or the profile does not lock).
    fresh: Option<Result<Choice, PolicyError>>,
}

/// What one run of the session update found, besides the new session.
#[derive(Default)]
struct Observed {
    over: Option<Exceeded>,
    nudge: Option<Nudge>,
}

/// Where the turn goes (step 4).
pub(super) struct Placed {
    pub(super) choice: Choice,
    pub(super) pinned: bool,
    pub(super) kind: DecisionKind,
}

impl RouterState {
    /// Decides one request (the steps in the module doc). A budget refusal
    /// changes nothing in the session.
    pub(super) async fn decide(&self, req: RouteRequest) -> Result<pb::Decision, Refusal> {
        let ask = self.resolve(&req)?;
        let tenant_usd_today = self.check_tenant(ask.tenant, &ask.caps, ask.now)?;
        // Side calls and repeated turns leave the session untouched (side.rs).
        if let Some(decision) = self.off_main_line(&ask).await? {
            return Ok(decision);
        }
        let Some(key) = self.session_key(&ask) else {
            return self.decide_unpinned(&ask);
        };
        let turned = self.update_session(&ask, &key, tenant_usd_today)?;
        let escalation = self.escalation(&turned.session);
        // Divergence escalation `stop`: the turn is refused and recorded.
        if let Some(n) = turned
            .nudge
            .as_ref()
            .filter(|n| n.escalate == Escalation::Stop)
        {
            let turn = turned.session.turns;
            return Err(self
                .stop(
                    key,
                    &req.conversation_id,
                    n,
                    &ask.decision_id,
                    turn,
                    ask.now,
                )
                .await);
        }
        let profile = escalated(ask.profile, escalation, ask.requested);
        let placed = match turned.session.pinned_model.as_deref() {
            Some(model) => {
                self.place_pinned(&ask, &key, model, &turned, &profile)
                    .await?
            }
            None => self.place_unpinned(&ask, turned.fresh, &profile, escalation)?,
        };
        let turn = turned.session.turns;
        let may_switch = (!placed.pinned).then_some((&*profile, &ask.features));
        let fallbacks = self
            .policy()
            .fallbacks(placed.choice.slot, may_switch, MAX_FALLBACKS);
        let mut decision = self.build(&ask, &profile, &placed, &fallbacks, turn);
        let events = match turned.nudge {
            Some(n) => vec![self.apply_nudge(&mut decision, &req.conversation_id, n, escalation)],
            None => Vec::new(),
        };
        self.start(placed.choice.slot);
        self.record(key, &decision, events, ask.now).await;
        Ok(decision)
    }

    /// Step 1: the profile, the requested model and the caps in force.
    fn resolve<'a>(&'a self, req: &'a RouteRequest) -> Result<Ask<'a>, Refusal> {
        validate_ids(req)?;
        let profile = self.profile(&req.profile)?;
        let requested = match req.model.as_str() {
            "" | crate::catalog::AUTO => None,
            name => match self.config.catalog.resolve(name) {
                crate::catalog::AUTO => None,
                resolved if self.config.catalog.deployments_of(resolved).is_empty() => {
                    return Err(Refusal::NotFound(format!(
                        "model `{name}` is not in the catalog"
                    )));
                }
                resolved => Some(resolved),
            },
        };
        Ok(Ask {
            req,
            profile,
            requested,
            features: req.features.unwrap_or_default(),
            tenant: keel::tenant_or_default(&req.tenant),
            caps: self.caps(profile),
            decision_id: uuid::Uuid::now_v7().to_string(),
            now: now_ms(),
        })
    }

    /// The session the request belongs to, if it is worth one. An opening
    /// fingerprint is a guess at a session; it is only worth a session where
    /// the profile locks one (one-shot traffic with the same opening is not
    /// a conversation).
    fn session_key(&self, ask: &Ask<'_>) -> Option<SessionKey> {
        let req = ask.req;
        let guessed = req.session_source == pb::SessionSource::Fingerprint as i32;
        if req.conversation_id.is_empty() || (guessed && !ask.profile.session_lock) {
            return None;
        }
        Some(SessionKey::new(ask.tenant, &req.conversation_id))
    }

    /// A request routed on its own: choose, build, start. No session, no
    /// record.
    fn decide_unpinned(&self, ask: &Ask<'_>) -> Result<pb::Decision, Refusal> {
        let policy = self.policy();
        let choice = policy.choose(ask.profile, ask.requested, &ask.features)?;
        let fallbacks = policy.fallbacks(
            choice.slot,
            Some((ask.profile, &ask.features)),
            MAX_FALLBACKS,
        );
        let placed = Placed {
            choice,
            pinned: false,
            kind: DecisionKind::Unpinned,
        };
        let decision = self.build(ask, ask.profile, &placed, &fallbacks, 0);
        self.start(placed.choice.slot);
        Ok(decision)
    }

    /// Step 3: counts the turn in the session (created if new), observes
    /// divergence and creates the pin, atomically in the store (racing
    /// first turns converge on one pin). Over a conversation cap, nothing changes and the
    /// turn is refused; the conversation resumes once the cap is raised.
    fn update_session(
        &self,
        ask: &Ask<'_>,
        key: &SessionKey,
        tenant_usd_today: f64,
    ) -> Result<Turned, Refusal> {
        let fingerprints = if self.config.divergence.enabled {
            keel::fingerprint::from_proto(&ask.req.fingerprints)
        } else {
            Vec::new()
        };
        // Chosen at most once, even when the store runs the update again:
        // choosing counts exploration, claims probes and spreads load.
        let mut fresh: Option<Result<Choice, PolicyError>> = None;
        // What the last run of the update (the one stored) observed.
        let mut observed = Observed::default();
        let updated = self.store.update(key, ask.now, &mut |current| {
            let (next, seen) =
                self.next_session(ask, current, &fingerprints, tenant_usd_today, &mut fresh);
            observed = seen;
            next
        })?;
        if let Some(e) = observed.over {
            return Err(self.refused(ask.tenant, Some(&ask.req.conversation_id), e));
        }
        let created_pin = updated.after.pinned_model.is_some()
            && updated
                .before
                .as_ref()
                .is_none_or(|b| b.pinned_model.is_none());
        Ok(Turned {
            session: updated.after,
            created_pin,
            nudge: observed.nudge,
            fresh,
        })
    }

    /// The session after this turn, from the stored one (`current`), and
    /// what the update observed. Pure but for choosing a new pin once.
    fn next_session(
        &self,
        ask: &Ask<'_>,
        current: Option<&Session>,
        fingerprints: &[keel::fingerprint::TurnFp],
        tenant_usd_today: f64,
        fresh: &mut Option<Result<Choice, PolicyError>>,
    ) -> (Session, Observed) {
        let over = current.and_then(|c| check_conversation(&ask.caps, c, tenant_usd_today).err());
        if let (Some(c), Some(_)) = (current, &over) {
            return (
                c.clone(),
                Observed {
                    over,
                    ..Default::default()
                },
            );
        }
        let profile = ask.profile;
        let mut s = current.cloned().unwrap_or_else(|| Session {
            profile: profile.name.clone(),
            created_ms: ask.now,
            ..Default::default()
        });
        if s.profile.is_empty() {
            // Made by `Admin.SetBudgets` before its first turn.
            s.profile.clone_from(&profile.name);
        }
        s.turns += 1;
        s.last_seen_ms = ask.now;
        // `s` is a fresh clone on every run, so a rerun of the update
        // observes from the stored state again.
        let nudge = if fingerprints.is_empty() {
            None
        } else {
            s.divergence.observe(fingerprints, &self.config.divergence)
        };
        if s.pinned_model.is_none() && profile.session_lock {
            let choice = fresh.get_or_insert_with(|| self.choose_pin(ask));
            if let Ok(c) = choice {
                s.pinned_model = Some(
                    self.config.catalog.deployments()[c.slot.deployment]
                        .name
                        .clone(),
                );
            }
        }
        (s, Observed { over: None, nudge })
    }

    /// The model a new pin takes: the one served while the control plane
    /// was unreachable (adopted), else the profile's choice.
    fn choose_pin(&self, ask: &Ask<'_>) -> Result<Choice, PolicyError> {
        let policy = self.policy();
        match self.adoptable(ask.req, ask.profile) {
            Some((model, why)) => {
                policy
                    .choose(ask.profile, Some(model), &ask.features)
                    .map(|mut c| {
                        c.reason = format!("adopted {model}, {why}");
                        c
                    })
            }
            None => policy.choose(ask.profile, ask.requested, &ask.features),
        }
    }

    /// The divergence escalation in force; a pinned conversation is never
    /// switched by escalation, it is nudged only.
    fn escalation(&self, session: &Session) -> Escalation {
        match session.divergence.escalation(&self.config.divergence) {
            Escalation::StrongerModel if session.pinned_model.is_some() => Escalation::Off,
            other => other,
        }
    }

    /// Step 4 for a pinned conversation: a deployment and key of its model;
    /// when every deployment is down, the configured policy (wait or an
    /// announced switch). A pin created by this turn is flushed first: the
    /// app is told about it, so it must survive a crash.
    async fn place_pinned(
        &self,
        ask: &Ask<'_>,
        key: &SessionKey,
        model: &str,
        turned: &Turned,
        profile: &Profile,
    ) -> Result<Placed, Refusal> {
        let session = &turned.session;
        let affinity = Affinity {
            provider: session.provider_affinity.as_deref(),
            key: session.key_affinity.as_deref(),
        };
        let slot = match self.policy().place(profile, model, affinity) {
            Placement::Healthy(slot) => slot,
            Placement::AllOpen(_) if !turned.created_pin => {
                let choice = self
                    .pinned_model_down(key, model, profile, &ask.features, ask.now)
                    .await?;
                return Ok(Placed {
                    choice,
                    pinned: true,
                    kind: DecisionKind::Switch,
                });
            }
            // A pin just made goes to its model even when all of it is down.
            Placement::AllOpen(slot) => slot,
            // Only profiles with a shed priority get here: the pin stays,
            // the turn waits.
            Placement::Shed => {
                return Err(Refusal::from(PolicyError::Shed {
                    profile: profile.name.clone(),
                    model: model.to_owned(),
                    priority: profile.shed_priority,
                    retry_after_secs: self.capacity.config().retry_after.as_secs().max(1),
                }));
            }
            Placement::Unknown => {
                return Err(Refusal::PinnedGone {
                    model: model.to_owned(),
                });
            }
        };
        let turn = session.turns;
        let (reason, kind) = if turned.created_pin {
            self.store.flush().await?;
            let reason = match &turned.fresh {
                Some(Ok(c)) => format!("pinned at turn {turn}: {}", c.reason),
                _ => format!("pinned at turn {turn} ({})", profile.name),
            };
            (reason, DecisionKind::Initialize)
        } else {
            let reason = format!("pinned to {model} ({}, turn {turn})", session.profile);
            (reason, DecisionKind::Retain)
        };
        Ok(Placed {
            choice: Choice { slot, reason },
            pinned: true,
            kind,
        })
    }

    /// Step 4 for a conversation without a pin (its profile does not lock).
    fn place_unpinned(
        &self,
        ask: &Ask<'_>,
        fresh: Option<Result<Choice, PolicyError>>,
        profile: &Profile,
        escalation: Escalation,
    ) -> Result<Placed, Refusal> {
        let mut choice = match fresh {
            Some(c) => c,
            None => self.policy().choose(profile, ask.requested, &ask.features),
        }?;
        if escalation == Escalation::StrongerModel && ask.requested.is_none() {
            choice.reason = format!("escalated after divergence nudges: {}", choice.reason);
        }
        Ok(Placed {
            choice,
            pinned: false,
            kind: DecisionKind::Unpinned,
        })
    }

    /// Step 5: the decision the caller gets. No side effects.
    pub(super) fn build(
        &self,
        ask: &Ask<'_>,
        profile: &Profile,
        placed: &Placed,
        fallbacks: &[Slot],
        turn: u32,
    ) -> pb::Decision {
        let catalog = &self.config.catalog;
        let r = &self.config.routing;
        let target = |s: &Slot| catalog.target(s.deployment, s.key);
        pb::Decision {
            decision_id: ask.decision_id.clone(),
            target: Some(target(&placed.choice.slot)),
            fallbacks: fallbacks.iter().map(target).collect(),
            pinned: placed.pinned,
            kind: placed.kind as i32,
            reason: placed.choice.reason.clone(),
            turn,
            inject: Vec::new(),
            profile: profile.name.clone(),
            limits: Some(pb::Limits {
                connect_timeout_ms: r.connect_timeout.as_millis() as u32,
                first_byte_timeout_ms: r.first_byte_timeout.as_millis() as u32,
                idle_timeout_ms: r.idle_timeout.as_millis() as u32,
                max_attempts: r.max_attempts,
            }),
        }
    }

    /// Adds a divergence nudge to the decision (message to inject, reason);
    /// returns its timeline event.
    fn apply_nudge(
        &self,
        decision: &mut pb::Decision,
        conversation_id: &str,
        n: Nudge,
        escalation: Escalation,
    ) -> crate::divergence::DivergenceEvent {
        let applied = match n.escalate {
            Escalation::StrongerModel if escalation == Escalation::StrongerModel => {
                Escalation::StrongerModel
            }
            _ => Escalation::Off,
        };
        let event = self.nudged(conversation_id, &n, applied);
        decision.reason = format!("{}; divergence nudge: {}", decision.reason, n.pattern);
        decision.inject.push(pb::InjectedMessage {
            role: "system".to_owned(),
            content: n.message,
            reason: format!("divergence:{}", n.pattern),
        });
        event
    }

    /// Step 6a: the decision is going out. In half-open state it is the
    /// breaker's probe; its key is in flight until the report arrives (or
    /// the in-flight timeout).
    pub(super) fn start(&self, slot: Slot) {
        let catalog = &self.config.catalog;
        self.signals.chosen(slot.deployment);
        self.capacity.started(
            catalog.deployments()[slot.deployment].provider,
            slot.key,
            std::time::Instant::now(),
        );
    }

    /// Step 6b: queues the decision record for the writer (off the hot
    /// path: it batches records).
    pub(super) async fn record(
        &self,
        key: SessionKey,
        decision: &pb::Decision,
        events: Vec<crate::divergence::DivergenceEvent>,
        now: u64,
    ) {
        let target = decision.target.as_ref();
        let entry = DecisionEntry {
            decision_id: decision.decision_id.clone(),
            turn: decision.turn,
            kind: decision.kind,
            model: target.map(|t| t.model.clone()).unwrap_or_default(),
            provider: target.map(|t| t.provider.clone()).unwrap_or_default(),
            reason: decision.reason.clone(),
            at_ms: now,
            events,
            result: None,
        };
        self.decision_log.record(key, entry).await;
    }
}

/// The profile a turn is placed under: a divergence escalation to a
/// stronger model (for `auto` requests) asks for quality.
fn escalated<'a>(
    profile: &'a Profile,
    escalation: Escalation,
    requested: Option<&str>,
) -> Cow<'a, Profile> {
    if escalation == Escalation::StrongerModel && requested.is_none() {
        Cow::Owned(Profile {
            objective: Objective::Quality,
            ..profile.clone()
        })
    } else {
        Cow::Borrowed(profile)
    }
}
