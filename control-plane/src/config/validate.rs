//! Turns the raw file into the configuration the program holds. Every error
//! names the offending key, e.g. `models[2].input_usd_per_mtok`.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use keel::pb::WireFormat;

use super::{
    RawBudgets, RawConfig, RawLoad,
    error::{ConfigError, invalid},
    profile::{Profile, validate_profiles},
};
use crate::{
    budget::Caps,
    capacity::LoadConfig,
    catalog::{Catalog, Deployment, Key, Provider},
    divergence::DivergenceConfig,
};

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub session_idle_ttl: Duration,
    pub sweep_interval: Duration,
    pub cache_capacity_bytes: u64,
    pub session_cache_bytes: usize,
    /// Set with `backend = "redis"`: the sessions are in Redis, not sled.
    pub redis: Option<crate::store::RedisSettings>,
}

/// Upstream limits handed to the sidecar with each decision.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub pinned_unavailable: PinnedUnavailable,
    pub default_profile: String,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_attempts: u32,
    pub default_latency: Duration,
    /// One unpinned latency decision in `explore_every` explores (0: never).
    pub explore_every: u64,
}

/// What a pinned conversation gets when its model is down everywhere
/// (`[routing] pinned_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinnedUnavailable {
    /// 503 with `Retry-After`; the pin stays.
    #[default]
    Wait,
    /// Re-pin to a healthy model of the same tier, announced as a switch.
    Failover,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Tokio worker threads; `None`: tokio's default (one per core).
    pub worker_threads: Option<usize>,
    pub store: StoreConfig,
    pub routing: RoutingConfig,
    pub catalog: Catalog,
    pub profiles: HashMap<String, Profile>,
    pub divergence: DivergenceConfig,
    pub health: crate::breaker::BreakerConfig,
    /// `[budgets]`: caps for every profile.
    pub budgets: Caps,
    pub load: LoadConfig,
    /// `[telemetry] otlp_endpoint`: a collector's base URL; None: traces
    /// only from the `OTEL_*` variables.
    pub otlp_endpoint: Option<String>,
    /// Credentials, TLS, and whether an open exposed port was allowed.
    pub security: super::SecurityConfig,
}

