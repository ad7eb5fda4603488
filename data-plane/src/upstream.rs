//! The upstream hop: one pooled HTTP client, one attempt per target, and the
//! classification of failures that fallback logic needs (where it came from,
//! whether another target may help).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use keel::pb;

use crate::{format::Format, keys::Secret, passthrough::Passthrough};

/// Version sent to Anthropic targets.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Most distinct connect timeouts given their own client; decisions with
/// others use the default one.
const MAX_CLIENTS: usize = 4;

/// The pooled upstream clients: one per connect timeout in use (reqwest sets
/// the connect timeout per client, not per request). Decisions carry the
/// control plane's `[routing] connect_timeout`, nearly always one value, so
/// nearly always one client besides the default.
pub struct Clients {
    default: (Duration, reqwest::Client),
    others: std::sync::Mutex<Vec<(Duration, reqwest::Client)>>,
}

impl Clients {
    /// The default client, with this sidecar's `--connect-timeout`.
    pub fn new(connect_timeout: Duration) -> reqwest::Result<Self> {
        Ok(Self {
            default: (connect_timeout, client(connect_timeout)?),
            others: Default::default(),
        })
    }

    /// The client that connects within `connect_timeout` (a cheap handle).
    pub fn get(&self, connect_timeout: Duration) -> reqwest::Client {
        if connect_timeout == self.default.0 {
            return self.default.1.clone();
        }
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = others.iter().find(|(t, _)| *t == connect_timeout) {
            return c.clone();
        }
        if others.len() < MAX_CLIENTS
            && let Ok(c) = client(connect_timeout)
        {
            others.push((connect_timeout, c.clone()));
            return c;
        }
        self.default.1.clone()
    }
}

/// Builds a pooled client: no redirects, no proxy, no decompression, no
/// total timeout (streams may run long; first-byte and idle timeouts apply).
pub fn client(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build()
}

/// Why an attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// This host has no secret for the target's key reference.
    MissingKey { env_var: String },
    /// Could not connect to the provider.
    Connect(String),
    /// No response head within the first-byte timeout.
    Timeout,
    /// 429 from the provider; about the key.
    RateLimited {
        retry_after: Option<u64>,
        body: Bytes,
        headers: http::HeaderMap,
    },
    /// 401/403 from the provider: it refused the key (revoked, wrong
    /// account); about the key, so the next key may serve.
    KeyRejected { status: StatusCode, body: Bytes },
    /// 5xx from the provider; about the provider.
    Server { status: StatusCode, body: Bytes },
    /// Another 4xx: the request itself is at fault, no other target helps.
    Client { status: StatusCode, body: Bytes },
}

impl AttemptError {
    /// Error class for reports.
    pub fn class(&self) -> &'static str {
        match self {
            Self::MissingKey { .. } => "missing_key",
            Self::Connect(_) => "connect",
            Self::Timeout => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::KeyRejected { .. } => "key_rejected",
            Self::Server { .. } => "upstream_5xx",
            Self::Client { .. } => "upstream_4xx",
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            Self::RateLimited { .. } => 429,
            Self::Server { status, .. }
            | Self::Client { status, .. }
            | Self::KeyRejected { status, .. } => u32::from(status.as_u16()),
            _ => 0,
        }
    }
}

/// The URL a target's requests go to.
pub fn url(target: &pb::Target) -> String {
    match Format::of_target(target.wire_format) {
        Format::OpenAi => format!("{}/chat/completions", target.base_url),
        Format::Anthropic => format!("{}/v1/messages", target.base_url),
    }
}

/// Sends one attempt to `url` (the target's endpoint, see [`url`]) and waits
/// for the response head; `pass` carries the app's API headers and query
/// string when the target speaks the app's API (passthrough.rs).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    client: &Clients,
    connect_timeout: Duration,
    url: &str,
    target: &pb::Target,
    secret: &Secret,
    body: Bytes,
    first_byte_timeout: Duration,
    pass: Option<&Passthrough>,
) -> Result<reqwest::Response, AttemptError> {
    let url = match pass {
        Some(p) => p.url(url.to_owned()),
        None => url.to_owned(),
    };
    let mut req = client
        .get(connect_timeout)
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json");
    match Format::of_target(target.wire_format) {
        Format::OpenAi => {
            let mut v =
                HeaderValue::try_from(format!("Bearer {}", secret.expose())).map_err(|_| {
                    AttemptError::Connect("provider key is not a valid header value".into())
                })?;
            v.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, v);
        }
        Format::Anthropic => {
            let mut v = HeaderValue::try_from(secret.expose()).map_err(|_| {
                AttemptError::Connect("provider key is not a valid header value".into())
            })?;
            v.set_sensitive(true);
            let version = pass
                .and_then(Passthrough::anthropic_version)
                .cloned()
                .unwrap_or(HeaderValue::from_static(ANTHROPIC_VERSION));
            let mut headers = http::HeaderMap::new();
            if let Some(p) = pass {
                p.add_betas(&mut headers);
            }
            req = req
                .header("x-api-key", v)
                .header("anthropic-version", version)
                .headers(headers);
        }
    }
    let resp = match tokio::time::timeout(first_byte_timeout, req.body(body).send()).await {
        Err(_) => return Err(AttemptError::Timeout),
        Ok(Err(e)) if e.is_timeout() => return Err(AttemptError::Timeout),
        // reqwest's error text names the URL, never headers: safe to relay.
        Ok(Err(e)) => return Err(AttemptError::Connect(e.without_url().to_string())),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = tokio::time::timeout(first_byte_timeout, resp.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Err(match status.as_u16() {
        429 => AttemptError::RateLimited {
            retry_after,
            body,
            headers,
        },
        401 | 403 => AttemptError::KeyRejected { status, body },
        500..=599 => AttemptError::Server { status, body },
        _ => AttemptError::Client { status, body },
    })
}

/// Rate-limit headers worth reporting, names in lower case.
pub fn rate_limit_headers(headers: &http::HeaderMap) -> std::collections::HashMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("x-ratelimit-")
                || n.starts_with("anthropic-ratelimit-")
                || n == "retry-after"
        })
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Milliseconds since `start`, saturating.
pub fn ms_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_connect_timeout_bounded() {
        let c = Clients::new(Duration::from_secs(5)).unwrap();
        let _ = c.get(Duration::from_secs(5));
        for ms in 1..=10 {
            let _ = c.get(Duration::from_millis(ms));
        }
        assert_eq!(c.others.lock().unwrap().len(), MAX_CLIENTS);
        let _ = c.get(Duration::from_millis(1));
        assert_eq!(c.others.lock().unwrap().len(), MAX_CLIENTS, "reused");
    }
}
