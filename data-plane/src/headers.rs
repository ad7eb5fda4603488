//! `X-Keel-*` response headers: what Keel decided, for the app.

use http::{HeaderMap, HeaderValue};
use keel::pb;

/// Adds the decision headers for a response served by `served`.
pub fn decorate(
    headers: &mut HeaderMap,
    decision: &pb::Decision,
    served: &pb::Target,
    source: pb::SessionSource,
    degraded: bool,
) {
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("x-keel-model", &served.model);
    put("x-keel-provider", &served.provider);
    put("x-keel-profile", &decision.profile);
    put(
        "x-keel-pinned",
        if decision.pinned { "true" } else { "false" },
    );
    put("x-keel-turn", &decision.turn.to_string());
    let kind = match pb::DecisionKind::try_from(decision.kind) {
        Ok(pb::DecisionKind::Initialize) => "initialize",
        Ok(pb::DecisionKind::Retain) => "retain",
        Ok(pb::DecisionKind::Switch) => "switch",
        Ok(pb::DecisionKind::Side) => "side",
        _ => "unpinned",
    };
    put("x-keel-decision-kind", kind);
    if !decision.decision_id.is_empty() {
        put("x-keel-decision", &decision.decision_id);
    }
    // Turn 0: the control plane routed the request on its own, whatever
    // identity the sidecar offered.
    if let Some(s) = crate::identity::Identity::header_value(source).filter(|_| decision.turn > 0) {
        put("x-keel-session-source", s);
    }
    // After a fallback to another model, the reason says so: the headers
    // and the body name the model that served, and so does the reason.
    let chosen = decision.target.as_ref().map(|t| t.model.as_str());
    let fell_back = (chosen != Some(served.model.as_str())).then(|| {
        format!(
            "{}; served by fallback {} ({}) after {} failed",
            decision.reason,
            served.model,
            served.provider,
            chosen.unwrap_or("the chosen model")
        )
    });
    // Header values must be visible ASCII; the reason is words for people.
    let reason: String = fell_back
        .as_deref()
        .unwrap_or(&decision.reason)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    put("x-keel-reason", &reason);
    if !decision.inject.is_empty() {
        put("x-keel-nudged", "true");
    }
    if degraded {
        put("x-keel-degraded", "true");
    }
}
