//! Sidecar settings: flags, each also read from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// Keel sidecar: OpenAI and Anthropic HTTP APIs in front of the app, routed
/// by the Keel control plane.
#[derive(Debug, Clone, Parser)]
#[command(name = "keel-sidecar", version)]
pub struct SidecarConfig {
    /// Address to serve the app on.
    #[arg(long, env = "KEEL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// gRPC URL of the control plane, or several comma-separated (replicas
    /// on one shared store): `Route` goes to them in turn and moves away
    /// from one that fails; the sidecar fails static only when none answers.
    #[arg(
        long,
        env = "KEEL_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: String,
    /// Bearer token sent to the control plane on every call (its SHA-256 is
    /// in the control plane's `[[credentials]]`).
    #[arg(long, env = "KEEL_CONTROL_PLANE_TOKEN", hide_env_values = true)]
    pub control_plane_token: Option<String>,
    /// PEM CA that signed the control plane's certificate (an `https://`
    /// URL then trusts only it; without it the system's roots).
    #[arg(long, env = "KEEL_CONTROL_PLANE_CA")]
    pub control_plane_ca: Option<PathBuf>,
    /// PEM client certificate for a control plane with mutual TLS.
    #[arg(long, env = "KEEL_CONTROL_PLANE_CERT", requires = "control_plane_key")]
    pub control_plane_cert: Option<PathBuf>,
    /// PEM key of `--control-plane-cert`.
    #[arg(long, env = "KEEL_CONTROL_PLANE_KEY", requires = "control_plane_cert")]
    pub control_plane_key: Option<PathBuf>,
    /// Tenant that scopes this host's conversation ids.
    #[arg(long, env = "KEEL_TENANT", default_value = keel::DEFAULT_TENANT)]
    pub tenant: String,
    /// Catalog model for new conversations while the control plane is
    /// unreachable (should meet the AGENT quality floor).
    #[arg(long, env = "KEEL_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// Most chat requests in flight (open streams included); above it the
    /// app gets 503 with `Retry-After` at once instead of queueing.
    #[arg(long, env = "KEEL_MAX_CONCURRENCY", default_value_t = 4096)]
    pub max_concurrency: usize,
    /// Deadline of a `Route` call: when the control plane stays silent this
    /// long (no answer, no heartbeat on the stream), it counts as gone and
    /// the sidecar fails static.
    #[arg(long, env = "KEEL_ROUTE_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub route_timeout: Duration,
    /// Longest wait for a `Route` answer while the control plane shows it is
    /// there (answers or heartbeats on the stream); past it the request is
    /// shed with 429 and `Retry-After` (overload), never routed degraded.
    #[arg(long, env = "KEEL_ROUTE_WAIT_MAX", default_value = "1s", value_parser = humantime::parse_duration)]
    pub route_wait_max: Duration,
    /// How `Route` is asked: `stream` (one long-lived `RouteStream`, unary
    /// `Route` if the control plane lacks it) or `unary` (one call each).
    #[arg(long, env = "KEEL_ROUTE_RPC", value_enum, default_value = "stream")]
    pub route_rpc: crate::route_stream::RouteRpc,
    /// Most connections open at once; further ones wait in the kernel's
    /// backlog until one closes.
    #[arg(long, env = "KEEL_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Deadline for a request's headers, and for an idle keep-alive
    /// connection's next request.
    #[arg(long, env = "KEEL_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Most bytes of request line and headers (431 above).
    #[arg(long, env = "KEEL_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Longest silence while a request body arrives (408 after it); the
    /// request's concurrency slot is released then.
    #[arg(long, env = "KEEL_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_idle_timeout: Duration,
    /// Provider keys as `KEEL_KEY_<REF>=secret` lines (they win over the
    /// environment); refused unless only its owner can read it.
    #[arg(long, env = "KEEL_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
    /// Largest request body accepted (413 above).
    #[arg(long, env = "KEEL_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// If set, apps must present this key (`Authorization: Bearer` or
    /// `x-api-key`). It is never forwarded to a provider.
    #[arg(long, env = "KEEL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// OpenTelemetry collector base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`):
    /// spans go to `{URL}/v1/traces` over OTLP/HTTP. Off when unset (unless
    /// the `OTEL_EXPORTER_OTLP_*` variables are set).
    #[arg(long, env = "KEEL_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Upstream connect timeout (unless the decision sets one).
    #[arg(long, env = "KEEL_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Time to the provider's response head (unless the decision sets one).
    #[arg(long, env = "KEEL_FIRST_BYTE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub first_byte_timeout: Duration,
    /// Longest silence between streamed events (unless the decision sets one).
    #[arg(long, env = "KEEL_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Grace period for in-flight requests on shutdown.
    #[arg(long, env = "KEEL_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Outcomes held while the control plane is unreachable.
    #[arg(long, env = "KEEL_REPORT_QUEUE", default_value_t = 10_000)]
    pub report_queue: usize,
    /// How often the catalog snapshot is refreshed.
    #[arg(long, env = "KEEL_CATALOG_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    pub catalog_refresh: Duration,
    /// Messages at the tail of the history fingerprinted each turn for loop
    /// detection (0 turns it off).
    #[arg(long, env = "KEEL_FINGERPRINT_WINDOW", default_value_t = keel::fingerprint::DEFAULT_WINDOW)]
    pub fingerprint_window: usize,
    /// `max_tokens` sent to Anthropic targets when an OpenAI request has none.
    #[arg(long, env = "KEEL_DEFAULT_MAX_TOKENS", default_value_t = 4096)]
    pub default_max_tokens: u32,
    /// Tokio worker threads. One by default, like other sidecar proxies: it
    /// shares the box with the app, and one worker spends less CPU per
    /// request and less memory than one per core (no cross-thread wakeups or
    /// work stealing). Raise it for a sidecar that must serve more than one
    /// core's worth of requests.
    #[arg(long, env = "KEEL_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: u16,
}
