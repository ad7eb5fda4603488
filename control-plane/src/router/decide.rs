//! The routing decision for one request: session lookup and pin (with
//! compare-and-swap, flushed before returning), divergence observation, and
//! the decision record.

use keel::pb::{self, DecisionKind, RouteRequest};
use tonic::Status;

use super::{
    MAX_FALLBACKS, RouterState,
    budget::{check_conversation, refused},
    internal, no_candidate, validate_ids,
};
use crate::{
    budget::Exceeded,
    config::{Objective, Profile},
    divergence::{Escalation, Nudge},
    policy::{Affinity, Choice, Placement, PolicyError},
    store::{DecisionEntry, SessionKey, now_ms},
};

impl RouterState {
    pub(super) async fn decide(&self, req: RouteRequest) -> Result<pb::Decision, Status> {
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
        let tenant = keel::tenant_or_default(&req.tenant);
        let now = now_ms();
        let caps = self.caps(profile);
        let tenant_usd_today = self.check_tenant(tenant, &caps, now)?;

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

        let key = SessionKey::new(tenant, &req.conversation_id);
        let divergence = &self.config.divergence;
        let fingerprints = if divergence.enabled {
            keel::fingerprint::from_proto(&req.fingerprints)
        } else {
            Vec::new()
        };
        let adopt = self.adoptable(&req);
        let mut nudge: Option<Nudge> = None;
        let mut fresh: Option<Result<Choice, PolicyError>> = None;
        let mut over: Option<Exceeded> = None;
        let updated = self
            .store
            .update(&key, now, &mut |current| {
                // Over a cap: the turn is not taken and nothing changes; the
                // conversation resumes once the cap is raised.
                over = current.and_then(|c| check_conversation(&caps, c, tenant_usd_today).err());
                if let (Some(c), Some(_)) = (current, &over) {
                    return c.clone();
                }
                let mut s = current.cloned().unwrap_or_else(|| crate::store::Session {
                    profile: profile.name.clone(),
                    created_ms: now,
                    ..Default::default()
                });
                if s.profile.is_empty() {
                    // Made by `Admin.SetBudgets` before its first turn.
                    s.profile.clone_from(&profile.name);
                }
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
                    let choice = fresh.get_or_insert_with(|| match adopt {
                        // Served while the control plane was away: keep it.
                        Some((model, why)) => {
                            policy.choose(profile, Some(model), &features).map(|mut c| {
                                c.reason = format!("adopted {model}, {why}");
                                c
                            })
                        }
                        None => policy.choose(profile, requested, &features),
                    });
                    if let Ok(c) = choice {
                        s.pinned_model =
                            Some(self.config.catalog.deployments()[c.deployment].name.clone());
                    }
                }
                s
            })
            .map_err(internal)?;
        if let Some(e) = over {
            return Err(refused(tenant, Some(&req.conversation_id), &e));
        }
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
            return Err(self
                .stop(key, &req.conversation_id, n, &decision_id, turn, now)
                .await);
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
                let affinity = Affinity {
                    provider: session.provider_affinity.as_deref(),
                    key: session.key_affinity.as_deref(),
                };
                let placed = match policy.place(profile, model, affinity) {
                    Placement::Healthy(d, k) => Ok((d, k)),
                    Placement::AllOpen(d, k) => Err((d, k)),
                    Placement::Shed => {
                        // Only profiles with a shed priority get here: the
                        // pin stays, the turn waits.
                        return Err(no_candidate(PolicyError::Shed {
                            profile: profile.name.clone(),
                            model: model.clone(),
                            priority: profile.shed_priority,
                            retry_after_secs: self.capacity.config().retry_after.as_secs().max(1),
                        }));
                    }
                    Placement::Unknown => {
                        // Aborted, not Unavailable: the sidecar must not
                        // mistake this for an unreachable control plane.
                        return Err(Status::aborted(format!(
                            "conversation is pinned to model `{model}`, which is no longer in the catalog"
                        )));
                    }
                };
                match placed {
                    Err(_) if !created => {
                        let switch = self
                            .pinned_model_down(&key, model, profile, &features, now)
                            .await?;
                        (switch, true, DecisionKind::Switch)
                    }
                    Ok((deployment, key_idx)) | Err((deployment, key_idx)) => {
                        if created {
                            // A pin the app is told about must survive a crash.
                            self.store.flush().await.map_err(internal)?;
                        }
                        let reason = if created {
                            fresh
                                .and_then(Result::ok)
                                .map(|c| format!("pinned at turn {turn}: {}", c.reason))
                                .unwrap_or_else(|| {
                                    format!("pinned at turn {turn} ({})", profile.name)
                                })
                        } else {
                            format!("pinned to {model} ({}, turn {turn})", session.profile)
                        };
                        let kind = if created {
                            DecisionKind::Initialize
                        } else {
                            DecisionKind::Retain
                        };
                        (
                            Choice {
                                deployment,
                                key: key_idx,
                                reason,
                            },
                            true,
                            kind,
                        )
                    }
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
            result: None,
        };
        // Off the hot path: the writer task batches records.
        self.decision_log.record(key, entry).await;
        Ok(decision)
    }
}
