//! One conversation: its session, budget caps, spend and tokens over the
//! turns as a chart, and the timeline turn by turn (decision, target,
//! reason, latency, tokens, cost, nudges, switches).

use http::StatusCode;
use keel::pb::DecisionKind;
use maud::html;

use super::{
    Query, Reply,
    chart::{self, Series},
    html_page, internal,
    list::caps,
    not_found, param, time, usd,
};
use crate::{
    router::RouterState,
    store::{DecisionEntry, SessionKey, now_ms},
};

fn kind(k: i32) -> &'static str {
    match DecisionKind::try_from(k) {
        Ok(DecisionKind::Initialize) => "initialize",
        Ok(DecisionKind::Retain) => "retain",
        Ok(DecisionKind::Switch) => "switch",
        Ok(DecisionKind::Unpinned) => "unpinned",
        _ => "event",
    }
}

pub async fn page(state: &RouterState, q: &Query) -> Reply {
    let Some(id) = param(q, "id") else {
        return not_found("name a conversation: ?id=…");
    };
    let tenant = keel::tenant_or_default(param(q, "tenant").unwrap_or_default()).to_owned();
    let key = SessionKey::new(&tenant, id);
    let session = match state.store.get(&key, now_ms()) {
        Ok(Some(s)) => s,
        Ok(None) => return not_found("no live conversation with this id"),
        Err(e) => return internal(e),
    };
    let timeline = match state.timeline(&key).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let caps = caps(
        state,
        &session.profile,
        session.budget.per_conversation_usd,
        session.budget.per_conversation_turns,
    );
    let grpc = format!(
        "grpcurl -plaintext -d '{}' CONTROL_PLANE:GRPC_PORT keel.v1.Admin/GetConversation",
        serde_json::json!({"tenant": tenant, "conversation_id": id})
    );
    let body = html! {
        h1 { "Conversation " code #conversation-id { (id) } }
        dl {
            dt { "Tenant" } dd { (tenant) }
            dt { "Profile" } dd { (session.profile) }
            dt { "Pinned model" } dd #pinned-model { (session.pinned_model.as_deref().unwrap_or("— (unpinned)")) }
            dt { "Turns" } dd { (session.turns) }
            dt { "Spend" } dd { (usd(session.spend_usd)) }
            dt { "Tokens" } dd { (session.input_tokens) " in (" (session.cached_input_tokens) " cached) · " (session.output_tokens) " out" }
            dt { "Nudges" } dd { (session.divergence.nudges) }
            dt { "Started · last activity" } dd { (time(session.created_ms)) " · " (time(session.last_seen_ms)) " UTC" }
            dt { "Budget caps" } dd #caps {
                "spend " (caps.per_conversation_usd.map_or("none".to_owned(), usd))
                " · turns " (caps.per_conversation_turns.map_or("none".to_owned(), |t| t.to_string()))
            }
        }
        p {
            "Same data over gRPC: "
            code #grpc-call { (grpc) }
            " "
            button type="button" onclick="navigator.clipboard.writeText(document.getElementById('grpc-call').textContent)" { "Copy" }
        }
        h2 { "Spend and tokens over the turns" }
        (charts(&timeline))
        h2 { "Timeline" }
        (rows(&timeline))
    };
    html_page(StatusCode::OK, "Conversation", body)
}

/// Cumulative spend and tokens per turn with a result.
fn charts(timeline: &[DecisionEntry]) -> maud::Markup {
    let done: Vec<_> = timeline
        .iter()
        .filter_map(|d| Some((d.turn, d.result.as_ref()?)))
        .collect();
    if done.is_empty() {
        return html! { p.muted { "No reported turn yet." } };
    }
    let labels: Vec<String> = done.iter().map(|(t, _)| t.to_string()).collect();
    let mut spend = 0.0;
    let mut input = 0.0;
    let mut output = 0.0;
    let (mut s, mut i, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for (_, r) in &done {
        spend += r.cost_usd;
        input += f64::from(r.input_tokens);
        output += f64::from(r.output_tokens);
        s.push(spend);
        i.push(input);
        o.push(output);
    }
    html! {
        (chart::lines("Cumulative spend by turn", &labels, &[Series { name: "spend (USD)", color: chart::PALETTE[0], values: s }], |v| format!("${v:.4}")))
        " "
        (chart::lines("Cumulative tokens by turn", &labels, &[
            Series { name: "input tokens", color: chart::PALETTE[1], values: i },
            Series { name: "output tokens", color: chart::PALETTE[2], values: o },
        ], |v| format!("{v:.0}")))
    }
}

fn rows(timeline: &[DecisionEntry]) -> maud::Markup {
    html! {
        table #timeline {
            thead { tr {
                th.n { "Turn" } th { "At (UTC)" } th { "Decision" } th { "Model" } th { "Provider · key" }
                th { "Reason" } th.n { "Latency" } th.n { "TTFT" } th.n { "Tokens in/cached/out" }
                th.n { "Cost" } th { "Nudges" }
            } }
            tbody {
                @for d in timeline {
                    @let r = d.result.as_ref();
                    tr.switch[kind(d.kind) == "switch"].nudged[!d.events.is_empty()] data-turn=(d.turn) {
                        td.n { (d.turn) }
                        td { (time(d.at_ms)) }
                        td { span.badge { (kind(d.kind)) } }
                        td.model { (d.model) }
                        td { (r.map_or(d.provider.as_str(), |r| r.provider.as_str())) @if let Some(r) = r { " · " (r.key_ref) } }
                        td { (d.reason) @if r.is_some_and(|r| r.attempts > 1) { " " span.badge.warn { (r.map_or(0, |r| r.attempts)) " attempts" } } }
                        @if let Some(r) = r {
                            td.n { (r.latency_ms) " ms" }
                            td.n { (r.ttft_ms) " ms" }
                            td.n { (r.input_tokens) " / " (r.cached_input_tokens) " / " (r.output_tokens) }
                            td.n { (usd(r.cost_usd)) @if !r.success { " " span.badge.bad { "failed" } } }
                        } @else {
                            td.n.muted colspan="4" { "no report yet" }
                        }
                        td.nudges {
                            @for e in &d.events {
                                span.badge.bad title={"turns " (format!("{:?}", e.turns))} { (e.pattern) }
                                @if e.escalation != "off" { " → " (e.escalation) }
                                " "
                            }
                        }
                    }
                }
            }
        }
    }
}
