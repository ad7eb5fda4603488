//! `keel-bench-populate --config keel.toml --sessions N`: benchmark support.
//! Fills the control plane's session store (stopped) with `N` pinned
//! conversations `<prefix>0 .. <prefix>N-1`, each with the session and the
//! decision record a first AGENT turn leaves, through the same store the
//! control plane opens (sled, or Redis with `backend = "redis"`). Ids already present are kept, so growing a store
//! from 10k to 1M only writes the difference.

use std::{path::PathBuf, sync::Arc, time::Instant};

use anyhow::{Context, Result};
use clap::Parser;
use keel::pb::DecisionKind;
use keel_control_plane::{
    config, server,
    store::{DecisionEntry, Session, SessionKey, now_ms},
};

#[derive(Parser)]
struct Args {
    /// Control-plane configuration (its `[store]` is opened).
    #[arg(long)]
    config: PathBuf,
    /// Conversations to have stored.
    #[arg(long)]
    sessions: u64,
    /// Conversation id prefix (as `keel-loadgen --id-prefix`).
    #[arg(long, default_value = "bench-")]
    id_prefix: String,
    /// Tenant (the sidecar's `--tenant`).
    #[arg(long, default_value = keel::DEFAULT_TENANT)]
    tenant: String,
    /// Model the conversations are pinned to.
    #[arg(long, default_value = "strong-1")]
    model: String,
    /// Provider of that model.
    #[arg(long, default_value = "alpha")]
    provider: String,
    /// Writer threads.
    #[arg(long, default_value_t = 2)]
    threads: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (store, _seal) = server::open_store(&config, false).context("open store")?;
    let started = Instant::now();
    let now = now_ms();
    let threads = args.threads.max(1);
    let written: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, args) = (Arc::clone(&store), &args);
                scope.spawn(move || -> Result<u64> {
                    let mut written = 0;
                    // Decision records in batches, as the decision writer
                    // writes them.
                    let mut records = Vec::with_capacity(512);
                    let mut i = t;
                    while i < args.sessions {
                        let id = format!("{}{i}", args.id_prefix);
                        let key = SessionKey::new(&args.tenant, &id);
                        let mut fresh = false;
                        store.update(&key, now, &mut |current| match current {
                            Some(s) => {
                                fresh = false;
                                s.clone()
                            }
                            None => {
                                fresh = true;
                                Session {
                                    pinned_model: Some(args.model.clone()),
                                    profile: "AGENT".into(),
                                    created_ms: now,
                                    last_seen_ms: now,
                                    turns: 1,
                                    ..Default::default()
                                }
                            }
                        })?;
                        if fresh {
                            records.push((
                                key,
                                DecisionEntry {
                                    decision_id: uuid::Uuid::now_v7().to_string(),
                                    turn: 1,
                                    kind: DecisionKind::Initialize as i32,
                                    model: args.model.clone(),
                                    provider: args.provider.clone(),
                                    reason: format!("pinned at turn 1: {} (bench)", args.model),
                                    at_ms: now,
                                    events: Vec::new(),
                                    result: None,
                                },
                            ));
                            written += 1;
                        }
                        if records.len() == records.capacity() {
                            store.record_decisions(&records)?;
                            records.clear();
                        }
                        i += threads;
                    }
                    store.record_decisions(&records)?;
                    Ok(written)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .sum::<Result<u64>>()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(store.flush())?;
    println!(
        "keel-bench-populate stored={} written={written} secs={:.1}",
        args.sessions,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
