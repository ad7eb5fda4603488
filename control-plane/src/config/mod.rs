//! Control-plane configuration: one TOML file, parsed into the raw shape
//! below (unknown keys are errors), then validated into [`Config`] before any
//! port is bound.

#[cfg(test)]
mod tests;
mod validate;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

pub use validate::{
    Config, ConfigError, Objective, PinnedUnavailable, Profile, RoutingConfig, StoreConfig,
};

/// The file as written. Every table denies unknown keys so a typo fails
/// start-up instead of silently falling back to a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfile>,
    /// Loop detection; on with conservative defaults when the table is absent.
    #[serde(default)]
    pub divergence: crate::divergence::DivergenceConfig,
    #[serde(default)]
    pub health: RawHealth,
}

/// Circuit breakers per deployment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealth {
    /// Error rate (0..=1) at or above which a deployment's breaker opens.
    pub error_rate: f64,
    /// Fewest outcomes in the window before the rate counts.
    pub min_requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long an open breaker stays open before one probe is let through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for RawHealth {
    fn default() -> Self {
        let d = crate::breaker::BreakerConfig::default();
        Self {
            error_rate: d.error_rate,
            min_requests: d.min_requests,
            window: d.window,
            open_for: d.open_for,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub path: PathBuf,
    #[serde(with = "humantime_serde")]
    pub session_idle_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// sled's page cache; sled defaults to 1 GiB, far more than sessions need.
    pub cache_capacity_mb: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./keel-data"),
            session_idle_ttl: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(60),
            cache_capacity_mb: 64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    /// Profile applied when a request names none.
    pub default_profile: String,
    /// Upstream timeouts handed to the sidecar in every decision.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub max_attempts: u32,
    /// Latency assumed for a model with neither a configured nor an observed one.
    #[serde(with = "humantime_serde")]
    pub default_latency: Duration,
    /// What a pinned conversation gets when every deployment of its model is
    /// down: `wait` (503 + Retry-After) or `failover` (re-pin to a healthy
    /// model of the same tier, announced as a switch).
    pub pinned_unavailable: String,
}

impl Default for RawRouting {
    fn default() -> Self {
        Self {
            default_profile: "CHAT".to_owned(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_attempts: 3,
            default_latency: Duration::from_secs(1),
            pinned_unavailable: "wait".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub api: String,
    pub base_url: String,
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    #[serde(rename = "ref")]
    pub key_ref: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub tier: u32,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub context_tokens: u32,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Expected time to first token, used by latency-seeking profiles until
    /// reports give an observed one.
    #[serde(default, with = "humantime_serde")]
    pub latency: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub session_lock: Option<bool>,
    pub quality_floor: Option<u32>,
    pub objective: Option<String>,
    pub allowed_models: Option<Vec<String>>,
}

/// Reads and validates `path`. Errors name the file and the key.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|e| e.in_file(path))
}

/// Parses and validates TOML text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: None,
        message: e.to_string(),
    })?;
    raw.validate()
}
