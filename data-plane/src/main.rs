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
    let shutdown = keel::shutdown::signal();
    println!("keel-sidecar ready listen={}", listener.local_addr()?);
    server::serve(listener, config, shutdown).await?;
    Ok(())
}
