//! The control plane's metrics, served as Prometheus (OpenMetrics) text on
//! the HTTP port (`GET /metrics`) through `prometheus-client`.
//!
//! Labels are low-cardinality by construction: profiles, models and
//! providers come from config, kinds, reasons and patterns are fixed enums.
//! Never a conversation id.

use std::time::Duration;

use keel::{pb::DecisionKind, semconv::metric};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{
    divergence::{Escalation, Pattern},
    refusal::Refusal,
};

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why `Route` refused a request, in label order.
pub const REFUSALS: [&str; 8] = Refusal::LABELS;

/// Breaker states, as [`crate::breaker::Breaker::state_name`] names them.
const BREAKER_STATES: [&str; 3] = ["closed", "half_open", "open"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    profile: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PinLabels {
    profile: String,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PatternLabels {
    pattern: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EscalationLabels {
    escalation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabels {
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabels {
    profile: String,
    model: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    model: String,
    provider: String,
    state: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// `Route` answers in microseconds to milliseconds (a pin's flush).
fn route_durations() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ])
}

/// USD per request: a tenth of a cent to ten dollars.
fn costs() -> Histogram {
    Histogram::new([
        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
    ])
}

fn tokens() -> Histogram {
    Histogram::new(metric::TOKEN_BUCKETS)
}

/// The control plane's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    pins: Family<PinLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    nudges: Family<PatternLabels, Counter>,
    escalations: Family<EscalationLabels, Counter>,
    route_duration: Histograms<ProfileLabels>,
    cost: Histograms<ServedLabels>,
    tokens: Family<TokenLabels, Histogram, fn() -> Histogram>,
    degraded: Family<ProfileLabels, Counter>,
    breaker: Family<BreakerLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    profile: String,
    model: String,
    provider: String,
    gen_ai_token_type: &'static str,
}

impl Metrics {
    /// Every family registered; counters with fixed labels start at zero so
    /// that a dashboard sees them before the first event.
    pub fn new<'a>(profiles: impl IntoIterator<Item = &'a str>) -> Self {
        let mut m = Self {
            registry: Registry::default(),
            decisions: Family::default(),
            pins: Family::default(),
            refusals: Family::default(),
            nudges: Family::default(),
            escalations: Family::default(),
            route_duration: Family::new_with_constructor(route_durations),
            cost: Family::new_with_constructor(costs),
            tokens: Family::new_with_constructor(tokens),
            degraded: Family::default(),
            breaker: Family::default(),
        };
        for profile in profiles {
            for kind in [
                DecisionKind::Initialize,
                DecisionKind::Retain,
                DecisionKind::Switch,
                DecisionKind::Unpinned,
                DecisionKind::Side,
            ] {
                let _ = m.decisions.get_or_create(&DecisionLabels {
                    profile: profile.to_owned(),
                    kind: kind_label(kind),
                });
            }
        }
        for reason in REFUSALS {
            let _ = m.refusals.get_or_create(&ReasonLabels { reason });
        }
        for p in Pattern::ALL {
            let _ = m.nudges.get_or_create(&PatternLabels {
                pattern: p.as_str(),
            });
        }
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "keel_route_decisions",
            "Routing decisions returned by Route, by profile and kind",
            self.decisions.clone(),
        );
        r.register(
            "keel_pins",
            "Pinned decisions by event: created (first pin), retained, switched (announced switch)",
            self.pins.clone(),
        );
        r.register(
            "keel_route_refusals",
            "Requests Route refused, by reason (budget caps, load shedding, pinned model down or gone, divergence stop, invalid request, no candidate, store failure)",
            self.refusals.clone(),
        );
        r.register(
            "keel_divergence_nudges",
            "Divergence (loop) nudges injected, by pattern",
            self.nudges.clone(),
        );
        r.register(
            "keel_divergence_escalations",
            "Divergence nudges that escalated, by escalation",
            self.escalations.clone(),
        );
        r.register_with_unit(
            "keel_route_duration",
            "Time Route took to decide (a new pin's flush included), by profile",
            Unit::Seconds,
            self.route_duration.clone(),
        );
        r.register(
            "keel_request_cost_usd",
            "USD of one reported request at catalog prices, by the target that served it",
            self.cost.clone(),
        );
        r.register(
            "keel_request_tokens",
            "Tokens of one reported request by type (input includes cached), by the target that served it",
            self.tokens.clone(),
        );
        r.register(
            "keel_degraded_responses",
            "Reported requests a sidecar served without the control plane (fail static), by profile",
            self.degraded.clone(),
        );
        r.register(
            "keel_breaker_state",
            "Circuit breaker state per deployment (1 for the current state)",
            self.breaker.clone(),
        );
    }

    /// Counts one decision returned by `Route` and measures its time.
    pub fn decision(&self, profile: &str, kind: DecisionKind, pinned: bool, took: Duration) {
        self.decisions
            .get_or_create(&DecisionLabels {
                profile: profile.to_owned(),
                kind: kind_label(kind),
            })
            .inc();
        let event = match kind {
            DecisionKind::Initialize => Some("created"),
            DecisionKind::Retain => Some("retained"),
            DecisionKind::Switch => Some("switched"),
            DecisionKind::Unpinned | DecisionKind::Side | DecisionKind::Unspecified => None,
        };
        if let (true, Some(event)) = (pinned, event) {
            self.pins
                .get_or_create(&PinLabels {
                    profile: profile.to_owned(),
                    event,
                })
                .inc();
        }
        self.route_duration
            .get_or_create(&ProfileLabels {
                profile: profile.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a request `Route` refused, labelled by the refusal's kind.
    pub fn refusal(&self, refusal: &Refusal) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: refusal.label(),
            })
            .inc();
    }

    /// Counts one divergence nudge and the escalation applied with it (a
    /// plain nudge, `off`, is counted as a nudge only).
    pub fn nudge(&self, pattern: Pattern, applied: Escalation) {
        self.nudges
            .get_or_create(&PatternLabels {
                pattern: pattern.as_str(),
            })
            .inc();
        if applied != Escalation::Off {
            self.escalations
                .get_or_create(&EscalationLabels {
                    escalation: applied.as_str(),
                })
                .inc();
        }
    }

    /// Measures one reported request served by `model` at `provider`.
    pub fn served(
        &self,
        profile: &str,
        model: &str,
        provider: &str,
        usage: &keel::pb::Usage,
        cost_usd: f64,
    ) {
        let served = ServedLabels {
            profile: profile.to_owned(),
            model: model.to_owned(),
            provider: provider.to_owned(),
        };
        self.cost.get_or_create(&served).observe(cost_usd);
        use keel::semconv::token_type;
        for (kind, n) in [
            (token_type::INPUT, usage.input_tokens),
            (token_type::OUTPUT, usage.output_tokens),
            (token_type::CACHED, usage.cached_input_tokens),
        ] {
            self.tokens
                .get_or_create(&TokenLabels {
                    profile: served.profile.clone(),
                    model: served.model.clone(),
                    provider: served.provider.clone(),
                    gen_ai_token_type: kind,
                })
                .observe(f64::from(n));
        }
    }

    /// Counts a reported request that was served without the control plane.
    pub fn degraded(&self, profile: &str) {
        self.degraded
            .get_or_create(&ProfileLabels {
                profile: profile.to_owned(),
            })
            .inc();
    }

    /// Sets a deployment's breaker state (called before each scrape).
    pub fn breaker(&self, model: &str, provider: &str, state: &str) {
        for s in BREAKER_STATES {
            self.breaker
                .get_or_create(&BreakerLabels {
                    model: model.to_owned(),
                    provider: provider.to_owned(),
                    state: s,
                })
                .set(i64::from(s == state));
        }
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
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
