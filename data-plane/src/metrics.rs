//! The sidecar's metrics, served as Prometheus text on `GET /metrics`
//! through `prometheus-client`. GenAI families take their names from
//! [`keel::semconv`]; labels are low-cardinality by construction (API,
//! status class, catalog model and provider, profile, error class) and
//! never name a conversation.

use std::time::Duration;

use keel::{
    pb,
    semconv::{metric, operation, provider, token_type},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::format::Format;

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    status: &'static str,
}

/// One upstream call, in the GenAI conventions' label names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    gen_ai_operation_name: &'static str,
    /// The provider's kind (`openai`, `anthropic`, …).
    gen_ai_provider_name: String,
    /// The catalog's provider name.
    keel_provider: String,
    gen_ai_request_model: String,
    keel_profile: String,
    /// Empty on success, else the attempt's failure class.
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: String,
    keel_provider: String,
    gen_ai_request_model: String,
    keel_profile: String,
    gen_ai_token_type: &'static str,
}

/// One request as the app saw it, by the target that served it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabels {
    model: String,
    provider: String,
    profile: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    Histogram::new(metric::DURATION_BUCKETS)
}

fn tokens() -> Histogram {
    Histogram::new(metric::TOKEN_BUCKETS)
}

/// Overhead buckets: Keel's own time is milliseconds, not seconds.
fn overheads() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

/// Metrics of one sidecar.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    degraded: Counter,
    fallbacks: Counter,
    /// Shared with the reporter, which counts and measures its queue.
    pub reports_dropped: Counter,
    pub report_queue: Gauge,
    operation: Histograms<CallLabels>,
    first_chunk: Histograms<CallLabels>,
    token_usage: Histograms<TokenLabels>,
    request_duration: Histograms<ServedLabels>,
    overhead: Histogram,
    steps: Histograms<StepLabels>,
}

/// One step of the sidecar's own work on a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

/// Step buckets: microseconds (parse of a short body) to tens of ms.
fn steps() -> Histogram {
    Histogram::new([
        0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
        0.01, 0.025, 0.05,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            requests: Family::default(),
            degraded: Counter::default(),
            fallbacks: Counter::default(),
            reports_dropped: Counter::default(),
            report_queue: Gauge::default(),
            operation: Family::new_with_constructor(durations),
            first_chunk: Family::new_with_constructor(durations),
            token_usage: Family::new_with_constructor(tokens),
            request_duration: Family::new_with_constructor(durations),
            overhead: overheads(),
            steps: Family::new_with_constructor(steps),
        };
        let r = &mut m.registry;
        r.register(
            "keel_sidecar_requests",
            "Chat requests by API called and status class",
            m.requests.clone(),
        );
        r.register(
            "keel_sidecar_degraded",
            "Requests served without the control plane (fail static)",
            m.degraded.clone(),
        );
        r.register(
            "keel_sidecar_fallbacks",
            "Upstream attempts beyond the first",
            m.fallbacks.clone(),
        );
        r.register(
            "keel_sidecar_reports_dropped",
            "Outcomes dropped because the report queue was full",
            m.reports_dropped.clone(),
        );
        r.register(
            "keel_sidecar_report_queue",
            "Outcomes waiting for delivery to the control plane",
            m.report_queue.clone(),
        );
        r.register_with_unit(
            metric::OPERATION_DURATION,
            "One upstream call, request sent to its last byte (failed attempts included)",
            Unit::Seconds,
            m.operation.clone(),
        );
        r.register_with_unit(
            metric::TIME_TO_FIRST_CHUNK,
            "Streamed upstream calls: request sent to the first chunk",
            Unit::Seconds,
            m.first_chunk.clone(),
        );
        r.register(
            metric::TOKEN_USAGE,
            "Tokens of one served call by type (input includes cached)",
            m.token_usage.clone(),
        );
        r.register_with_unit(
            "keel_sidecar_request_duration",
            "Chat requests as the app saw them, accept to last byte, by the target that served them",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "keel_sidecar_step_duration",
            "The sidecar's own steps on a chat request: parse (the body scanned and checked, \
             new messages parsed), features, fingerprint, route (asking the control plane, \
             waiting included), prepare (the upstream body)",
            Unit::Seconds,
            m.steps.clone(),
        );
        r.register_with_unit(
            "keel_sidecar_overhead",
            "Time Keel added to a response head, everything but waiting on providers",
            Unit::Seconds,
            m.overhead.clone(),
        );
        m
    }
}

