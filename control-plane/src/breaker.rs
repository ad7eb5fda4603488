//! A circuit breaker per deployment, from reported outcomes: it opens after
//! the error rate over a recent window passes a threshold (with a minimum
//! number of requests), lets one probe through once the open period ends
//! (half-open), and closes again when a probe succeeds.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Breaker settings (`[health]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Error rate at or above which the breaker opens.
    pub error_rate: f64,
    /// Fewest outcomes in the window before the rate counts.
    pub min_requests: u32,
    /// How far back outcomes count.
    pub window: Duration,
    /// How long an open breaker stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.5,
            min_requests: 5,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// A probe is allowed; `probe_sent` until its outcome (or until the probe
    /// is presumed lost after another open period).
    HalfOpen {
        probe_sent: Option<Instant>,
    },
}

/// Breaker state of one deployment.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    /// Recent outcomes: (when, ok). Bounded by the window and a count cap.
    recent: VecDeque<(Instant, bool)>,
}

/// Most outcomes kept per breaker.
const MAX_RECENT: usize = 256;

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: State::Closed,
            recent: VecDeque::new(),
        }
    }
}

impl Breaker {
    /// Records an outcome that says something about the provider's health.
    pub fn record(&mut self, ok: bool, now: Instant, cfg: &BreakerConfig) {
        match self.state {
            State::Open { .. } => {}
            State::HalfOpen { .. } => {
                self.recent.clear();
                self.state = if ok {
                    State::Closed
                } else {
                    State::Open {
                        until: now + cfg.open_for,
                    }
                };
            }
            State::Closed => {
                self.recent.push_back((now, ok));
                while self.recent.len() > MAX_RECENT
                    || self
                        .recent
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > cfg.window)
                {
                    self.recent.pop_front();
                }
                let total = self.recent.len();
                let failed = self.recent.iter().filter(|(_, ok)| !ok).count();
                if total >= cfg.min_requests as usize
                    && failed as f64 / total as f64 >= cfg.error_rate
                {
                    self.recent.clear();
                    self.state = State::Open {
                        until: now + cfg.open_for,
                    };
                }
            }
        }
    }

    /// Whether a request may go to the deployment now.
    pub fn available(&mut self, now: Instant, cfg: &BreakerConfig) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probe_sent: None };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probe_sent: None } => true,
            State::HalfOpen {
                probe_sent: Some(at),
            } => {
                // A probe whose outcome never came is presumed lost.
                now.duration_since(at) >= cfg.open_for
            }
        }
    }

    /// The deployment was chosen: in half-open state this is the probe.
    pub fn chosen(&mut self, now: Instant) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen {
                probe_sent: Some(now),
            };
        }
    }

    /// `closed`, `open` or `half_open`, for metrics and logs.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Breaker, BreakerConfig};

    #[test]
    fn opens_on_error_rate_probes_when_half_open_and_closes_on_success() {
        let cfg = BreakerConfig {
            error_rate: 0.5,
            min_requests: 4,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(false, t0, &cfg);
        b.record(false, t0, &cfg);
        b.record(true, t0, &cfg);
        assert!(b.available(t0, &cfg), "3 outcomes are below the minimum");
        b.record(false, t0, &cfg);
        assert_eq!(b.state_name(), "open");
        assert!(!b.available(t0 + Duration::from_secs(5), &cfg));
        let later = t0 + Duration::from_secs(10);
        assert!(b.available(later, &cfg), "half-open lets a probe through");
        b.chosen(later);
        assert!(!b.available(later, &cfg), "one probe at a time");
        b.record(false, later, &cfg);
        assert_eq!(b.state_name(), "open", "a failed probe reopens");
        let again = later + Duration::from_secs(10);
        assert!(b.available(again, &cfg));
        b.chosen(again);
        b.record(true, again, &cfg);
        assert_eq!(b.state_name(), "closed");
        assert!(b.available(again, &cfg));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let cfg = BreakerConfig {
            min_requests: 2,
            window: Duration::from_secs(1),
            ..BreakerConfig::default()
        };
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(false, t0, &cfg);
        b.record(true, t0 + Duration::from_secs(5), &cfg);
        assert_eq!(b.state_name(), "closed", "the old failure no longer counts");
    }

    #[test]
    fn a_lost_probe_is_retried_after_another_open_period() {
        let cfg = BreakerConfig {
            min_requests: 1,
            ..BreakerConfig::default()
        };
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(false, t0, &cfg);
        let t1 = t0 + cfg.open_for;
        assert!(b.available(t1, &cfg));
        b.chosen(t1);
        assert!(!b.available(t1 + Duration::from_secs(1), &cfg));
        assert!(b.available(t1 + cfg.open_for, &cfg));
    }
}