impl RawConfig {
    /// Validates every key; the first problem found is returned.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let providers = self
            .providers
            .into_iter()
            .enumerate()
            .map(|(i, p)| validate_provider(i, p))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, p) in providers.iter().enumerate() {
            if providers[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    format!("providers[{i}].name"),
                    format!("duplicate provider `{}`", p.name),
                ));
            }
        }
        let mut deployments = Vec::with_capacity(self.models.len());
        for (i, m) in self.models.into_iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            if m.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if m.name == "auto" {
                return Err(invalid(key("name"), "`auto` is reserved"));
            }
            keel::names::check("name", &m.name).map_err(|e| invalid(key("name"), e.to_string()))?;
            let provider = providers
                .iter()
                .position(|p| p.name == m.provider)
                .ok_or_else(|| {
                    invalid(
                        key("provider"),
                        format!("no provider named `{}` in [[providers]]", m.provider),
                    )
                })?;
            if m.upstream_model.trim().is_empty() {
                return Err(invalid(key("upstream_model"), "must not be empty"));
            }
            for (field, v) in [
                ("input_usd_per_mtok", m.input_usd_per_mtok),
                ("output_usd_per_mtok", m.output_usd_per_mtok),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(
                        key(field),
                        format!("must be a price >= 0, got {v}"),
                    ));
                }
            }
            if m.context_tokens == 0 {
                return Err(invalid(key("context_tokens"), "must be > 0"));
            }
            let mut tools = false;
            let mut vision = false;
            for (j, c) in m.capabilities.iter().enumerate() {
                match c.as_str() {
                    "tools" => tools = true,
                    "vision" => vision = true,
                    other => {
                        return Err(invalid(
                            format!("models[{i}].capabilities[{j}]"),
                            format!("unknown capability `{other}` (known: tools, vision)"),
                        ));
                    }
                }
            }
            deployments.push(Deployment {
                name: m.name,
                provider,
                upstream_model: m.upstream_model,
                tier: m.tier,
                input_usd_per_mtok: m.input_usd_per_mtok,
                output_usd_per_mtok: m.output_usd_per_mtok,
                context_tokens: m.context_tokens,
                tools,
                vision,
                latency: m.latency,
            });
        }
        for alias in self.aliases.keys() {
            keel::names::check("alias", alias).map_err(|e| invalid("aliases", e.to_string()))?;
        }
        for profile in self.profiles.keys() {
            keel::names::check("profile name", profile)
                .map_err(|e| invalid("profiles", e.to_string()))?;
        }
        let catalog = Catalog::new(providers, deployments, self.aliases)
            .map_err(|(alias, message)| invalid(format!("aliases.{alias}"), message))?;
        let budgets = validate_budgets("budgets", &self.budgets)?;
        let load = validate_load(&self.load)?;
        let profiles = validate_profiles(self.profiles, &catalog)?;
        let routing = self.routing;
        if !profiles.contains_key(&routing.default_profile) {
            return Err(invalid(
                "routing.default_profile",
                format!("no profile named `{}`", routing.default_profile),
            ));
        }
        if !(0.0..=0.05).contains(&routing.explore_rate) {
            return Err(invalid(
                "routing.explore_rate",
                format!(
                    "must be in [0, 0.05] (exploration stays rare), got {}",
                    routing.explore_rate
                ),
            ));
        }
        let explore_every = if routing.explore_rate > 0.0 {
            (1.0 / routing.explore_rate).round() as u64
        } else {
            0
        };
        if routing.max_attempts == 0 {
            return Err(invalid("routing.max_attempts", "must be >= 1"));
        }
        let pinned_unavailable = routing.pinned_unavailable;
        let h = self.health;
        if !(h.error_rate > 0.0 && h.error_rate <= 1.0) {
            return Err(invalid("health.error_rate", "must be in (0, 1]"));
        }
        if h.min_requests == 0 {
            return Err(invalid("health.min_requests", "must be >= 1"));
        }
        if h.window.is_zero() || h.open_for.is_zero() {
            let key = if h.window.is_zero() {
                "health.window"
            } else {
                "health.open_for"
            };
            return Err(invalid(key, "must be > 0"));
        }
        let health = crate::breaker::BreakerConfig {
            error_rate: h.error_rate,
            min_requests: h.min_requests,
            window: h.window,
            open_for: h.open_for,
        };
        let store = self.store;
        if store.session_idle_ttl.is_zero() {
            return Err(invalid("store.session_idle_ttl", "must be > 0"));
        }
        if store.sweep_interval.is_zero() {
            return Err(invalid("store.sweep_interval", "must be > 0"));
        }
        if let Some(n) = self.server.worker_threads {
            if !(1..=1024).contains(&n) {
                return Err(invalid("server.worker_threads", "must be 1..=1024"));
            }
        }
        if store.cache_capacity_mb == 0 {
            return Err(invalid("store.cache_capacity_mb", "must be > 0"));
        }
        if store.session_cache_mb == 0 {
            return Err(invalid("store.session_cache_mb", "must be > 0"));
        }
        let redis = redis_settings(&store)?;
        self.divergence
            .validate()
            .map_err(|e| invalid(format!("divergence.{}", e.key), e.reason))?;
        let otlp_endpoint = self
            .telemetry
            .otlp_endpoint
            .filter(|e| !e.trim().is_empty());
        if let Some(e) = &otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        let security = super::security::validate(super::security::RawSecurity {
            credentials: self.credentials,
            tls_cert: self.server.tls_cert.as_deref(),
            tls_key: self.server.tls_key.as_deref(),
            client_ca: self.server.client_ca.as_deref(),
            allow_unauthenticated: self.server.allow_unauthenticated,
            listen: [self.server.grpc_listen, self.server.http_listen],
        })?;
        Ok(Config {
            security,
            grpc_listen: self.server.grpc_listen,
            http_listen: self.server.http_listen,
            worker_threads: self.server.worker_threads,
            otlp_endpoint,
            store: StoreConfig {
                path: store.path,
                session_idle_ttl: store.session_idle_ttl,
                sweep_interval: store.sweep_interval,
                cache_capacity_bytes: store.cache_capacity_mb * 1024 * 1024,
                session_cache_bytes: usize::try_from(store.session_cache_mb)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(1024 * 1024),
                redis,
            },
            routing: RoutingConfig {
                default_profile: routing.default_profile,
                connect_timeout: routing.connect_timeout,
                first_byte_timeout: routing.first_byte_timeout,
                idle_timeout: routing.idle_timeout,
                max_attempts: routing.max_attempts,
                default_latency: routing.default_latency,
                pinned_unavailable,
                explore_every,
            },
            catalog,
            profiles,
            divergence: self.divergence,
            health,
            budgets,
            load,
        })
    }
}

