//! Budget checks on `Route`: the tenant's spend today before anything else,
//! a conversation's turns and spend inside its session update (so the check
//! and the turn count see the same state). Spend arrives with reports
//! (`report.rs`), degraded turns included.

use super::RouterState;
use crate::{
    budget::{self, Caps, Exceeded, Usage, utc_day},
    config::Profile,
    refusal::Refusal,
    store::Session,
};

impl RouterState {
    /// The caps in force for `profile`.
    pub(super) fn caps(&self, profile: &Profile) -> Caps {
        self.budgets.effective(&profile.name, profile.budgets)
    }

    /// The tenant's spend today, checked against its cap. 0 without a
    /// tenant cap (no lookup then).
    pub(super) fn check_tenant(
        &self,
        tenant: &str,
        caps: &Caps,
        now_ms: u64,
    ) -> Result<f64, Refusal> {
        if caps.per_tenant_usd_per_day.is_none() {
            return Ok(0.0);
        }
        let today = self.tenants.today(&*self.store, tenant, utc_day(now_ms))?;
        budget::check(
            caps,
            Usage {
                conversation: None,
                tenant_usd_today: today.usd,
            },
        )
        .map_err(|e| self.refused(tenant, None, e))?;
        Ok(today.usd)
    }

    /// The refusal for a request over a cap, logged once.
    pub(super) fn refused(
        &self,
        tenant: &str,
        conversation_id: Option<&str>,
        e: Exceeded,
    ) -> Refusal {
        tracing::info!(
            tenant = %tenant,
            conversation_id = conversation_id.unwrap_or(""),
            cap = e.cap.as_str(),
            limit = e.limit,
            used = e.used,
            "budget cap reached, request refused"
        );
        Refusal::Budget(e)
    }
}

/// Whether one more turn of the conversation in `session` fits under
/// `caps` and the conversation's own caps (which come first).
pub(super) fn check_conversation(
    caps: &Caps,
    session: &Session,
    tenant_usd_today: f64,
) -> Result<(), Exceeded> {
    let caps = session.budget.over(*caps);
    if !caps.limits_conversation() {
        return Ok(());
    }
    budget::check(
        &caps,
        Usage {
            conversation: Some((session.turns, session.spend_usd)),
            tenant_usd_today,
        },
    )
}
