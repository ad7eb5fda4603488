//! Routing policy: which deployment a profile picks for a request, and the
//! ordered fallbacks. Pure functions over the catalog, signals and key load;
//! placement on a deployment and key is in `place.rs`.

mod place;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use keel::pb::RequestFeatures;

pub use place::Affinity;

use crate::{
    capacity::Capacity,
    catalog::{Catalog, Deployment},
    config::{Objective, Profile},
    difficulty,
    signals::Signals,
};

/// Why no model could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("no model in the catalog meets this request under profile {profile} (needs: {needs})")]
    NoCandidate { profile: String, needs: String },
    /// Every key that could serve is under pressure for this profile's
    /// shed priority: the caller should wait.
    #[error(
        "shed under load: every key that could serve {model} is busy for profile {profile} (shed priority {priority}); retry after {retry_after_secs} s"
    )]
    Shed {
        profile: String,
        model: String,
        priority: u8,
        retry_after_secs: u64,
    },
}

/// A chosen deployment and key, with the reason in words.
#[derive(Debug, Clone)]
pub struct Choice {
    pub slot: Slot,
    pub reason: String,
}

/// One deployment and one key of its provider: indexes into the catalog's
/// deployments and into that deployment's provider's keys (not a provider
/// and key pair, which is what `Capacity` counts by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub deployment: usize,
    pub key: usize,
}

/// Inputs shared by every decision.
pub struct Policy<'a> {
    pub catalog: &'a Catalog,
    pub signals: &'a Signals,
    pub default_latency_ms: f64,
    pub spread: &'a AtomicUsize,
    pub capacity: &'a Capacity,
    /// Counts unpinned latency decisions; every `explore_every`-th explores.
    pub explore: &'a AtomicU64,
    pub explore_every: u64,
}

/// Does the deployment meet the request's needs?
fn meets(d: &Deployment, f: &RequestFeatures) -> bool {
    let needed = u64::from(f.estimated_prompt_tokens) + u64::from(f.max_output_tokens);
    (!f.uses_tools || d.tools)
        && (!f.has_images || d.vision)
        && needed <= u64::from(d.context_tokens)
}

fn needs(f: &RequestFeatures, floor: u32) -> String {
    let mut parts = vec![format!(
        "context >= {} tokens",
        u64::from(f.estimated_prompt_tokens) + u64::from(f.max_output_tokens)
    )];
    if f.uses_tools {
        parts.push("tools".into());
    }
    if f.has_images {
        parts.push("vision".into());
    }
    if floor > 0 {
        parts.push(format!("tier >= {floor}"));
    }
    parts.join(", ")
}

/// Where a model can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A deployment whose breaker is closed (or probing), and a key.
    Healthy(Slot),
    /// Every deployment of the model is open: the best one anyway.
    AllOpen(Slot),
    /// No such model in the catalog.
    Unknown,
    /// Every usable key is under pressure for the profile's shed priority.
    Shed,
}

impl Placement {
    /// The target, healthy or not.
    pub fn any(self) -> Option<Slot> {
        match self {
            Self::Healthy(s) | Self::AllOpen(s) => Some(s),
            Self::Unknown | Self::Shed => None,
        }
    }
}

