//! Runs the sidecar: builds the shared state, serves HTTP on a listener until
//! shutdown, drains in-flight requests within the grace period, then lets the
//! reporter deliver what is queued.

use std::{future::Future, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    config::SidecarConfig, handler, keys::Keys, report, route::RouteClient, state::AppState,
    upstream,
};

/// Errors that stop the sidecar before it serves.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    ControlPlane(#[from] crate::control_plane::ChannelError),
    #[error("cannot build the upstream http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: SidecarConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let route = Arc::new(RouteClient::new(
        crate::control_plane::channel(&config)?,
        config.route_timeout,
        config.default_model.clone(),
        config.route_rpc,
    ));
    let http = upstream::client(config.connect_timeout)?;
    let (reporter, deliver) = report::reporter(Arc::clone(&route), config.report_queue);
    let reporter_task = tokio::spawn(deliver);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let refresher = tokio::spawn(refresh_catalog(
        Arc::clone(&route),
        config.catalog_refresh,
        stop_rx.clone(),
    ));
    let grace = config.shutdown_grace;
    let max_concurrency = config.max_concurrency.max(1);
    let state = Arc::new(AppState {
        config,
        route,
        http,
        keys: Keys::default(),
        reporter,
        cooldowns: Default::default(),
        metrics: Default::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(max_concurrency)),
        fingerprints: Default::default(),
    });

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    tracing::info!(addr = ?listener.local_addr().ok(), "sidecar serving");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let service = service_fn(move |req| handler::handle(Arc::clone(&state), req));
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(grace_secs = grace.as_secs(), "draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period passed with requests still in flight");
    }
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    drop(state);
    // The reporter task ends once every handle is gone; give it a bounded
    // time to deliver what is queued.
    if tokio::time::timeout(Duration::from_secs(10), reporter_task)
        .await
        .is_err()
    {
        tracing::warn!("reports still undelivered at exit");
    }
    let _ = stop_rx.changed().await;
    Ok(())
}

async fn refresh_catalog(
    route: Arc<RouteClient>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(status) = route.refresh_catalog().await {
            tracing::debug!(code = ?status.code(), "catalog refresh failed");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
