//! The sidecar's counters, served as Prometheus text on `GET /metrics`.
//! Plain atomics with fixed, low-cardinality labels: counting on the request
//! path takes no lock and never names a conversation.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::format::Format;

const APIS: [&str; 2] = ["openai", "anthropic"];
const CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// Counters of one sidecar.
#[derive(Default)]
pub struct Metrics {
    /// `[api][status class]`.
    requests: [[AtomicU64; 3]; 2],
    degraded: AtomicU64,
    fallbacks: AtomicU64,
}

impl Metrics {
    /// Counts one chat request by the API it called and the status answered.
    pub fn request(&self, format: Format, status: u16) {
        let api = match format {
            Format::OpenAi => 0,
            Format::Anthropic => 1,
        };
        let class = match status {
            200..=399 => 0,
            400..=499 => 1,
            _ => 2,
        };
        self.requests[api][class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request served without the control plane.
    pub fn degraded(&self) {
        self.degraded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts attempts beyond the first (fallbacks taken).
    pub fn fallbacks(&self, n: u64) {
        if n > 0 {
            self.fallbacks.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Prometheus text; `reports_dropped` comes from the reporter.
    pub fn render(&self, reports_dropped: u64) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str(
            "# HELP keel_sidecar_requests_total Chat requests by API called and status class.\n",
        );
        out.push_str("# TYPE keel_sidecar_requests_total counter\n");
        for (a, api) in APIS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.requests[a][c].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "keel_sidecar_requests_total{{api=\"{api}\",status=\"{class}\"}} {n}"
                );
            }
        }
        let mut counter = |name: &str, help: &str, n: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
            );
        };
        counter(
            "keel_sidecar_degraded_total",
            "Requests served without the control plane (fail static).",
            self.degraded.load(Ordering::Relaxed),
        );
        counter(
            "keel_sidecar_fallbacks_total",
            "Upstream attempts beyond the first.",
            self.fallbacks.load(Ordering::Relaxed),
        );
        counter(
            "keel_sidecar_reports_dropped_total",
            "Outcomes dropped because the report queue was full.",
            reports_dropped,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;
    use crate::format::Format;

    #[test]
    fn renders_counters_with_fixed_labels() {
        let m = Metrics::default();
        m.request(Format::OpenAi, 200);
        m.request(Format::Anthropic, 429);
        m.request(Format::Anthropic, 503);
        m.degraded();
        m.fallbacks(2);
        let text = m.render(7);
        assert!(text.contains("keel_sidecar_requests_total{api=\"openai\",status=\"2xx\"} 1"));
        assert!(text.contains("keel_sidecar_requests_total{api=\"anthropic\",status=\"4xx\"} 1"));
        assert!(text.contains("keel_sidecar_requests_total{api=\"anthropic\",status=\"5xx\"} 1"));
        assert!(text.contains("keel_sidecar_degraded_total 1"));
        assert!(text.contains("keel_sidecar_fallbacks_total 2"));
        assert!(text.contains("keel_sidecar_reports_dropped_total 7"));
    }
}
