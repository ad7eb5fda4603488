//! The connection to Redis: one multiplexed, reconnecting connection
//! (`ConnectionManager`) to the primary, found directly from the URL or
//! through Sentinel (asked again after an error, so a failover is
//! followed); and the start-up check of what the server promises.

use std::{collections::HashMap, sync::RwLock, time::Duration};

use redis::{
    Client, ConnectionInfo, IntoConnectionInfo, RedisError, TlsCertificates, TlsMode,
    aio::{ConnectionManager, ConnectionManagerConfig},
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

use super::super::StoreError;
use super::settings::{Durability, RedisSettings};

/// What makes a pin durable on this server, found at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// `appendfsync always`: a write is on the primary's disk before it is
    /// answered.
    Fsync,
    /// `min-replicas-to-write` = n: a pin is acknowledged only after `WAIT n`.
    Replicas(u32),
    /// Neither (allowed by `durability = "best-effort"`).
    None,
}

pub struct Link {
    conn: RwLock<ConnectionManager>,
    /// With Sentinel: asked for the primary again after a failure.
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    timeout: Duration,
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Reconnects in the background; a call never waits for many tries.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(200))
}

/// The server's address and credentials from the settings.
fn connection_info(s: &RedisSettings) -> Result<ConnectionInfo, StoreError> {
    let info = s
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| StoreError::Unavailable(format!("store.redis_url: {e}")))?;
    match &s.password_env {
        Some(var) => {
            let password = std::env::var(var).map_err(|_| {
                StoreError::Unavailable(format!("store.redis_password_env: `{var}` is not set"))
            })?;
            let redis = info.redis_settings().clone().set_password(password);
            Ok(info.set_redis_settings(redis))
        }
        None => Ok(info),
    }
}

impl Link {
    /// Connects (or fails within the timeout).
    pub async fn connect(s: &RedisSettings) -> Result<Self, StoreError> {
        let info = connection_info(s)?;
        let tls = s.url.starts_with("rediss://");
        if tls {
            // rustls needs a process-wide crypto provider; an error means
            // one is installed already (which is as good).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (client, sentinel) = match &s.master {
            None => (direct_client(info, s)?, None),
            Some(master) => {
                let scheme = if tls { "rediss" } else { "redis" };
                let nodes: Vec<String> = s
                    .sentinels
                    .iter()
                    .map(|a| format!("{scheme}://{a}"))
                    .collect();
                let mut node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info.redis_settings().clone());
                if tls {
                    node = node.set_tls_mode(TlsMode::Secure);
                }
                let mut sentinel =
                    SentinelClient::build(nodes, master, Some(node), SentinelServerType::Master)?;
                let client = within(s.timeout, sentinel.async_get_client()).await?;
                (client, Some(tokio::sync::Mutex::new(sentinel)))
            }
        };
        let conn = within(
            s.timeout,
            ConnectionManager::new_with_config(client, manager_config(s.timeout)),
        )
        .await?;
        Ok(Self {
            conn: RwLock::new(conn),
            sentinel,
            timeout: s.timeout,
        })
    }

    /// The connection (a cheap clone of a shared handle).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// After a failed call: with Sentinel, asks for the primary again and
    /// reconnects when it moved (a failover, or a primary that became a
    /// replica and answers READONLY).
    pub async fn recover(&self, e: &RedisError) {
        let Some(sentinel) = &self.sentinel else {
            return;
        };
        let read_only = e.to_string().contains("READONLY");
        if !(read_only || e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) {
            return;
        }
        let mut sentinel = sentinel.lock().await;
        let found = within(self.timeout, sentinel.async_get_client()).await;
        let client = match found {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, "sentinel names no primary"),
        };
        match within(
            self.timeout,
            ConnectionManager::new_with_config(client, manager_config(self.timeout)),
        )
        .await
        {
            Ok(conn) => {
                tracing::warn!("session store: reconnected to the primary Sentinel names");
                *self.conn.write().unwrap_or_else(|e| e.into_inner()) = conn;
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach the primary Sentinel names"),
        }
    }

    /// What the server promises for a write it acknowledged; an error when
    /// that is not enough for `wanted`.
    pub async fn check_durability(&self, wanted: Durability) -> Result<Guarantee, StoreError> {
        let found = self.read_guarantee().await;
        match (found, wanted) {
            (Ok(Guarantee::None), Durability::Strict) => Err(StoreError::Durability(
                "the Redis server may lose an acknowledged pin: it has neither \
                 `appendonly yes` with `appendfsync always` nor `min-replicas-to-write` >= 1. \
                 Set one of them (see the README's deployment section), or set \
                 [store] durability = \"best-effort\" to start anyway"
                    .into(),
            )),
            (Err(e), Durability::Strict) => Err(StoreError::Durability(format!(
                "cannot read the Redis server's persistence settings ({e}); \
                 allow CONFIG GET, or set [store] durability = \"best-effort\""
            ))),
            (Err(e), Durability::BestEffort) => {
                tracing::warn!(error = %e, "cannot read Redis persistence settings; best effort");
                Ok(Guarantee::None)
            }
            (Ok(g), _) => Ok(g),
        }
    }

    async fn read_guarantee(&self) -> Result<Guarantee, StoreError> {
        let mut conn = self.conn();
        let mut get = async |name: &str| -> Result<String, StoreError> {
            let pairs: HashMap<String, String> = within(
                self.timeout,
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut conn),
            )
            .await?;
            Ok(pairs.get(name).cloned().unwrap_or_default())
        };
        let aof = get("appendonly").await?;
        let fsync = get("appendfsync").await?;
        let replicas: u32 = get("min-replicas-to-write").await?.parse().unwrap_or(0);
        // Replicas first: a failover (Sentinel) keeps only what a replica
        // has, whatever the old primary's disk holds.
        Ok(if replicas > 0 {
            Guarantee::Replicas(replicas)
        } else if aof == "yes" && fsync == "always" {
            Guarantee::Fsync
        } else {
            Guarantee::None
        })
    }
}

/// A client of the server at the URL, trusting `ca_file` when one is set.
fn direct_client(info: ConnectionInfo, s: &RedisSettings) -> Result<Client, StoreError> {
    let Some(path) = &s.ca_file else {
        return Ok(Client::open(info)?);
    };
    let root_cert = std::fs::read(path).map_err(|e| {
        StoreError::Unavailable(format!("store.redis_ca_file `{}`: {e}", path.display()))
    })?;
    let certs = TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    Ok(Client::build_with_tls(info, certs)?)
}

/// Runs a Redis call with a deadline.
pub async fn within<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(StoreError::from),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
