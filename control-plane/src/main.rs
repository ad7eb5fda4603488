//! `keel-control-plane --config keel.toml`

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use keel_control_plane::{config, server};
use tokio::net::TcpListener;

// jemalloc, configured at build time in `.cargo/config.toml` to hand freed
// memory back at once: with 1M sessions the control plane peaked at ~99 MB
// against ~180 MB with mimalloc (which keeps freed pages for a second), for
// ~15-25% more CPU per decision. glibc malloc was a fifth of the CPU under
// load. Operators can override the settings with `_RJEM_MALLOC_CONF` (README).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keel control plane: routing policy, profiles and the session store.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of the TOML configuration file.
    #[arg(long, env = "KEEL_CONFIG")]
    config: PathBuf,
    /// Start with an empty session store when the configured one is
    /// damaged: the damaged directory is moved aside, never deleted.
    #[arg(long)]
    fresh_store: bool,
}

/// sysexits' EX_CONFIG-adjacent EX_USAGE: bad configuration.
const EXIT_BAD_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel-control-plane: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Before the runtime, and dropped after it: the exporter blocks.
    let _telemetry = keel::telemetry::init("keel-control-plane", config.otlp_endpoint.as_deref());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = config.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keel-control-plane: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.fresh_store)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-control-plane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config, fresh_store: bool) -> anyhow::Result<()> {
    let (store, seal) = server::open_store(&config, fresh_store)?;
    let grpc = TcpListener::bind(config.grpc_listen).await?;
    let http = TcpListener::bind(config.http_listen).await?;
    let shutdown = keel::shutdown::signal();
    // One machine-readable line on stdout: scripts and tests that bind port 0
    // learn the addresses from it.
    println!(
        "keel-control-plane ready grpc={} http={}",
        grpc.local_addr()?,
        http.local_addr()?
    );
    server::serve(grpc, http, config, store, shutdown).await?;
    // After the store's last flush: a copy cut back from here is refused.
    if let Some(seal) = seal {
        seal.close()?;
    }
    Ok(())
}
