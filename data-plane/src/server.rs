//! Runs the sidecar: builds the shared state, serves HTTP on a listener until
//! shutdown, drains in-flight requests within the grace period, then lets the
//! reporter deliver what is queued.

use std::{future::Future, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    bare_errors::JsonBareErrors, config::SidecarConfig, handler, keys::Keys, listener::Acceptor,
    report, route::RouteClient, state::AppState, upstream,
};

/// Errors that stop the sidecar before it serves.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    ControlPlane(#[from] crate::control_plane::ChannelError),
    #[error(transparent)]
    KeysFile(#[from] crate::keys::KeysFileError),
    #[error("--{flag}: {error}")]
    Name {
        flag: &'static str,
        error: keel::names::NameError,
    },
    #[error("cannot build the upstream http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: SidecarConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    for (flag, name) in [
        ("tenant", Some(config.tenant.as_str())),
        ("default-model", config.default_model.as_deref()),
    ] {
        keel::names::check(flag, name.unwrap_or_default())
            .map_err(|error| StartError::Name { flag, error })?;
    }
    let route = Arc::new(RouteClient::new(
        crate::control_plane::channels(&config)?,
        crate::route_stream::Wait {
            silence: config.route_timeout,
            longest: config.route_wait_max,
        },
        config.default_model.clone(),
        config.route_rpc,
    ));
    let keys = Keys::load(config.keys_file.as_deref())?;
    let http = upstream::Clients::new(config.connect_timeout)?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (reporter, deliver) = report::reporter(
        Arc::clone(&route),
        config.report_queue,
        Arc::clone(&metrics),
    );
    route.report_orphans_to(reporter.downgrade());
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
        keys,
        reporter,
        cooldowns: Default::default(),
        metrics,
        in_flight: Arc::new(tokio::sync::Semaphore::new(max_concurrency)),
        fingerprints: Default::default(),
        facts: Default::default(),
        chains: Default::default(),
        runs: Default::default(),
        main_lines: Default::default(),
    });

    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder(&state.config));
    let mut acceptor = Acceptor::new(listener, state.config.max_connections);
    tokio::pin!(shutdown);
    tracing::info!(addr = ?acceptor.local_addr().ok(), "sidecar serving");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            (stream, slot) = acceptor.accept() => {
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let (builder, watcher) = (Arc::clone(&builder), graceful.watcher());
                tokio::spawn(async move {
                    if !crate::listener::speaks_within(&stream, state.config.header_timeout).await {
                        return;
                    }
                    let service = service_fn(move |req| handler::handle(Arc::clone(&state), req));
                    let io = TokioIo::new(JsonBareErrors::new(stream));
                    let conn = watcher.watch(builder.serve_connection(io, service));
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(acceptor);
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

/// HTTP/1 and HTTP/2 with deadlines: a request's headers must arrive within
/// `--header-timeout` (the same deadline closes a keep-alive connection
/// left idle, since hyper starts it when it waits for the next request) and
/// fit in `--max-header-bytes` (431 beyond); HTTP/2 peers that stop
/// answering pings are dropped.
fn http_builder(config: &SidecarConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
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