fn validate_provider(i: usize, p: super::RawProvider) -> Result<Provider, ConfigError> {
    let key = |field: &str| format!("providers[{i}].{field}");
    if p.name.trim().is_empty() {
        return Err(invalid(key("name"), "must not be empty"));
    }
    let api = match p.api {
        super::Api::Openai => WireFormat::Openai,
        super::Api::Anthropic => WireFormat::Anthropic,
    };
    if p.responses && api != WireFormat::Openai {
        return Err(invalid(
            key("responses"),
            "only an `api = \"openai\"` provider can serve the Responses API",
        ));
    }
    if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
        return Err(invalid(
            key("base_url"),
            "must start with http:// or https://",
        ));
    }
    if p.keys.is_empty() {
        return Err(invalid(key("keys"), "needs at least one key reference"));
    }
    let mut keys = Vec::with_capacity(p.keys.len());
    for (j, k) in p.keys.into_iter().enumerate() {
        let valid = !k.key_ref.is_empty()
            && k.key_ref
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(invalid(
                format!("providers[{i}].keys[{j}].ref"),
                "must be a non-empty name of letters, digits, `-`, `_` or `.` (a reference, never the secret)",
            ));
        }
        for (field, v) in [
            ("rpm", k.rpm),
            ("tpm", k.tpm),
            ("max_in_flight", k.max_in_flight),
        ] {
            if v == Some(0) {
                return Err(invalid(
                    format!("providers[{i}].keys[{j}].{field}"),
                    "must be > 0 (leave it out for no limit)",
                ));
            }
        }
        keys.push(Key {
            key_ref: k.key_ref,
            rpm: k.rpm,
            tpm: k.tpm,
            max_in_flight: k.max_in_flight,
        });
    }
    let gen_ai_name = match p.gen_ai_provider_name {
        None => keel::semconv::provider::of_wire_format(api).to_owned(),
        Some(n) if valid_gen_ai_name(&n) => n,
        Some(_) => {
            return Err(invalid(
                key("gen_ai_provider_name"),
                "must be a non-empty name of lowercase letters, digits, `.` or `_` (e.g. \"azure.ai.openai\")",
            ));
        }
    };
    Ok(Provider {
        name: p.name,
        api,
        base_url: p.base_url.trim_end_matches('/').to_owned(),
        keys,
        responses: p.responses,
        gen_ai_name,
    })
}

/// An OpenTelemetry `gen_ai.provider.name` as the conventions spell them.
fn valid_gen_ai_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'))
}

pub(super) fn validate_budgets(table: &str, b: &RawBudgets) -> Result<Caps, ConfigError> {
    for (field, v) in [
        ("per_conversation_usd", b.per_conversation_usd),
        ("per_tenant_usd_per_day", b.per_tenant_usd_per_day),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(invalid(
                format!("{table}.{field}"),
                format!("must be an amount > 0 (leave it out for no cap), got {v}"),
            ));
        }
    }
    if b.per_conversation_turns == Some(0) {
        return Err(invalid(
            format!("{table}.per_conversation_turns"),
            "must be >= 1 (leave it out for no cap)",
        ));
    }
    Ok(Caps {
        per_conversation_usd: b.per_conversation_usd,
        per_conversation_turns: b.per_conversation_turns,
        per_tenant_usd_per_day: b.per_tenant_usd_per_day,
    })
}

fn validate_load(l: &RawLoad) -> Result<LoadConfig, ConfigError> {
    if !(0.0..1.0).contains(&l.min_headroom) {
        return Err(invalid("load.min_headroom", "must be in [0, 1)"));
    }
    if !(0.0..1.0).contains(&l.reserve) {
        return Err(invalid("load.reserve", "must be in [0, 1)"));
    }
    if l.retry_after.is_zero() {
        return Err(invalid("load.retry_after", "must be > 0"));
    }
    if l.in_flight_timeout.is_zero() {
        return Err(invalid("load.in_flight_timeout", "must be > 0"));
    }
    Ok(LoadConfig {
        max_in_flight_per_key: l.max_in_flight_per_key,
        min_headroom: l.min_headroom,
        reserve: l.reserve,
        retry_after: l.retry_after,
        in_flight_timeout: l.in_flight_timeout,
    })
}

/// The Redis settings of `backend = "redis"` (None for sled).
fn redis_settings(
    store: &super::RawStore,
) -> Result<Option<crate::store::RedisSettings>, ConfigError> {
    if store.backend != crate::store::Backend::Redis {
        if store.redis_url.is_some() || store.redis_master.is_some() {
            return Err(invalid(
                "store.backend",
                "must be \"redis\" when redis_url or redis_master is set",
            ));
        }
        return Ok(None);
    }
    let Some(url) = store.redis_url.clone() else {
        return Err(invalid(
            "store.redis_url",
            "is required with backend = \"redis\"",
        ));
    };
    let settings = crate::store::RedisSettings {
        url,
        password_env: store.redis_password_env.clone(),
        sentinels: store.redis_sentinel.clone(),
        master: store.redis_master.clone(),
        ca_file: store.redis_ca_file.clone(),
        durability: store.durability,
        timeout: store.redis_timeout,
    };
    settings
        .validate()
        .map_err(|(key, reason)| invalid(key, reason))?;
    Ok(Some(settings))
}
