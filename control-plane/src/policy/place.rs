//! Placement: which deployment and key of a model serve a request. Healthy
//! deployments only while there is one; keys not parked by a 429; keys the
//! profile's shed priority may still use under load; soft affinity to the
//! provider and key that served the conversation last (their prompt cache is
//! warm); then the objective (spread by load, lowest latency, lowest cost).

use std::{sync::atomic::Ordering, time::Instant};

use super::{Placement, Policy, Slot};
use crate::{
    capacity::KeySnapshot,
    config::{Objective, Profile},
};

/// Where a conversation was served last: kept while healthy, not parked and
/// not full, so the provider's prompt cache stays warm.
#[derive(Debug, Clone, Copy, Default)]
pub struct Affinity<'a> {
    pub provider: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// A usable (deployment, key) and the key's load.
#[derive(Debug, Clone, Copy)]
struct Pair {
    d: usize,
    k: usize,
    snap: KeySnapshot,
    /// Load bucket 0..=10: spreading ignores differences under 10 %.
    bucket: u32,
}

impl Policy<'_> {
    /// Whether deployment `d` has a key that a profile with `shed_priority`
    /// may use now.
    pub(super) fn has_room(&self, d: usize, shed_priority: u8, now: Instant) -> bool {
        let p = self.catalog.deployments()[d].provider;
        (0..self.keys_of(d)).any(|k| {
            !self.capacity.parked(p, k)
                && self
                    .capacity
                    .snapshot(p, k, now)
                    .pressure
                    .admits(shed_priority)
        })
    }

    fn pair(&self, d: usize, k: usize, now: Instant) -> Pair {
        let p = self.catalog.deployments()[d].provider;
        let snap = self.capacity.snapshot(p, k, now);
        let load = snap.load(self.capacity.max_in_flight(p, k));
        Pair {
            d,
            k,
            snap,
            bucket: (load * 10.0).floor() as u32,
        }
    }

    /// Picks a deployment and key for model `name` (chosen or pinned).
    pub fn place(&self, profile: &Profile, name: &str, affinity: Affinity<'_>) -> Placement {
        let all = self.catalog.deployments_of(name);
        if all.is_empty() {
            return Placement::Unknown;
        }
        let now = Instant::now();
        let any_healthy = all.iter().any(|&d| self.signals.available(d));
        let wrap = |p: &Pair| {
            let slot = Slot {
                deployment: p.d,
                key: p.k,
            };
            if any_healthy {
                Placement::Healthy(slot)
            } else {
                Placement::AllOpen(slot)
            }
        };
        let deployments = all
            .iter()
            .copied()
            .filter(|&d| !any_healthy || self.signals.available(d));
        let mut pairs: Vec<Pair> = Vec::with_capacity(all.len() * 2);
        for d in deployments.clone() {
            let p = self.catalog.deployments()[d].provider;
            for k in 0..self.keys_of(d) {
                if !self.capacity.parked(p, k) {
                    pairs.push(self.pair(d, k, now));
                }
            }
        }
        if pairs.is_empty() {
            // Every key parked: the first of each deployment; the sidecar's
            // own cool-downs and fallbacks take it from there.
            pairs.extend(deployments.map(|d| self.pair(d, 0, now)));
        }
        if profile.shed_priority > 0 {
            pairs.retain(|p| p.snap.pressure.admits(profile.shed_priority));
            if pairs.is_empty() {
                return Placement::Shed;
            }
        }
        let provider_name = |p: &Pair| {
            self.catalog
                .provider_of(&self.catalog.deployments()[p.d])
                .name
                .as_str()
        };
        let key_ref = |p: &Pair| {
            self.catalog
                .provider_of(&self.catalog.deployments()[p.d])
                .keys[p.k]
                .key_ref
                .as_str()
        };
        if let Some(aff) = affinity.provider {
            if let Some(key) = affinity.key
                && let Some(p) = pairs.iter().find(|p| {
                    provider_name(p) == aff
                        && key_ref(p) == key
                        && p.snap.pressure != crate::capacity::Pressure::Full
                })
            {
                return wrap(p);
            }
            if pairs.iter().any(|p| provider_name(p) == aff) {
                pairs.retain(|p| provider_name(p) == aff);
            }
        }
        let best = match profile.objective {
            Objective::Spread => self.spread_pick(&pairs),
            Objective::Latency => {
                let d = pairs
                    .iter()
                    .map(|p| p.d)
                    .min_by(|&a, &b| self.expected_ttft(a).total_cmp(&self.expected_ttft(b)));
                d.and_then(|d| least_loaded(&pairs, d))
            }
            Objective::Cost => {
                let deps = self.catalog.deployments();
                let d = pairs
                    .iter()
                    .map(|p| p.d)
                    .min_by(|&a, &b| deps[a].cost_rank().total_cmp(&deps[b].cost_rank()));
                d.and_then(|d| least_loaded(&pairs, d))
            }
            Objective::Quality | Objective::Savings => {
                pairs.first().and_then(|p| least_loaded(&pairs, p.d))
            }
        };
        match best {
            Some(p) => wrap(&p),
            None => Placement::Unknown,
        }
    }

    /// Spreads over every pair: the lowest load bucket, then the fewest in
    /// flight, then round robin, so no key takes it all even when nothing
    /// limits the keys.
    fn spread_pick(&self, pairs: &[Pair]) -> Option<Pair> {
        let n = pairs.len();
        if n == 0 {
            return None;
        }
        let start = self.spread.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| pairs[(start + i) % n])
            .min_by_key(|p| (p.bucket, p.snap.in_flight))
    }
}

/// The least loaded key of deployment `d` (lowest index on a tie, so the
/// choice is stable and the prompt cache warm).
fn least_loaded(pairs: &[Pair], d: usize) -> Option<Pair> {
    pairs
        .iter()
        .filter(|p| p.d == d)
        .min_by_key(|p| (p.bucket, p.k))
        .copied()
}