impl Metrics {
    /// Counts one chat request by the API it called and the status answered.
    pub fn request(&self, format: Format, status: u16) {
        let api = match format {
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
        };
        let status = match status {
            200..=399 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels { api, status })
            .inc();
    }

    /// Counts a request served without the control plane.
    pub fn degraded(&self) {
        self.degraded.inc();
    }

    /// Counts attempts beyond the first (fallbacks taken).
    pub fn fallbacks(&self, n: u64) {
        if n > 0 {
            self.fallbacks.inc_by(n);
        }
    }

    /// Measures one step of a request (`parse`, `features`, `fingerprint`,
    /// `route`, `prepare`).
    pub fn step(&self, step: &'static str, d: Duration) {
        self.steps
            .get_or_create(&StepLabels { step })
            .observe(d.as_secs_f64());
    }

    /// Measures Keel's own share of one response's time.
    pub fn overhead(&self, d: Duration) {
        self.overhead.observe(d.as_secs_f64());
    }

    /// Measures one settled request: every attempt as an upstream call
    /// (`served_for` is the serving attempt's time to its last byte), the
    /// served call's tokens and, when streamed, its first chunk, and the
    /// request as a whole.
    pub fn outcome(&self, o: &pb::Outcome, served_for: Option<Duration>, streamed: bool) {
        let last = o.attempts.len().saturating_sub(1);
        for (i, a) in o.attempts.iter().enumerate() {
            let Some(t) = &a.target else { continue };
            let call = CallLabels {
                gen_ai_operation_name: operation::CHAT,
                gen_ai_provider_name: provider::of(t).to_owned(),
                keel_provider: t.provider.clone(),
                gen_ai_request_model: t.model.clone(),
                keel_profile: o.profile.clone(),
                error_type: a.error_class.clone(),
            };
            let served = i == last && o.success;
            let seconds = match served_for {
                Some(d) if served => d.as_secs_f64(),
                _ => f64::from(a.latency_ms) / 1000.0,
            };
            self.operation.get_or_create(&call).observe(seconds);
            if served && streamed && a.ttft_ms > 0 {
                self.first_chunk
                    .get_or_create(&call)
                    .observe(f64::from(a.ttft_ms) / 1000.0);
            }
            if served {
                self.served(o, t);
            }
        }
    }

    fn served(&self, o: &pb::Outcome, t: &pb::Target) {
        let usage = o.usage.unwrap_or_default();
        for (kind, n) in [
            (token_type::INPUT, usage.input_tokens),
            (token_type::OUTPUT, usage.output_tokens),
            (token_type::CACHED, usage.cached_input_tokens),
        ] {
            self.token_usage
                .get_or_create(&TokenLabels {
                    gen_ai_operation_name: operation::CHAT,
                    gen_ai_provider_name: provider::of(t).to_owned(),
                    keel_provider: t.provider.clone(),
                    gen_ai_request_model: t.model.clone(),
                    keel_profile: o.profile.clone(),
                    gen_ai_token_type: kind,
                })
                .observe(f64::from(n));
        }
        self.request_duration
            .get_or_create(&ServedLabels {
                model: t.model.clone(),
                provider: t.provider.clone(),
                profile: o.profile.clone(),
            })
            .observe(f64::from(o.total_latency_ms) / 1000.0);
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
