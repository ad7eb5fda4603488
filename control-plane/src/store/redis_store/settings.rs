//! `[store]` keys of the Redis backend, validated.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Which store holds the sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Embedded, one control plane (the default).
    #[default]
    Sled,
    /// Shared by any number of control-plane replicas.
    Redis,
}

/// What the store must promise before a control plane starts on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// A pin the app was told about survives a crash of the store's
    /// primary: `appendfsync always`, or `min-replicas-to-write` >= 1 (then
    /// every pin waits for a replica with `WAIT`). Refuse to start otherwise.
    #[default]
    Strict,
    /// Start on whatever the server promises; a pin may be lost with the
    /// primary (and is then announced as a reset where a sidecar knows it).
    BestEffort,
}

/// How to reach Redis (or Valkey).
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user@]host:port/db` or `rediss://` for TLS. With Sentinel,
    /// only its scheme, user and db are used.
    pub url: String,
    /// Environment variable holding the password (never in the file).
    pub password_env: Option<String>,
    /// Sentinels (`host:port`); empty: connect to `url` directly.
    pub sentinels: Vec<String>,
    /// The primary's name at the Sentinels.
    pub master: Option<String>,
    /// PEM file of the CA that signed the server's certificate (`rediss://`
    /// to a private CA); None: the system's trust store.
    pub ca_file: Option<PathBuf>,
    pub durability: Durability,
    /// Longest a store call may take before `Route` fails (fail fast: the
    /// sidecar fails static).
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password despite the docs: never printed.
        f.debug_struct("RedisSettings")
            .field("password_env", &self.password_env)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("ca_file", &self.ca_file)
            .field("durability", &self.durability)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// Checks the keys that belong together; `Err((key, reason))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "redis" | "rediss") || !self.url.contains("://") {
            return Err((
                "store.redis_url",
                "must start with redis:// or rediss://".into(),
            ));
        }
        if let Some(rest) = self.url.split("://").nth(1)
            && let Some((auth, _)) = rest.split_once('@')
            && auth.contains(':')
        {
            return Err((
                "store.redis_url",
                "must not carry a password; name an environment variable in store.redis_password_env"
                    .into(),
            ));
        }
        match (self.sentinels.is_empty(), &self.master) {
            (false, None) => {
                return Err((
                    "store.redis_master",
                    "is required with store.redis_sentinel".into(),
                ));
            }
            (true, Some(_)) => {
                return Err((
                    "store.redis_sentinel",
                    "is required with store.redis_master".into(),
                ));
            }
            _ => {}
        }
        if let Some(ca) = &self.ca_file {
            if !self.url.starts_with("rediss://") {
                return Err((
                    "store.redis_ca_file",
                    "needs a rediss:// store.redis_url".into(),
                ));
            }
            if !self.sentinels.is_empty() {
                return Err((
                    "store.redis_ca_file",
                    "is not supported with store.redis_sentinel yet; add the CA to the \
                     system trust store instead"
                        .into(),
                ));
            }
            if !ca.is_file() {
                return Err((
                    "store.redis_ca_file",
                    format!("`{}` is not a readable file", ca.display()),
                ));
            }
        }
        if let Some(var) = &self.password_env
            && std::env::var_os(var).is_none()
        {
            return Err((
                "store.redis_password_env",
                format!("names `{var}`, which is not set"),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("store.redis_timeout", "must be > 0".into()));
        }
        Ok(())
    }
}
