//! Control-plane configuration: one TOML file, parsed into the raw shape
//! below (unknown keys are errors), then validated into [`Config`] before any
//! port is bound.

mod error;
mod profile;
mod security;
#[cfg(test)]
mod tests;
mod validate;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

pub use error::ConfigError;
pub use profile::{Objective, Profile, ShedPriority};
pub use security::{Pem, RawCredential, SecurityConfig, TlsConfig};
pub use validate::{Config, PinnedUnavailable, RoutingConfig, StoreConfig};

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
    /// Budget caps for every profile (a profile may override them).
    #[serde(default)]
    pub budgets: RawBudgets,
    /// When a key counts as under pressure, and what is shed then.
    #[serde(default)]
    pub load: RawLoad,
    /// Who may call (bearer tokens by their SHA-256); none: open, which only
    /// a loopback address allows unless `[server] allow_unauthenticated`.
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
    /// OpenTelemetry export; traces are off when absent.
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// A collector's base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`); spans go
    /// to `{otlp_endpoint}/v1/traces` over OTLP/HTTP.
    pub otlp_endpoint: Option<String>,
}

/// Budget caps; absent means no cap.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    pub per_conversation_usd: Option<f64>,
    pub per_conversation_turns: Option<u32>,
    pub per_tenant_usd_per_day: Option<f64>,
}

/// Load shedding (see `crate::capacity`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLoad {
    /// In-flight requests per key at which it is full (0: no limit; a key's
    /// own `max_in_flight` wins).
    pub max_in_flight_per_key: u32,
    /// Rate-limit headroom (0..1) below which a key is full.
    pub min_headroom: f64,
    /// Share of each key's capacity (0..1) kept from the profiles shed first.
    pub reserve: f64,
    /// `Retry-After` given to a shed request.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// A request whose report never arrives stops counting as in flight
    /// after this long.
    #[serde(with = "humantime_serde")]
    pub in_flight_timeout: Duration,
}

impl Default for RawLoad {
    fn default() -> Self {
        Self {
            max_in_flight_per_key: 0,
            min_headroom: 0.05,
            reserve: 0.2,
            retry_after: Duration::from_secs(2),
            in_flight_timeout: Duration::from_secs(600),
        }
    }
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
    /// Tokio worker threads; absent: one per core.
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// PEM certificate chain and key: TLS on the gRPC port.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose certificates clients must present (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Serve a non-loopback address without credentials (warned at start).
    #[serde(default)]
    pub allow_unauthenticated: bool,
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
    /// Resident memory is ~3x this. 16 MB was as fast as 64 MB at 10k
    /// sessions and faster at 1M (less LRU churn), see the README.
    pub cache_capacity_mb: u64,
    /// Memory for sessions kept in front of sled and written behind (~0.5 KB
    /// each, up to ~3 KB with a full loop-detector window).
    pub session_cache_mb: u64,
    /// `sled` (embedded, one control plane) or `redis` (shared by replicas).
    pub backend: crate::store::Backend,
    /// `redis://host:port/db` or `rediss://`; no password in it.
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis password.
    pub redis_password_env: Option<String>,
    /// Sentinels (`host:port`) that name the primary `redis_master`.
    pub redis_sentinel: Vec<String>,
    pub redis_master: Option<String>,
    /// PEM file of the CA that signed the Redis server's certificate
    /// (`rediss://` with a private CA); default: the system's trust store.
    pub redis_ca_file: Option<PathBuf>,
    /// `strict` (refuse a server that may lose acknowledged pins) or
    /// `best-effort`.
    pub durability: crate::store::Durability,
    /// Longest one store call may take (Route fails fast past it).
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./keel-data"),
            session_idle_ttl: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(10),
            cache_capacity_mb: 8,
            session_cache_mb: (crate::store::DEFAULT_SESSION_CACHE_BYTES >> 20) as u64,
            backend: crate::store::Backend::Sled,
            redis_url: None,
            redis_password_env: None,
            redis_sentinel: Vec::new(),
            redis_master: None,
            redis_ca_file: None,
            durability: crate::store::Durability::Strict,
            redis_timeout: Duration::from_millis(500),
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
    pub pinned_unavailable: PinnedUnavailable,
    /// Share (0..=0.05) of unpinned latency-seeking decisions sent to the
    /// candidate measured longest ago, so stale estimates get refreshed.
    pub explore_rate: f64,
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
            pinned_unavailable: PinnedUnavailable::Wait,
            explore_rate: 0.02,
        }
    }
}

/// A provider's API (`api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Openai,
    Anthropic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub api: Api,
    pub base_url: String,
    pub keys: Vec<RawKey>,
    /// `api = "openai"` only: the provider also serves `POST /responses`.
    #[serde(default)]
    pub responses: bool,
    /// OpenTelemetry `gen_ai.provider.name` (default: by `api`).
    #[serde(default)]
    pub gen_ai_provider_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    #[serde(rename = "ref")]
    pub key_ref: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// In-flight requests at which this key is full (overrides
    /// `[load] max_in_flight_per_key`).
    pub max_in_flight: Option<u32>,
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
    pub objective: Option<Objective>,
    pub allowed_models: Option<Vec<String>>,
    /// 0: never shed; 1: shed when a key is full; 2: shed first, when a key
    /// is within `[load] reserve` of full.
    pub shed_priority: Option<ShedPriority>,
    /// Budget caps for this profile, overriding `[budgets]` key by key.
    pub budgets: Option<RawBudgets>,
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
    let syntax = |message: String| ConfigError::Syntax {
        path: None,
        message,
    };
    let de = toml::Deserializer::parse(text).map_err(|e| syntax(e.to_string()))?;
    // Values serde validates (enums, ranges) are named by their key path.
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "" | "." => syntax(e.into_inner().to_string()),
            _ => syntax(format!("`{path}`: {}", e.into_inner())),
        }
    })?;
    raw.validate()
}
