//! Live signals fed by `Report`: per target, an EWMA of time to first token
//! and of latency, and error counts. Read on every latency-seeking decision.

use std::{collections::HashMap, sync::Mutex};

/// Weight of the newest sample.
const ALPHA: f64 = 0.3;

#[derive(Debug, Default, Clone, Copy)]
pub struct TargetStats {
    pub ttft_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub successes: u64,
    pub failures: u64,
}

fn ewma(old: Option<f64>, sample: f64) -> f64 {
    old.map_or(sample, |o| o + ALPHA * (sample - o))
}

/// Signals keyed by `(provider, model)`.
#[derive(Debug, Default)]
pub struct Signals {
    targets: Mutex<HashMap<(String, String), TargetStats>>,
}

impl Signals {
    /// Records one attempt against a target.
    pub fn record(&self, provider: &str, model: &str, ok: bool, latency_ms: u32, ttft_ms: u32) {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let stats = map
            .entry((provider.to_owned(), model.to_owned()))
            .or_default();
        if ok {
            stats.successes += 1;
            stats.latency_ms = Some(ewma(stats.latency_ms, f64::from(latency_ms)));
            if ttft_ms > 0 {
                stats.ttft_ms = Some(ewma(stats.ttft_ms, f64::from(ttft_ms)));
            }
        } else {
            stats.failures += 1;
        }
    }

    /// Observed time to first token of a target, if any success was reported.
    pub fn ttft_ms(&self, provider: &str, model: &str) -> Option<f64> {
        let map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        // Borrowed lookup without allocating a key: scan is fine for the few
        // targets a catalog holds, and keeps the route path allocation-free.
        map.iter()
            .find(|((p, m), _)| p == provider && m == model)
            .and_then(|(_, s)| s.ttft_ms.or(s.latency_ms))
    }
}
