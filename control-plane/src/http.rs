//! The control plane's plain HTTP port: `/healthz` for orchestrators and
//! scripts (always open), `/metrics` (Prometheus text) for monitoring and
//! `/ui/` for people (console/); both need a `viewer` or `admin` token when
//! credentials are configured.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;

use crate::{
    auth::{AuthError, Credentials, Need},
    metrics,
    router::RouterState,
};

async fn handle(
    req: Request<Incoming>,
    state: &RouterState,
    credentials: &Credentials,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ui" || req.uri().path().starts_with("/ui/") {
        return Ok(crate::console::handle(req, state, credentials).await);
    }
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        (&Method::GET, "/metrics") => {
            if let Err(e) = credentials.check_http(req.headers(), Need::Read) {
                return Ok(refusal(&e));
            }
            (
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                Bytes::from(render_metrics(state)),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body))
        .unwrap_or_default())
}

/// Live gauges set from the state, then every family.
fn render_metrics(state: &RouterState) -> String {
    let catalog = &state.config.catalog;
    for (i, d) in catalog.deployments().iter().enumerate() {
        state.metrics.breaker(
            &d.name,
            &catalog.provider_of(d).name,
            state.signals.breaker_state(i),
        );
    }
    state.metrics.render()
}

/// The answer to a refused HTTP request: 401 (with `WWW-Authenticate`) or
/// 403, and a JSON body saying why.
pub fn refusal(e: &AuthError) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": {
        "type": if matches!(e, AuthError::Unauthenticated) { "unauthenticated" } else { "permission_denied" },
        "message": e.to_string(),
    }});
    let mut response = Response::builder()
        .status(e.http_status())
        .header("content-type", "application/json");
    if matches!(e, AuthError::Unauthenticated) {
        response = response.header("www-authenticate", "Bearer");
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// Serves `/healthz` and `/metrics` until `shutdown` resolves, then drains connections.
pub async fn serve_http(
    listener: TcpListener,
    state: Arc<RouterState>,
    credentials: Arc<Credentials>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // At the descriptor limit accept fails at once, again
                        // and again: pause instead of spinning.
                        tracing::debug!(error = %e, "http accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let credentials = Arc::clone(&credentials);
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    let credentials = Arc::clone(&credentials);
                    async move { handle(req, &state, &credentials).await }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    graceful.shutdown().await;
}