impl Policy<'_> {
    fn expected_ttft(&self, i: usize) -> f64 {
        let d = &self.catalog.deployments()[i];
        self.signals
            .ttft_ms(i)
            .or(d.latency.map(|l| l.as_secs_f64() * 1000.0))
            .unwrap_or(self.default_latency_ms)
    }

    fn keys_of(&self, d: usize) -> usize {
        self.catalog
            .provider_of(&self.catalog.deployments()[d])
            .keys
            .len()
    }

    /// The first key of the deployment's provider not parked by a 429.
    fn usable_key(&self, d: usize) -> usize {
        let p = self.catalog.deployments()[d].provider;
        (0..self.keys_of(d))
            .find(|&k| !self.capacity.parked(p, k))
            .unwrap_or(0)
    }

    /// Candidate deployments for `auto`, best first under the profile; those
    /// with an open breaker only when no other candidate exists, those with
    /// no key left for the profile's shed priority only when none has one.
    pub fn ranked(&self, profile: &Profile, f: &RequestFeatures) -> Vec<usize> {
        self.ranked_counting(profile, f).0
    }

    /// [`Self::ranked`], and how many candidates were left out for load.
    fn ranked_counting(&self, profile: &Profile, f: &RequestFeatures) -> (Vec<usize>, usize) {
        let deps = self.catalog.deployments();
        let mut ids: Vec<usize> = (0..deps.len())
            .filter(|&i| {
                let d = &deps[i];
                d.tier >= profile.quality_floor && profile.allows(&d.name) && meets(d, f)
            })
            .collect();
        if ids.iter().any(|&i| self.signals.available(i)) {
            ids.retain(|&i| self.signals.available(i));
        }
        let mut under_load = 0;
        if profile.shed_priority > 0 {
            let now = std::time::Instant::now();
            let before = ids.len();
            let roomy = |i: usize| self.has_room(i, profile.shed_priority, now);
            if ids.iter().any(|&i| roomy(i)) {
                ids.retain(|&i| roomy(i));
            }
            under_load = before - ids.len();
        }
        let by_cost = |a: &Deployment, b: &Deployment| a.cost_rank().total_cmp(&b.cost_rank());
        match profile.objective {
            Objective::Quality => {
                ids.sort_by(|&a, &b| {
                    deps[b]
                        .tier
                        .cmp(&deps[a].tier)
                        .then(by_cost(&deps[a], &deps[b]))
                });
            }
            Objective::Savings => {
                let need = self.savings_tier(profile, f, &ids);
                ids.retain(|&i| deps[i].tier >= need);
                ids.sort_by(|&a, &b| {
                    by_cost(&deps[a], &deps[b]).then(deps[a].tier.cmp(&deps[b].tier))
                });
            }
            Objective::Cost | Objective::Spread => {
                ids.sort_by(|&a, &b| {
                    by_cost(&deps[a], &deps[b]).then(deps[b].tier.cmp(&deps[a].tier))
                });
            }
            Objective::Latency => {
                let ttft: Vec<f64> = (0..deps.len()).map(|i| self.expected_ttft(i)).collect();
                ids.sort_by(|&a, &b| ttft[a].total_cmp(&ttft[b]).then(a.cmp(&b)));
            }
        }
        (ids, under_load)
    }

    /// The tier a `savings` profile needs: the estimated difficulty level
    /// (at least the floor), capped at the strongest candidate.
    fn savings_tier(&self, profile: &Profile, f: &RequestFeatures, ids: &[usize]) -> u32 {
        let deps = self.catalog.deployments();
        let top = ids.iter().map(|&i| deps[i].tier).max().unwrap_or(0);
        difficulty::estimate(f)
            .level
            .max(profile.quality_floor)
            .min(top)
    }

    /// Chooses for a request that is not pinned. `requested` is a resolved
    /// model name or `None` for `auto`.
    pub fn choose(
        &self,
        profile: &Profile,
        requested: Option<&str>,
        f: &RequestFeatures,
    ) -> Result<Choice, PolicyError> {
        let shed = |model: &str| PolicyError::Shed {
            profile: profile.name.clone(),
            model: model.to_owned(),
            priority: profile.shed_priority,
            retry_after_secs: self.capacity.config().retry_after.as_secs().max(1),
        };
        if let Some(name) = requested {
            // The app named a model: honour it; needs are the app's call.
            let placed = self.place(profile, name, Affinity::default());
            if placed == Placement::Shed {
                return Err(shed(name));
            }
            let slot = placed.any().ok_or_else(|| PolicyError::NoCandidate {
                profile: profile.name.clone(),
                needs: format!("model {name}"),
            })?;
            return Ok(Choice {
                slot,
                reason: format!("requested model {name} ({})", profile.name),
            });
        }
        let (ranked, under_load) = self.ranked_counting(profile, f);
        let mut first = *ranked.first().ok_or_else(|| PolicyError::NoCandidate {
            profile: profile.name.clone(),
            needs: needs(f, profile.quality_floor),
        })?;
        let probed = self.probe_pick(profile, &ranked);
        let explored = probed.or_else(|| self.explore_pick(profile, &ranked));
        if let Some(e) = explored {
            first = e;
        }
        let d = &self.catalog.deployments()[first];
        let placed = self.place(profile, &d.name, Affinity::default());
        if placed == Placement::Shed {
            return Err(shed(&d.name));
        }
        let slot = placed.any().unwrap_or(Slot {
            deployment: first,
            key: 0,
        });
        let mut reason = match profile.objective {
            Objective::Quality => format!(
                "best tier {} at or above floor {} ({})",
                d.tier, profile.quality_floor, profile.name
            ),
            Objective::Cost => format!(
                "cheapest meeting tier {} ({})",
                profile.quality_floor, profile.name
            ),
            Objective::Savings => format!(
                "{}: cheapest meeting tier {} is {} ({})",
                difficulty::estimate(f).explain(),
                self.savings_tier(profile, f, &ranked),
                d.name,
                profile.name
            ),
            Objective::Spread => format!("cheapest, spread across keys ({})", profile.name),
            Objective::Latency if probed.is_some() => {
                format!("probing {}: never measured ({})", d.name, profile.name)
            }
            Objective::Latency if explored.is_some() => format!(
                "exploring {}: {} (1 in {} {} decisions)",
                d.name,
                self.signals.measured_ago(first).map_or(
                    "never measured".to_owned(),
                    |ago| format!("last measured {} s ago", ago.as_secs())
                ),
                self.explore_every,
                profile.name
            ),
            Objective::Latency => format!(
                "lowest expected ttft {:.0} ms ({})",
                self.expected_ttft(first),
                profile.name
            ),
        };
        if under_load > 0 {
            reason.push_str(&format!("; {under_load} candidate(s) skipped under load"));
        }
        Ok(Choice { slot, reason })
    }

    /// An unpinned latency decision goes first to a candidate never
    /// measured and without a configured `latency`, one request at a time
    /// per candidate (as least-latency balancers treat the unmeasured:
    /// optimistic, probed first), so a fast model nobody measured yet is
    /// found within a few requests instead of waiting for exploration.
    /// Pinning profiles are not probed with: a pin would keep the
    /// conversation on the probe.
    fn probe_pick(&self, profile: &Profile, ranked: &[usize]) -> Option<usize> {
        if profile.objective != Objective::Latency || profile.session_lock || ranked.len() < 2 {
            return None;
        }
        let now = std::time::Instant::now();
        let deps = self.catalog.deployments();
        ranked
            .iter()
            .copied()
            .filter(|&d| deps[d].latency.is_none())
            .find(|&d| self.signals.claim_probe(d, now))
    }

    /// Every `explore_every`-th unpinned latency decision goes to the other
    /// candidate measured longest ago (never measured first), so a model
    /// that was slow once is not avoided forever.
    fn explore_pick(&self, profile: &Profile, ranked: &[usize]) -> Option<usize> {
        if profile.objective != Objective::Latency
            || profile.session_lock
            || self.explore_every == 0
            || ranked.len() < 2
        {
            return None;
        }
        let n = self.explore.fetch_add(1, Ordering::Relaxed) + 1;
        if n % self.explore_every != 0 {
            return None;
        }
        let best = ranked[0];
        let best_name = &self.catalog.deployments()[best].name;
        ranked[1..]
            .iter()
            .copied()
            .filter(|&d| &self.catalog.deployments()[d].name != best_name)
            .max_by_key(|&d| {
                self.signals
                    .measured_ago(d)
                    .unwrap_or(std::time::Duration::MAX)
            })
    }

    /// Ordered fallbacks after `(deployment, key)`: the same model through
    /// other keys and providers first, then, only when `may_switch_model`,
    /// the next-ranked other models. Open deployments and parked keys are
    /// left out.
    pub fn fallbacks(
        &self,
        primary: Slot,
        may_switch_model: Option<(&Profile, &RequestFeatures)>,
        max: usize,
    ) -> Vec<Slot> {
        let all = self.catalog.deployments();
        let name = &all[primary.deployment].name;
        let mut out = Vec::new();
        let parked = |d: usize, k: usize| self.capacity.parked(all[d].provider, k);
        let slot = |deployment, key| Slot { deployment, key };
        for k in 0..self.keys_of(primary.deployment) {
            if k != primary.key && !parked(primary.deployment, k) {
                out.push(slot(primary.deployment, k));
            }
        }
        for &d in self.catalog.deployments_of(name) {
            if d != primary.deployment && self.signals.available(d) {
                out.extend(
                    (0..self.keys_of(d))
                        .filter(|&k| !parked(d, k))
                        .map(|k| slot(d, k)),
                );
            }
        }
        if let Some((profile, f)) = may_switch_model {
            let mut seen = vec![name.as_str()];
            for d in self.ranked(profile, f) {
                if !seen.contains(&all[d].name.as_str()) && self.signals.available(d) {
                    seen.push(&all[d].name);
                    out.push(slot(d, self.usable_key(d)));
                }
            }
        }
        out.truncate(max);
        out
    }
}
