//! `keel-sidecar --listen ADDR --control-plane URL [--tenant NAME]`

use std::process::ExitCode;

use clap::Parser;
use keel_data_plane::{config::SidecarConfig, server};
use tokio::net::TcpListener;

// glibc malloc was a fifth of the CPU under load (arena contention between
// tokio workers, consolidation); mimalloc is faster. Without transparent
// huge pages (`no_thp`), which would round every heap up to 2 MB pages.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = SidecarConfig::parse();
    // Before the runtime, and dropped after it: the exporter blocks.
    let _telemetry = keel::telemetry::init("keel-sidecar", config.otlp_endpoint.as_deref());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    builder.worker_threads(config.worker_threads.into());
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keel-sidecar: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: SidecarConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    // One machine-readable line on stdout for scripts and tests on port 0.
    let shutdown = shutdown_signal();
    println!("keel-sidecar ready listen={}", listener.local_addr()?);
    server::serve(listener, config, shutdown).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, which is before "ready" is printed: a signal right after "ready"
/// is a clean stop, not the default action's kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let recv = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = recv(term) => {},
            _ = recv(int) => {},
        }
        tracing::info!("shutting down");
    }
}
