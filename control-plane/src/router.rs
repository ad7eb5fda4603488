//! `keel.v1.Router`: `Route` decides, `Report` feeds signals and spend.

use std::sync::{Arc, atomic::AtomicUsize};

use keel::pb::{self, DecisionKind, RouteRequest, router_server};
use tonic::{Request, Response, Status};

use crate::{
    config::{Config, Objective, Profile},
    divergence::{DivergenceEvent, Escalation, Nudge},
    metrics::Metrics,
    policy::{Choice, Policy, PolicyError},
    signals::Signals,
    store::{DecisionEntry, SessionKey, SessionStore, StoreError, now_ms},
};

/// Most fallbacks carried by a decision.
const MAX_FALLBACKS: usize = 4;

/// State shared by the gRPC services.
pub struct RouterState {
    pub config: Config,
    pub store: Arc<dyn SessionStore>,
    pub signals: Signals,
    pub metrics: Arc<Metrics>,
    spread: AtomicUsize,
}

impl RouterState {
    pub fn new(config: Config, store: Arc<dyn SessionStore>) -> Self {
        let metrics = Arc::new(Metrics::new(config.profiles.keys().map(String::as_str)));
        Self {
            config,
            store,
            signals: Signals::default(),
            metrics,
            spread: AtomicUsize::new(0),
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            catalog: &self.config.catalog,
            signals: &self.signals,
            default_latency_ms: self.config.routing.default_latency.as_secs_f64() * 1000.0,
            spread: &self.spread,
        }
    }

