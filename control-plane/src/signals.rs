//! Live signals fed by `Report`, indexed like the catalog: per deployment an
//! EWMA of time to first token and of latency, error counts and a circuit
//! breaker; per provider key the time a 429 parked it until.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    breaker::{Breaker, BreakerConfig},
    catalog::Catalog,
};

/// Weight of the newest sample.
const ALPHA: f64 = 0.3;

/// What reports taught about one deployment.
#[derive(Debug, Default, Clone)]
pub struct DeploymentStats {
    pub ttft_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub successes: u64,
    pub failures: u64,
    pub breaker: Breaker,
    /// When the last latency sample arrived (exploration measures the
    /// stalest candidate).
    pub measured_at: Option<Instant>,
    /// A request sent to measure this deployment, never measured before, and
    /// not reported yet: until it is (or [`PROBE_PATIENCE`] passes), others
    /// are not sent to probe it too.
    pub probe_sent_at: Option<Instant>,
}

/// How long an unreported probe of an unmeasured deployment holds off the
/// next one.
pub const PROBE_PATIENCE: Duration = Duration::from_secs(10);

fn ewma(old: Option<f64>, sample: f64) -> f64 {
    old.map_or(sample, |o| o + ALPHA * (sample - o))
}

/// How an attempt ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    Success,
    /// Connect error, timeout, 5xx, broken stream: about the provider.
    ProviderFailure,
    /// 429: about the key.
    RateLimited,
    /// 401/403: the provider rejected the key; parked like a 429, longer.
    KeyRejected,
    /// The request's own fault (4xx) or this host's (missing key): says
    /// nothing about the provider.
    Neutral,
}

impl AttemptKind {
    /// Classifies a reported attempt.
    pub fn of(status: u32, error_class: &str) -> Self {
        match error_class {
            "" if (200..300).contains(&status) => Self::Success,
            "rate_limited" => Self::RateLimited,
            "key_rejected" => Self::KeyRejected,
            "connect" | "timeout" | "upstream_5xx" | "stream_broken" => Self::ProviderFailure,
            "" if status == 429 => Self::RateLimited,
            "" if status >= 500 => Self::ProviderFailure,
            _ => Self::Neutral,
        }
    }
}

/// Signals for every deployment and key of the catalog.
pub struct Signals {
    deployments: Vec<Mutex<DeploymentStats>>,
    breaker: BreakerConfig,
}

impl Signals {
    pub fn new(catalog: &Catalog, breaker: BreakerConfig) -> Self {
        Self {
            deployments: catalog
                .deployments()
                .iter()
                .map(|_| Mutex::default())
                .collect(),
            breaker,
        }
    }

    fn stats(&self, deployment: usize) -> std::sync::MutexGuard<'_, DeploymentStats> {
        self.deployments[deployment]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records one attempt against a deployment. (What a 429 says about a
    /// key is kept by [`crate::capacity::Capacity`].)
    pub fn record(&self, deployment: usize, kind: AttemptKind, latency_ms: u32, ttft_ms: u32) {
        let now = Instant::now();
        let mut stats = self.stats(deployment);
        if kind != AttemptKind::Neutral {
            stats.probe_sent_at = None;
        }
        match kind {
            AttemptKind::Success => {
                stats.successes += 1;
                stats.measured_at = Some(now);
                stats.latency_ms = Some(ewma(stats.latency_ms, f64::from(latency_ms)));
                if ttft_ms > 0 {
                    stats.ttft_ms = Some(ewma(stats.ttft_ms, f64::from(ttft_ms)));
                }
                stats.breaker.record(true, now, &self.breaker);
            }
            AttemptKind::ProviderFailure => {
                stats.failures += 1;
                stats.breaker.record(false, now, &self.breaker);
            }
            AttemptKind::RateLimited | AttemptKind::KeyRejected | AttemptKind::Neutral => {}
        }
    }

    /// Observed time to first token (or latency) of a deployment.
    pub fn ttft_ms(&self, deployment: usize) -> Option<f64> {
        let s = self.stats(deployment);
        s.ttft_ms.or(s.latency_ms)
    }

    /// How long ago the deployment's latency was last measured (None:
    /// never).
    pub fn measured_ago(&self, deployment: usize) -> Option<Duration> {
        self.stats(deployment).measured_at.map(|t| t.elapsed())
    }

    /// Whether the deployment's breaker lets a request through now.
    pub fn available(&self, deployment: usize) -> bool {
        self.stats(deployment)
            .breaker
            .available(Instant::now(), &self.breaker)
    }

    /// Claims the probe of a deployment that was never measured: true (and
    /// the probe is out) when it has no latency sample and no earlier probe
    /// is still unreported.
    pub fn claim_probe(&self, deployment: usize, now: Instant) -> bool {
        let mut s = self.stats(deployment);
        let free = s.measured_at.is_none()
            && s.probe_sent_at
                .is_none_or(|t| now.duration_since(t) >= PROBE_PATIENCE);
        if free {
            s.probe_sent_at = Some(now);
        }
        free
    }

    /// The deployment was chosen as a decision's primary target.
    pub fn chosen(&self, deployment: usize) {
        self.stats(deployment).breaker.chosen(Instant::now());
    }

    /// What is known of a deployment now, for the console.
    pub fn snapshot(&self, deployment: usize) -> DeploymentStats {
        self.stats(deployment).clone()
    }

    /// Breaker state of a deployment, for metrics.
    pub fn breaker_state(&self, deployment: usize) -> &'static str {
        self.stats(deployment).breaker.state_name()
    }
}

#[cfg(test)]
mod tests {
    use super::AttemptKind;

    #[test]
    fn reported_classes_say_what_they_are_about() {
        assert_eq!(AttemptKind::of(200, ""), AttemptKind::Success);
        assert_eq!(
            AttemptKind::of(200, "stream_broken"),
            AttemptKind::ProviderFailure,
            "a stream that died part-way counts against the deployment"
        );
        assert_eq!(
            AttemptKind::of(401, "key_rejected"),
            AttemptKind::KeyRejected
        );
        assert_eq!(
            AttemptKind::of(403, "key_rejected"),
            AttemptKind::KeyRejected
        );
        assert_eq!(
            AttemptKind::of(0, "cancelled"),
            AttemptKind::Neutral,
            "the app hanging up says nothing about the provider"
        );
        assert_eq!(AttemptKind::of(429, ""), AttemptKind::RateLimited);
    }
}
