//! Conversations, most recently active first, a page at a time from the
//! store's activity index (by tenant, profile or pinned model when the
//! filter names one); filters by those, nudged, over budget and degraded;
//! search by id.

use http::StatusCode;
use maud::html;

use super::{Query, Reply, html_page, internal, link, param, time, usd};
use crate::{
    budget::Caps,
    router::RouterState,
    store::{ConversationSummary, ListBy, SessionKey, now_ms},
};

/// Rows per page.
const PAGE: usize = 50;

/// What the form asks for.
struct Filter<'a> {
    tenant: Option<&'a str>,
    profile: Option<&'a str>,
    model: Option<&'a str>,
    nudged: bool,
    over_budget: bool,
    degraded: bool,
}

impl Filter<'_> {
    fn keeps(&self, s: &ConversationSummary, state: &RouterState) -> bool {
        self.tenant.is_none_or(|t| s.tenant == t)
            && self.profile.is_none_or(|p| s.profile == p)
            && self
                .model
                .is_none_or(|m| s.pinned_model.as_deref() == Some(m))
            && (!self.nudged || s.nudges > 0)
            && (!self.over_budget || over_budget(s, state))
            && (!self.degraded || s.degraded)
    }
}

/// The conversation's caps in force: its own over its profile's.
pub(super) fn caps(
    state: &RouterState,
    profile: &str,
    own_usd: Option<f64>,
    own_turns: Option<u32>,
) -> Caps {
    let profile_caps = state
        .config
        .profiles
        .get(profile)
        .map(|p| p.budgets)
        .unwrap_or_default();
    Caps {
        per_conversation_usd: own_usd,
        per_conversation_turns: own_turns,
        per_tenant_usd_per_day: None,
    }
    .over(state.budgets.effective(profile, profile_caps))
}

/// Spend or turns at or past a per-conversation cap.
fn over_budget(s: &ConversationSummary, state: &RouterState) -> bool {
    let c = caps(state, &s.profile, s.cap_usd, s.cap_turns);
    c.per_conversation_usd.is_some_and(|cap| s.spend_usd >= cap)
        || c.per_conversation_turns.is_some_and(|cap| s.turns >= cap)
}

pub fn page(state: &RouterState, q: &Query) -> Reply {
    let filter = Filter {
        tenant: param(q, "tenant"),
        profile: param(q, "profile"),
        model: param(q, "model"),
        nudged: param(q, "nudged").is_some(),
        over_budget: param(q, "over_budget").is_some(),
        degraded: param(q, "degraded").is_some(),
    };
    let now = now_ms();
    let (rows, next) = match param(q, "q") {
        Some(id) => {
            let tenant = keel::tenant_or_default(filter.tenant.unwrap_or_default());
            match state.store.get(&SessionKey::new(tenant, id), now) {
                Ok(found) => (
                    found
                        .map(|s| ConversationSummary {
                            tenant: tenant.to_owned(),
                            conversation_id: id.to_owned(),
                            profile: s.profile,
                            pinned_model: s.pinned_model,
                            turns: s.turns,
                            spend_usd: s.spend_usd,
                            nudges: s.divergence.nudges,
                            created_ms: s.created_ms,
                            last_seen_ms: s.last_seen_ms,
                            cap_usd: s.budget.per_conversation_usd,
                            cap_turns: s.budget.per_conversation_turns,
                            degraded: false,
                        })
                        .into_iter()
                        .collect(),
                    None,
                ),
                Err(e) => return internal(e),
            }
        }
        None => {
            let cursor = param(q, "cursor").and_then(unhex);
            let keep = |s: &ConversationSummary| filter.keeps(s, state);
            let by = ListBy {
                tenant: filter.tenant,
                profile: filter.profile,
                model: filter.model,
            };
            match state
                .store
                .list_conversations(by, &keep, cursor.as_deref(), PAGE, now)
            {
                Ok(p) => (p.items, p.next),
                Err(e) => return internal(e),
            }
        }
    };
    let profiles: Vec<&str> = state.config.profiles.keys().map(String::as_str).collect();
    let mut models: Vec<&str> = state
        .config
        .catalog
        .deployments()
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    models.sort_unstable();
    models.dedup();
    let keep_params = |cursor: &str| {
        link(
            "/ui/",
            &[
                ("tenant", filter.tenant.unwrap_or_default()),
                ("profile", filter.profile.unwrap_or_default()),
                ("model", filter.model.unwrap_or_default()),
                ("nudged", if filter.nudged { "1" } else { "" }),
                ("over_budget", if filter.over_budget { "1" } else { "" }),
                ("degraded", if filter.degraded { "1" } else { "" }),
                ("cursor", cursor),
            ],
        )
    };
    let body = html! {
        h1 { "Conversations" }
        form.filters method="get" action="/ui/" {
            input type="search" name="q" placeholder="conversation id" value=(param(q, "q").unwrap_or_default());
            input type="text" name="tenant" placeholder="tenant" value=(filter.tenant.unwrap_or_default());
            select name="profile" {
                option value="" { "any profile" }
                @for p in &profiles { option value=(p) selected[filter.profile == Some(*p)] { (p) } }
            }
            select name="model" {
                option value="" { "any model" }
                @for m in &models { option value=(m) selected[filter.model == Some(*m)] { (m) } }
            }
            label { input type="checkbox" name="nudged" value="1" checked[filter.nudged]; " nudged" }
            label { input type="checkbox" name="over_budget" value="1" checked[filter.over_budget]; " over budget" }
            label { input type="checkbox" name="degraded" value="1" checked[filter.degraded]; " degraded" }
            button type="submit" { "Filter" }
            a href="/ui/" { "reset" }
        }
        table #conversations {
            thead { tr {
                th { "Conversation" } th { "Tenant" } th { "Profile" } th { "Pinned model" }
                th.n { "Turns" } th.n { "Spend" } th { "Last activity (UTC)" } th.n { "Nudges" }
            } }
            tbody {
                @for s in &rows {
                    tr {
                        td { a href=(link("/ui/conversation", &[("tenant", &s.tenant), ("id", &s.conversation_id)])) { (s.conversation_id) } }
                        td { (s.tenant) }
                        td { (s.profile) }
                        td { (s.pinned_model.as_deref().unwrap_or("—")) }
                        td.n { (s.turns) }
                        td.n { (usd(s.spend_usd)) }
                        td { (time(s.last_seen_ms)) }
                        td.n {
                            @if s.nudges > 0 { span.badge.bad { (s.nudges) } } @else { "0" }
                            @if s.degraded { " " span.badge.warn title="served without the control plane" { "degraded" } }
                        }
                    }
                }
                @if rows.is_empty() {
                    tr { td colspan="8" .muted { "No live conversation matches." } }
                }
            }
        }
        @if let Some(next) = &next {
            p { a href=(keep_params(&hex(next))) { "Older →" } }
        }
    };
    html_page(StatusCode::OK, "Conversations", body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 2048 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
