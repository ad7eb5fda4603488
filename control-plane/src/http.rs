//! The control plane's plain HTTP port: `/healthz` for orchestrators and
//! scripts, `/metrics` (Prometheus text) for monitoring, `/ui/` for people
//! (console/).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;

use crate::{metrics, router::RouterState};

async fn handle(
    req: Request<Incoming>,
    state: &RouterState,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ui" || req.uri().path().starts_with("/ui/") {
        return Ok(crate::console::handle(req, state).await);
    }
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            Bytes::from(render_metrics(state)),
        ),
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

/// Serves `/healthz` and `/metrics` until `shutdown` resolves, then drains connections.
pub async fn serve_http(
    listener: TcpListener,
    state: Arc<RouterState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { handle(req, &state).await }
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
