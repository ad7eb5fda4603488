//! What replicas on one shared store tell each other through it: keys
//! parked by a 429 (until their `Retry-After`) and run-time budget caps.
//! Latency signals and breakers stay per replica. A replica writes a park
//! as it learns of it and reads the others' every [`SYNC_EVERY`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::RouterState;
use crate::store::now_ms;

/// How often a replica reads what the others shared.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

impl RouterState {
    /// Shares that a 429 parked key `k` of provider `p` for `wait`.
    pub(super) fn share_park(&self, p: usize, k: usize, wait: Duration) {
        if !self.store.shared() {
            return;
        }
        let Some(name) = self.key_name(p, k) else {
            return;
        };
        let until = now_ms() + wait.as_millis() as u64;
        if let Err(e) = self.store.park_key(&name, until) {
            tracing::warn!(error = %e, key = %name, "cannot share a parked key");
        }
    }

    /// `provider/key_ref` of key `k` of provider `p`.
    fn key_name(&self, p: usize, k: usize) -> Option<String> {
        let provider = self.config.catalog.providers().get(p)?;
        let key = provider.keys.get(k)?;
        Some(format!("{}/{}", provider.name, key.key_ref))
    }

    /// Takes up what the other replicas shared.
    fn pull_shared(&self) {
        let now = now_ms();
        match self.store.parked_keys(now) {
            Ok(parked) => {
                let at = Instant::now();
                for (name, until_ms) in parked {
                    let Some((provider, key_ref)) = name.split_once('/') else {
                        continue;
                    };
                    let providers = self.config.catalog.providers();
                    let Some(p) = providers.iter().position(|p| p.name == provider) else {
                        continue;
                    };
                    let Some(k) = providers[p].keys.iter().position(|k| k.key_ref == key_ref)
                    else {
                        continue;
                    };
                    let left = Duration::from_millis(until_ms.saturating_sub(now));
                    self.capacity.park_until(p, k, at + left);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read parked keys from the store"),
        }
        match self.store.budget_overrides() {
            Ok(Some(o)) => self.budgets.replace(o),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read budget caps from the store"),
        }
    }
}

/// Pulls what other replicas shared every [`SYNC_EVERY`] until `shutdown`;
/// returns at once for a store that is not shared.
pub async fn run_sync(state: Arc<RouterState>, shutdown: impl std::future::Future<Output = ()>) {
    if !state.store.shared() {
        return;
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let state = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || state.pull_shared()).await;
    }
}
