//! `Admin.SetBudgets` / `GetBudgets`: run-time budget caps, stored in the
//! session store (flushed before the answer) and applied from the next
//! `Route` on, so raising a cap resumes a paused conversation at once.

use keel::pb;
use tonic::Status;

use crate::{
    budget::{Caps, utc_day},
    router::RouterState,
    store::now_ms,
};

fn internal(e: crate::store::StoreError) -> Status {
    tracing::error!(error = %e, "session store failed");
    Status::internal("session store unavailable")
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
    if !req.profile.is_empty() && !state.config.profiles.contains_key(&req.profile) {
        return Err(Status::invalid_argument(format!(
            "unknown profile `{}`",
            req.profile
        )));
    }
    let caps = from_proto(req.caps)?;
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
            tenant: String::new(),
        },
    )
}

/// The caps in force for a profile and a tenant's spend today.
pub fn get(state: &RouterState, req: pb::GetBudgetsRequest) -> Result<pb::Budgets, Status> {
    let name = if req.profile.is_empty() {
        state.config.routing.default_profile.as_str()
    } else {
        req.profile.as_str()
    };
    let profile = state
        .config
        .profiles
        .get(name)
        .ok_or_else(|| Status::invalid_argument(format!("unknown profile `{name}`")))?;
    let tenant = if req.tenant.is_empty() {
        keel::DEFAULT_TENANT
    } else {
        &req.tenant
    };
    let today = state
        .tenants
        .today(&*state.store, tenant, utc_day(now_ms()))
        .map_err(internal)?;
    let overrides = state.budgets.overrides();
    Ok(pb::Budgets {
        profile: profile.name.clone(),
        effective: to_proto(state.budgets.effective(&profile.name, profile.budgets)),
        profile_overrides: overrides
            .profiles
            .get(&profile.name)
            .copied()
            .and_then(to_proto),
        global_overrides: to_proto(overrides.global),
        tenant: tenant.to_owned(),
        tenant_spend_today_usd: today.usd,
        tenant_turns_today: today.turns,
    })
}