    fn profile(&self, name: &str) -> Result<&Profile, Status> {
        let name = if name.is_empty() {
            self.config.routing.default_profile.as_str()
        } else {
            name
        };
        self.config.profiles.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.config.profiles.keys().map(String::as_str).collect();
            known.sort_unstable();
            Status::invalid_argument(format!(
                "unknown profile `{name}` (known: {})",
                known.join(", ")
            ))
        })
    }

    /// Decides one request. Creates and flushes a pin before returning when
    /// the profile locks sessions. Runs divergence detection on the request's
    /// fingerprints: a nudge is added to `inject` and recorded with the decision.
    pub async fn route(&self, req: RouteRequest) -> Result<pb::Decision, Status> {
        let decision = self.decide(req).await?;
        self.metrics.decision(&decision.profile, decision.kind());
        Ok(decision)
    }

    async fn decide(&self, req: RouteRequest) -> Result<pb::Decision, Status> {
        validate_ids(&req)?;
        let profile = self.profile(&req.profile)?;
        let requested = match req.model.as_str() {
            "" | "auto" => None,
            name => {
                let resolved = self.config.catalog.resolve(name);
                if self.config.catalog.deployments_of(resolved).is_empty() {
                    return Err(Status::not_found(format!(
                        "model `{name}` is not in the catalog"
                    )));
                }
                Some(resolved)
            }
        };
        let features = req.features.unwrap_or_default();
        let policy = self.policy();
        let decision_id = uuid::Uuid::now_v7().to_string();

        // An opening fingerprint is a guess at a session; it is only worth a
        // session where the profile locks one (one-shot traffic with the same
        // opening is not a conversation).
        let guessed = req.session_source == pb::SessionSource::Fingerprint as i32;
        if req.conversation_id.is_empty() || (guessed && !profile.session_lock) {
            let choice = policy
                .choose(profile, requested, &features)
                .map_err(no_candidate)?;
            let fallbacks = policy.fallbacks(
                (choice.deployment, choice.key),
                Some((profile, &features)),
                MAX_FALLBACKS,
            );
            return Ok(self.decision(
                decision_id,
                profile,
                &choice,
                fallbacks,
                false,
                DecisionKind::Unpinned,
                0,
            ));
        }

        let tenant = if req.tenant.is_empty() {
            keel::DEFAULT_TENANT
        } else {
            &req.tenant
        };
        let key = SessionKey::new(tenant, &req.conversation_id);
        let now = now_ms();
        let divergence = &self.config.divergence;
        let fingerprints = if divergence.enabled {
            keel::fingerprint::from_proto(&req.fingerprints)
        } else {
            Vec::new()
        };
        let mut nudge: Option<Nudge> = None;
        let mut fresh: Option<Result<Choice, PolicyError>> = None;
        let updated = self
            .store
            .update(&key, now, &mut |current| {
                let mut s = current.cloned().unwrap_or_else(|| crate::store::Session {
                    profile: profile.name.clone(),
                    created_ms: now,
                    ..Default::default()
                });
                s.turns += 1;
                s.last_seen_ms = now;
                // `s` is a fresh clone on every run of this closure, so a retried
                // compare-and-swap observes from the stored state again.
                nudge = if fingerprints.is_empty() {
                    None
                } else {
                    s.divergence.observe(&fingerprints, divergence)
                };
                if s.pinned_model.is_none() && profile.session_lock {
                    let choice =
                        fresh.get_or_insert_with(|| policy.choose(profile, requested, &features));
                    if let Ok(c) = choice {
                        s.pinned_model =
                            Some(self.config.catalog.deployments()[c.deployment].name.clone());
                    }
                }
                s
            })
            .map_err(internal)?;
        let session = &updated.after;
        let turn = session.turns;
        // A pinned conversation is never switched by escalation: it is nudged only.
        let escalation = match session.divergence.escalation(divergence) {
            Escalation::StrongerModel if session.pinned_model.is_some() => Escalation::Off,
            other => other,
        };
        if let Some(n) = &nudge
            && n.escalate == Escalation::Stop
        {
            return Err(self.stop(&key, &req.conversation_id, n, &decision_id, turn, now));
        }
        let stronger;
        let profile = if escalation == Escalation::StrongerModel && requested.is_none() {
            stronger = Profile {
                objective: Objective::Quality,
                ..profile.clone()
            };
            &stronger
        } else {
            profile
        };

        let (choice, pinned, kind) = match &session.pinned_model {
            Some(model) => {
                let created = updated
                    .before
                    .as_ref()
                    .is_none_or(|b| b.pinned_model.is_none());
                let (deployment, key_idx) = policy
                    .place(profile, model, session.provider_affinity.as_deref())
                    .ok_or_else(|| {
                        // Aborted, not Unavailable: the sidecar must not
                        // mistake this for an unreachable control plane.
                        Status::aborted(format!(
                            "conversation is pinned to model `{model}`, which is no longer in the catalog"
                        ))
                    })?;
                if created {
                    // A pin the app is told about must survive a crash.
                    self.store.flush().await.map_err(internal)?;
                    let reason = fresh
                        .and_then(Result::ok)
                        .map(|c| format!("pinned at turn {turn}: {}", c.reason))
                        .unwrap_or_else(|| format!("pinned at turn {turn} ({})", profile.name));
                    (
                        Choice {
                            deployment,
                            key: key_idx,
                            reason,
                        },
                        true,
                        DecisionKind::Initialize,
                    )
                } else {
                    let reason = format!("pinned to {model} ({}, turn {turn})", session.profile);
                    (
                        Choice {
                            deployment,
                            key: key_idx,
                            reason,
                        },
                        true,
                        DecisionKind::Retain,
                    )
                }
            }
            None => {
                let mut choice = match fresh {
                    Some(c) => c,
                    None => policy.choose(profile, requested, &features),
                }
                .map_err(no_candidate)?;
                if escalation == Escalation::StrongerModel && requested.is_none() {
                    choice.reason = format!("escalated after divergence nudges: {}", choice.reason);
                }
                (choice, false, DecisionKind::Unpinned)
            }
        };
        let may_switch = (!pinned).then_some((profile, &features));
        let fallbacks =
            policy.fallbacks((choice.deployment, choice.key), may_switch, MAX_FALLBACKS);
        let mut decision =
            self.decision(decision_id, profile, &choice, fallbacks, pinned, kind, turn);
        let mut events = Vec::new();
        if let Some(n) = nudge {
            let applied = match n.escalate {
                Escalation::StrongerModel if escalation == Escalation::StrongerModel => {
                    Escalation::StrongerModel
                }
                _ => Escalation::Off,
            };
            events.push(self.nudged(&req.conversation_id, &n, applied));
            decision.reason = format!("{}; divergence nudge: {}", decision.reason, n.pattern);
            decision.inject.push(pb::InjectedMessage {
                role: "system".to_owned(),
                content: n.message,
                reason: format!("divergence:{}", n.pattern),
            });
        }
        let target = decision
            .target
            .as_ref()
            .expect("decision always has a target");
        let entry = DecisionEntry {
            decision_id: decision.decision_id.clone(),
            turn,
            kind: kind as i32,
            model: target.model.clone(),
            provider: target.provider.clone(),
            reason: decision.reason.clone(),
            at_ms: now,
            events,
        };
        if let Err(e) = self.store.record_decision(&key, &entry) {
            tracing::warn!(error = %e, "cannot record decision");
        }
        Ok(decision)
    }

    /// Logs and counts a nudge; returns its timeline event.
    fn nudged(&self, conversation_id: &str, n: &Nudge, applied: Escalation) -> DivergenceEvent {
        tracing::info!(
            conversation_id = %conversation_id,
            pattern = %n.pattern,
            turns = ?n.turns,
            escalation = applied.as_str(),
            "divergence nudge"
        );
        self.metrics.nudge(n.pattern, applied);
        DivergenceEvent::new(n, applied)
    }

    /// Escalation `stop`: records the event in the timeline (a decision without a
    /// target) and returns the status the caller must end the run on.
    fn stop(
        &self,
        key: &SessionKey,
        conversation_id: &str,
        n: &Nudge,
        decision_id: &str,
        turn: u32,
        now: u64,
    ) -> Status {
        let event = self.nudged(conversation_id, n, Escalation::Stop);
        let entry = DecisionEntry {
            decision_id: decision_id.to_owned(),
            turn,
            kind: DecisionKind::Unspecified as i32,
            model: String::new(),
            provider: String::new(),
            reason: format!("divergence stop: {}", n.pattern),
            at_ms: now,
            events: vec![event],
        };
        if let Err(e) = self.store.record_decision(key, &entry) {
            tracing::warn!(error = %e, "cannot record decision");
        }
        let mut status = Status::failed_precondition(format!(
            "divergence stop: {}: the agent kept looping after being nudged (turns {:?}); end this run",
            n.pattern, n.turns
        ));
        if let Ok(v) = n.pattern.as_str().parse() {
            status.metadata_mut().insert("keel-divergence", v);
        }
        status
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        decision_id: String,
        profile: &Profile,
        choice: &Choice,
        fallbacks: Vec<(usize, usize)>,
        pinned: bool,
        kind: DecisionKind,
        turn: u32,
    ) -> pb::Decision {
        let catalog = &self.config.catalog;
        let r = &self.config.routing;
        pb::Decision {
            decision_id,
            target: Some(catalog.target(choice.deployment, choice.key)),
            fallbacks: fallbacks
                .into_iter()
                .map(|(d, k)| catalog.target(d, k))
                .collect(),
            pinned,
            kind: kind as i32,
            reason: choice.reason.clone(),
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

    /// Applies a batch of outcomes to signals and spend.
    pub fn report(&self, batch: pb::ReportBatch) -> Result<u32, Status> {
        let mut accepted = 0;
        for outcome in batch.outcomes {
            for a in &outcome.attempts {
                if let Some(t) = &a.target {
                    let ok = a.error_class.is_empty() && (200..300).contains(&a.status);
                    self.signals
                        .record(&t.provider, &t.model, ok, a.latency_ms, a.ttft_ms);
                }
            }
            if !outcome.conversation_id.is_empty() && outcome.success {
                self.add_spend(&outcome).map_err(internal)?;
            }
            accepted += 1;
        }
        Ok(accepted)
    }

    fn add_spend(&self, outcome: &pb::Outcome) -> Result<(), StoreError> {
        let Some(served) = outcome.attempts.last().and_then(|a| a.target.as_ref()) else {
            return Ok(());
        };
        let usage = outcome.usage.unwrap_or_default();
        let catalog = &self.config.catalog;
        let cost = catalog
            .deployments_of(&served.model)
            .iter()
            .map(|&d| &catalog.deployments()[d])
            .find(|d| catalog.provider_of(d).name == served.provider)
            .map_or(0.0, |d| {
                d.cost_usd(
                    u64::from(usage.input_tokens),
                    u64::from(usage.output_tokens),
                )
            });
        let tenant = if outcome.tenant.is_empty() {
            keel::DEFAULT_TENANT
        } else {
            &outcome.tenant
        };
        let key = SessionKey::new(tenant, &outcome.conversation_id);
        let now = now_ms();
        self.store.update(&key, now, &mut |current| {
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
            s
        })?;
        Ok(())
    }
}

fn validate_ids(req: &RouteRequest) -> Result<(), Status> {
    if req.conversation_id.len() > keel::MAX_CONVERSATION_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "conversation id is {} bytes; at most {} allowed",
            req.conversation_id.len(),
            keel::MAX_CONVERSATION_ID_BYTES
        )));
    }
    if req.conversation_id.contains('\0') || req.tenant.contains('\0') {
        return Err(Status::invalid_argument(
            "conversation id and tenant must not contain NUL",
        ));
    }
    Ok(())
}

fn no_candidate(e: PolicyError) -> Status {
    Status::failed_precondition(e.to_string())
}

fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "session store failed");
    Status::internal("session store unavailable")
}

/// The tonic service wrapper.
pub struct RouterService(pub Arc<RouterState>);

#[tonic::async_trait]
impl router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<RouteRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        self.0.route(request.into_inner()).await.map(Response::new)
    }

    async fn report(
        &self,
        request: Request<pb::ReportBatch>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        let accepted = self.0.report(request.into_inner())?;
        Ok(Response::new(pb::ReportAck { accepted }))
    }
}
