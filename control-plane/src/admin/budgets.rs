//! `Admin.SetBudgets` / `GetBudgets`: run-time budget caps, stored in the
//! session store (flushed before the answer) and applied from the next
//! `Route` on, so raising a cap resumes a paused conversation at once.

use keel::pb;
use tonic::Status;

use crate::{
    budget::{Caps, utc_day},
    router::RouterState,
    store::{Session, SessionKey, now_ms},
};

fn internal(e: crate::store::StoreError) -> Status {
    crate::refusal::Refusal::Store(e).into()
}

fn from_proto(c: Option<pb::BudgetCaps>) -> Result<Caps, Status> {
    let c = c.unwrap_or_default();
    for (name, v) in [
        ("per_conversation_usd", c.per_conversation_usd),
        ("per_tenant_usd_per_day", c.per_tenant_usd_per_day),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(Status::invalid_argument(format!(
                "caps.{name} must be an amount >= 0 (0 removes the cap), got {v}"
            )));
        }
    }
    Ok(Caps {
        per_conversation_usd: c.per_conversation_usd,
        per_conversation_turns: c.per_conversation_turns,
        per_tenant_usd_per_day: c.per_tenant_usd_per_day,
    })
}

fn to_proto(c: Caps) -> Option<pb::BudgetCaps> {
    (!c.is_empty()).then_some(pb::BudgetCaps {
        per_conversation_usd: c.per_conversation_usd,
        per_conversation_turns: c.per_conversation_turns,
        per_tenant_usd_per_day: c.per_tenant_usd_per_day,
    })
}

/// Sets caps in a scope and stores them durably.
pub async fn set(state: &RouterState, req: pb::SetBudgetsRequest) -> Result<pb::Budgets, Status> {
    if !req.conversation_id.is_empty() {
        return set_conversation(state, req).await;
    }
    if !req.profile.is_empty() && !state.config.profiles.contains_key(&req.profile) {
        return Err(Status::invalid_argument(format!(
            "unknown profile `{}`",
            req.profile
        )));
    }
    let caps = from_proto(req.caps)?;
    if state.store.shared()
        && let Some(stored) = state.store.budget_overrides().map_err(internal)?
    {
        // Another replica may have changed them since this one last read.
        state.budgets.replace(stored);
    }
    let overrides = state.budgets.set(&req.profile, caps, req.reset);
    state
        .store
        .put_budget_overrides(&overrides)
        .map_err(internal)?;
    state.store.flush().await.map_err(internal)?;
    tracing::info!(profile = %req.profile, ?caps, reset = req.reset, "budget caps changed");
    get(
        state,
        pb::GetBudgetsRequest {
            profile: req.profile,
            ..Default::default()
        },
    )
}

/// Sets one conversation's own caps, kept in its session.
async fn set_conversation(
    state: &RouterState,
    req: pb::SetBudgetsRequest,
) -> Result<pb::Budgets, Status> {
    if !req.profile.is_empty() {
        return Err(Status::invalid_argument(
            "give a profile or a conversation_id, not both",
        ));
    }
    let caps = from_proto(req.caps)?;
    if caps.per_tenant_usd_per_day.is_some() {
        return Err(Status::invalid_argument(
            "caps.per_tenant_usd_per_day cannot be set for one conversation",
        ));
    }
    let tenant = keel::tenant_or_default(&req.tenant);
    let key = SessionKey::new(tenant, &req.conversation_id);
    let now = now_ms();
    // Caps for a conversation that has not started yet are kept in a new
    // session (no pin; its first turn pins it). Nothing to keep: nothing made.
    if !caps.limits_conversation() && state.store.get(&key, now).map_err(internal)?.is_none() {
        return Err(Status::not_found("no such conversation"));
    }
    state
        .store
        .update(&key, now, &mut |current| {
            let mut s = current.cloned().unwrap_or_else(|| Session {
                created_ms: now,
                last_seen_ms: now,
                ..Default::default()
            });
            if req.reset {
                s.budget = Caps::default();
            }
            s.budget.merge(caps);
            s
        })
        .map_err(internal)?;
    state.store.flush().await.map_err(internal)?;
    tracing::info!(tenant = %tenant, conversation_id = %req.conversation_id, ?caps, reset = req.reset, "conversation budget caps changed");
    get(
        state,
        pb::GetBudgetsRequest {
            tenant: req.tenant,
            conversation_id: req.conversation_id,
            ..Default::default()
        },
    )
}

/// The caps in force for a profile (and a conversation) and a tenant's
/// spend today.
pub fn get(state: &RouterState, req: pb::GetBudgetsRequest) -> Result<pb::Budgets, Status> {
    let tenant = keel::tenant_or_default(&req.tenant);
    let session = if req.conversation_id.is_empty() {
        None
    } else {
        let key = SessionKey::new(tenant, &req.conversation_id);
        Some(
            state
                .store
                .get(&key, now_ms())
                .map_err(internal)?
                .ok_or_else(|| Status::not_found("no such conversation"))?,
        )
    };
    let name = match (&session, req.profile.as_str()) {
        (Some(s), "") if state.config.profiles.contains_key(&s.profile) => s.profile.as_str(),
        (_, "") => state.config.routing.default_profile.as_str(),
        (_, named) => named,
    };
    let profile = state
        .config
        .profiles
        .get(name)
        .ok_or_else(|| Status::invalid_argument(format!("unknown profile `{name}`")))?;
    let today = state
        .tenants
        .today(&*state.store, tenant, utc_day(now_ms()))
        .map_err(internal)?;
    let overrides = state.budgets.overrides();
    let effective = state.budgets.effective(&profile.name, profile.budgets);
    let own = session.as_ref().map(|s| s.budget).unwrap_or_default();
    Ok(pb::Budgets {
        profile: profile.name.clone(),
        effective: to_proto(own.over(effective)),
        profile_overrides: overrides
            .profiles
            .get(&profile.name)
            .copied()
            .and_then(to_proto),
        global_overrides: to_proto(overrides.global),
        tenant: tenant.to_owned(),
        tenant_spend_today_usd: today.usd,
        tenant_turns_today: today.turns,
        conversation_id: req.conversation_id,
        conversation_overrides: to_proto(own),
        conversation_turns: session.as_ref().map_or(0, |s| s.turns),
        conversation_spend_usd: session.as_ref().map_or(0.0, |s| s.spend_usd),
    })
}
