//! Wires the control plane together: gRPC (Router, Admin, health,
//! reflection) on one listener, `/healthz` on another, and the session
//! sweeper, all stopped by one shutdown signal.

use std::{future::Future, sync::Arc};

use keel::pb::{admin_server::AdminServer, router_server::RouterServer};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::server::TcpIncoming;

use crate::{
    admin::AdminService,
    config::Config,
    router::{RouterService, RouterState},
    store::{SessionStore, SledStore, run_sweeper},
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

/// Opens the store named by the config: Redis when it names one, else sled.
pub fn open_store(config: &Config) -> Result<Arc<dyn SessionStore>, crate::store::StoreError> {
    if let Some(redis) = &config.store.redis {
        return Ok(Arc::new(crate::store::RedisStore::open(
            redis,
            config.store.session_idle_ttl,
        )?));
    }
    Ok(Arc::new(SledStore::open_with_cache(
        &config.store.path,
        config.store.cache_capacity_bytes,
        config.store.session_idle_ttl,
        config.store.session_cache_bytes,
    )?))
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

    let http_task = tokio::spawn(crate::http::serve_http(
        http,
        Arc::clone(&state.metrics),
        stopped(),
    ));
    let grpc_stopped = stopped();
    let streams = Arc::clone(&state);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        streams.stop_streams();
    });
    tracing::info!("control plane serving");
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(RouterServer::new(RouterService(Arc::clone(&state))))
        .add_service(AdminServer::new(AdminService(Arc::clone(&state))))
        // `Server::tcp_nodelay` only applies to listeners tonic binds itself:
        // without it on accepted sockets, Nagle holds back each response's
        // trailers until the sidecar's delayed ACK (~40 ms per Route).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            grpc_stopped,
        )
        .await;
    let _ = http_task.await;
    let _ = sweeper.await;
    let _ = sync.await;
    let _ = writer_stop_tx.send(());
    let _ = decision_writer.await;
    store.flush().await?;
    tracing::info!("control plane stopped");
    result.map_err(ServeError::from)
}
