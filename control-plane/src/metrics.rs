//! Counters served as Prometheus text on the HTTP port (`GET /metrics`).
//!
//! Labels are low-cardinality by construction: profiles come from config, kinds and
//! patterns are fixed enums. Never a conversation id. Counters are plain atomics created
//! at start-up, so counting on the request path takes no lock.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use keel::pb::DecisionKind;

use crate::{
    divergence::{Escalation, Pattern},
    refusal::Refusal,
};

/// Decision kinds, in label order.
const KINDS: [DecisionKind; 5] = [
    DecisionKind::Initialize,
    DecisionKind::Retain,
    DecisionKind::Switch,
    DecisionKind::Unpinned,
    DecisionKind::Side,
];

/// Escalations that are counted (a plain nudge is `Off` and counted as a nudge only).
const ESCALATIONS: [Escalation; 2] = [Escalation::StrongerModel, Escalation::Stop];

/// Why `Route` refused a request, in label order.
pub const REFUSALS: [&str; 8] = Refusal::LABELS;

/// The control plane's counters.
pub struct Metrics {
    /// Per [`REFUSALS`] entry.
    refusals: [AtomicU64; 8],
    /// Per profile, per [`KINDS`] entry.
    decisions: BTreeMap<String, [AtomicU64; 5]>,
    /// Per [`Pattern::ALL`] entry.
    nudges: [AtomicU64; 6],
    /// Per [`ESCALATIONS`] entry.
    escalations: [AtomicU64; 2],
}

impl Metrics {
    /// Counters for the given profile names (the config's; decisions under any other name
    /// are not counted, which cannot happen once config is validated).
    pub fn new<'a>(profiles: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            decisions: profiles
                .into_iter()
                .map(|p| (p.to_owned(), Default::default()))
                .collect(),
            nudges: Default::default(),
            escalations: Default::default(),
            refusals: Default::default(),
        }
    }

    /// Counts one decision returned by `Route`.
    pub fn decision(&self, profile: &str, kind: DecisionKind) {
        if let (Some(row), Some(k)) = (
            self.decisions.get(profile),
            KINDS.iter().position(|x| *x == kind),
        ) {
            row[k].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request `Route` refused, labelled by the refusal's kind.
    pub fn refusal(&self, refusal: &Refusal) {
        self.refusals[refusal.label_index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one divergence nudge and the escalation applied with it.
    pub fn nudge(&self, pattern: Pattern, applied: Escalation) {
        if let Some(i) = Pattern::ALL.iter().position(|p| *p == pattern) {
            self.nudges[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = ESCALATIONS.iter().position(|e| *e == applied) {
            self.escalations[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        family(
            &mut out,
            "keel_route_decisions_total",
            "Routing decisions returned by Route, by profile and kind.",
        );
        for (profile, row) in &self.decisions {
            for (kind, n) in KINDS.iter().zip(row) {
                let _ = writeln!(
                    out,
                    "keel_route_decisions_total{{profile=\"{}\",kind=\"{}\"}} {}",
                    escape(profile),
                    kind_label(*kind),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        family(
            &mut out,
            "keel_divergence_nudges_total",
            "Divergence (loop) nudges injected, by pattern.",
        );
        for (p, n) in Pattern::ALL.iter().zip(&self.nudges) {
            let _ = writeln!(
                out,
                "keel_divergence_nudges_total{{pattern=\"{}\"}} {}",
                p.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "keel_divergence_escalations_total",
            "Divergence nudges that escalated, by escalation.",
        );
        for (e, n) in ESCALATIONS.iter().zip(&self.escalations) {
            let _ = writeln!(
                out,
                "keel_divergence_escalations_total{{escalation=\"{}\"}} {}",
                e.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "keel_route_refusals_total",
            "Requests Route refused, by reason (budget caps, load shedding, pinned model down, divergence stop, invalid request, no candidate, pinned model gone, store failure).",
        );
        for (r, n) in REFUSALS.iter().zip(&self.refusals) {
            let _ = writeln!(
                out,
                "keel_route_refusals_total{{reason=\"{r}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

fn kind_label(kind: DecisionKind) -> &'static str {
    match kind {
        DecisionKind::Initialize => "initialize",
        DecisionKind::Retain => "retain",
        DecisionKind::Switch => "switch",
        DecisionKind::Unpinned => "unpinned",
        DecisionKind::Side => "side",
        DecisionKind::Unspecified => "unspecified",
    }
}

/// Escapes a label value (profile names are validated to `[A-Za-z0-9_-]`, so this is
/// only a guard).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
