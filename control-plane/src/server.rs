//! Wires the control plane together: gRPC (Router, Admin, health,
//! reflection) on one listener, `/healthz` on another, and the session
//! sweeper, all stopped by one shutdown signal.

use std::{future::Future, sync::Arc};

use keel::pb::{admin_server::AdminServer, router_server::RouterServer};
use tokio::{net::TcpListener, sync::watch};
use tonic::{service::interceptor::InterceptedService, transport::server::TcpIncoming};

use crate::{
    admin::AdminService,
    auth::{Authenticate, Credentials},
    config::Config,
    router::{RouterService, RouterState},
    store::{SessionStore, SledStore, run_sweeper},
    store_guard,
};

/// Errors that stop the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Why the store was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Damaged(#[from] store_guard::Damaged),
}

/// An open store and, for sled, its seal (close it after the store's last
/// flush). Redis keeps its own durability (checked at open) and an epoch
/// that reveals a store that lost its data.
pub type OpenStore = (Arc<dyn SessionStore>, Option<store_guard::Seal>);

/// Opens the store named by the config: Redis when it names one, else sled,
/// refusing a damaged sled store (see [`store_guard`]); `fresh` moves a
/// damaged one aside instead.
pub fn open_store(config: &Config, fresh: bool) -> Result<OpenStore, OpenStoreError> {
    if let Some(redis) = &config.store.redis {
        let store = crate::store::RedisStore::open(redis, config.store.session_idle_ttl)?;
        return Ok((Arc::new(store), None));
    }
    match open_checked(config) {
        Err(OpenStoreError::Damaged(damaged)) if fresh => {
            store_guard::move_aside(&damaged)?;
            open_checked(config)
        }
        other => other,
    }
}

fn open_checked(config: &Config) -> Result<OpenStore, OpenStoreError> {
    let path = &config.store.path;
    let expect = store_guard::before_open(path)?;
    let store = SledStore::open_with_cache(
        path,
        config.store.cache_capacity_bytes,
        config.store.session_idle_ttl,
        config.store.session_cache_bytes,
    )
    .map_err(|e| match store_guard::unopenable(path, expect, &e) {
        Some(damaged) => OpenStoreError::Damaged(damaged),
        None => OpenStoreError::Store(e),
    })?;
    let seal = store_guard::after_open(store.sled(), path, expect)?;
    Ok((Arc::new(store), Some(seal)))
}

/// Serves until `shutdown` resolves, then flushes the store.
pub async fn serve(
    grpc: TcpListener,
    http: TcpListener,
    config: Config,
    store: Arc<dyn SessionStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let sweeper = tokio::spawn(run_sweeper(
        Arc::clone(&store),
        config.store.sweep_interval,
        stopped(),
    ));
    let (state, decision_writer) = RouterState::new(config, Arc::clone(&store));
    let state = Arc::new(state);
    // Replicas on a shared store: parked keys and caps from the others.
    let sync = tokio::spawn(crate::router::run_sync(Arc::clone(&state), stopped()));
    let (writer_stop_tx, writer_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Stopped after the gRPC server, so the last Route's record is written.
    let decision_writer = tokio::spawn(decision_writer.run(async move {
        let _ = writer_stop_rx.await;
    }));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RouterServer<RouterService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(keel::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let credentials = Arc::new(Credentials::new(&state.config.security.credentials));
    warn_if_exposed(&state.config, &credentials);
    let authenticate = Authenticate(Arc::clone(&credentials));
    let http_task = tokio::spawn(crate::http::serve_http(
        http,
        Arc::clone(&state),
        credentials,
        stopped(),
    ));
    let grpc_stopped = stopped();
    let streams = Arc::clone(&state);
    let (grpc_ended_tx, grpc_ended_rx) = tokio::sync::oneshot::channel::<()>();
    // Stops everything on shutdown, or when the gRPC server ends on its own
    // (an error): the tasks awaited below would wait for shutdown otherwise.
    let stopper = tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            _ = grpc_ended_rx => {}
        }
        let _ = stop_tx.send(true);
        streams.stop_streams();
    });
    tracing::info!("control plane serving");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &state.config.security.tls {
        builder = builder.tls_config(crate::tls::server_config(tls))?;
    }
    // Health stays open (orchestrators probe it); every other service needs
    // a credential when credentials are configured.
    let result = builder
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(InterceptedService::new(reflection, authenticate.clone()))
        .add_service(RouterServer::with_interceptor(
            RouterService(Arc::clone(&state)),
            authenticate.clone(),
        ))
        .add_service(AdminServer::with_interceptor(
            AdminService(Arc::clone(&state)),
            authenticate,
        ))
        // `Server::tcp_nodelay` only applies to listeners tonic binds itself:
        // without it on accepted sockets, Nagle holds back each response's
        // trailers until the sidecar's delayed ACK (~40 ms per Route).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            grpc_stopped,
        )
        .await;
    let _ = grpc_ended_tx.send(());
    let _ = stopper.await;
    let _ = http_task.await;
    let _ = sweeper.await;
    let _ = sync.await;
    let _ = writer_stop_tx.send(());
    let _ = decision_writer.await;
    store.flush().await?;
    tracing::info!("control plane stopped");
    result.map_err(ServeError::from)
}

/// Says at start what an exposed control plane lets through: everything
/// (no credentials, `allow_unauthenticated`), or tokens in clear (no TLS).
fn warn_if_exposed(config: &Config, credentials: &Credentials) {
    let exposed = [config.grpc_listen, config.http_listen]
        .into_iter()
        .find(|a| !a.ip().is_loopback());
    let Some(addr) = exposed else { return };
    if credentials.is_open() {
        tracing::warn!(%addr, "serving a non-loopback address without credentials (allow_unauthenticated): anyone who reaches it can route, report and change budgets");
    } else if config.security.tls.is_none() {
        tracing::warn!(%addr, "serving a non-loopback address without TLS: bearer tokens cross the network in clear");
    }
}
