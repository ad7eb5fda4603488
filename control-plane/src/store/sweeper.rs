//! Background purge of idle sessions, owned by the server and stopped with it.

use std::{sync::Arc, time::Duration};

use super::{SessionStore, now_ms};

/// Sweeps expired sessions every `interval` until `shutdown` resolves.
pub async fn run_sweeper(
    store: Arc<dyn SessionStore>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let store = Arc::clone(&store);
        // A sweep walks sled trees and may touch disk: keep it off the runtime.
        match tokio::task::spawn_blocking(move || store.sweep(now_ms())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "swept idle sessions"),
            Ok(Err(e)) => tracing::warn!(error = %e, "session sweep failed"),
            Err(e) => tracing::warn!(error = %e, "session sweep task failed"),
        }
    }
}
