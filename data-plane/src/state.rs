//! What every request shares: settings, the route client, the pooled
//! upstream client, provider keys and the reporter.

use std::{sync::Arc, time::Duration};

use http::HeaderMap;
use keel::{fingerprint::FingerprintCache, pb};

use crate::{
    config::SidecarConfig, cooldown::Cooldowns, error::ApiError, keys::Keys, report::Reporter,
    route::RouteClient,
};

/// Shared state of the sidecar.
pub struct AppState {
    pub config: SidecarConfig,
    pub route: Arc<RouteClient>,
    pub http: crate::upstream::Clients,
    pub keys: Keys,
    pub reporter: Reporter,
    pub cooldowns: Cooldowns,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Slots under `--max-concurrency`.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Message fingerprints of earlier turns, so each turn only fingerprints what the
    /// agent appended (bounded: `FingerprintCache::DEFAULT_CAPACITY` entries).
    pub fingerprints: FingerprintCache,
    /// Facts of the message and other parts of earlier turns, so each turn
    /// only parses what the agent appended (bounded:
    /// `FactsCache::DEFAULT_CAPACITY` entries).
    pub facts: crate::facts::FactsCache,
    /// Response id → conversation, for Responses requests that only name
    /// `previous_response_id` (bounded).
    pub chains: crate::responses::Chains,
    /// Runs of fingerprinted conversations (identity/runs.rs).
    pub runs: crate::identity::runs::Runs,
    /// Conversations whose main line declares tools (side.rs).
    pub main_lines: crate::side::MainLines,
}

/// Limits for one request: the decision's, else the sidecar's defaults.
pub struct Limits {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub max_attempts: usize,
}

impl AppState {
    /// Checks the app's own credentials when `--api-key` is set.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.config.api_key else {
            return Ok(());
        };
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let presented = bearer.or(x_api_key);
        match presented {
            Some(k) if constant_time_eq(k.trim().as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized("invalid API key".into())),
            None => Err(ApiError::Unauthorized(
                "missing API key (send Authorization: Bearer or x-api-key)".into(),
            )),
        }
    }

    /// Limits from the decision, falling back to this sidecar's flags.
    pub fn limits(&self, from_decision: Option<&pb::Limits>) -> Limits {
        let pick = |ms: Option<u32>, default: Duration| match ms {
            Some(ms) if ms > 0 => Duration::from_millis(u64::from(ms)),
            _ => default,
        };
        Limits {
            connect: pick(
                from_decision.map(|l| l.connect_timeout_ms),
                self.config.connect_timeout,
            ),
            first_byte: pick(
                from_decision.map(|l| l.first_byte_timeout_ms),
                self.config.first_byte_timeout,
            ),
            idle: pick(
                from_decision.map(|l| l.idle_timeout_ms),
                self.config.idle_timeout,
            ),
            max_attempts: from_decision
                .map(|l| l.max_attempts as usize)
                .filter(|&n| n > 0)
                .unwrap_or(3),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
