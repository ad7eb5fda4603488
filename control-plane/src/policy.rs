//! Routing policy: which deployment a profile picks for a request, and the
//! ordered fallbacks. Pure functions over the catalog and signals.

use std::sync::atomic::{AtomicUsize, Ordering};

use keel::pb::RequestFeatures;

use crate::{
    catalog::{Catalog, Deployment},
    config::{Objective, Profile},
    signals::Signals,
};

/// Why no model could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("no model in the catalog meets this request under profile {profile} (needs: {needs})")]
    NoCandidate { profile: String, needs: String },
}

/// A chosen deployment and key, with the reason in words.
#[derive(Debug, Clone)]
pub struct Choice {
    pub deployment: usize,
    pub key: usize,
    pub reason: String,
}

/// Inputs shared by every decision.
pub struct Policy<'a> {
    pub catalog: &'a Catalog,
    pub signals: &'a Signals,
    pub default_latency_ms: f64,
    pub spread: &'a AtomicUsize,
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
    Healthy(usize, usize),
    /// Every deployment of the model is open: the best one anyway.
    AllOpen(usize, usize),
    /// No such model in the catalog.
    Unknown,
}

impl Placement {
    /// The target, healthy or not.
    pub fn any(self) -> Option<(usize, usize)> {
        match self {
            Self::Healthy(d, k) | Self::AllOpen(d, k) => Some((d, k)),
            Self::Unknown => None,
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
            .find(|&k| !self.signals.key_parked(p, k))
            .unwrap_or(0)
    }

    /// Candidate deployments for `auto`, best first under the profile; those
    /// with an open breaker only when no other candidate exists.
    pub fn ranked(&self, profile: &Profile, f: &RequestFeatures) -> Vec<usize> {
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
        ids
    }

    /// Picks a deployment and key for model `name` (chosen or pinned):
    /// healthy deployments only while there is one, preferring `affinity` (a
    /// provider name, to keep its prompt cache warm), keys not parked by a 429.
    pub fn place(&self, profile: &Profile, name: &str, affinity: Option<&str>) -> Placement {
        let all = self.catalog.deployments_of(name);
        if all.is_empty() {
            return Placement::Unknown;
        }
        let healthy: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&d| self.signals.available(d))
            .collect();
        type Wrap = fn(usize, usize) -> Placement;
        let (deps, wrap): (&[usize], Wrap) = if healthy.is_empty() {
            (all, Placement::AllOpen)
        } else {
            (&healthy, Placement::Healthy)
        };
        if profile.objective == Objective::Spread {
            // Rotate over every usable (deployment, key) pair so no key takes
            // it all.
            let mut pairs: Vec<(usize, usize)> = Vec::new();
            for &d in deps {
                let p = self.catalog.deployments()[d].provider;
                pairs.extend(
                    (0..self.keys_of(d))
                        .filter(|&k| !self.signals.key_parked(p, k))
                        .map(|k| (d, k)),
                );
            }
            if pairs.is_empty() {
                pairs.extend(deps.iter().map(|&d| (d, 0)));
            }
            let n = self.spread.fetch_add(1, Ordering::Relaxed);
            let (d, k) = pairs[n % pairs.len()];
            return wrap(d, k);
        }
        let by_affinity = affinity.and_then(|aff| {
            deps.iter().copied().find(|&d| {
                self.catalog
                    .provider_of(&self.catalog.deployments()[d])
                    .name
                    == aff
            })
        });
        let catalog = self.catalog.deployments();
        let best = by_affinity.or_else(|| match profile.objective {
            Objective::Latency => deps
                .iter()
                .copied()
                .min_by(|&a, &b| self.expected_ttft(a).total_cmp(&self.expected_ttft(b))),
            Objective::Cost => deps
                .iter()
                .copied()
                .min_by(|&a, &b| catalog[a].cost_rank().total_cmp(&catalog[b].cost_rank())),
            _ => deps.first().copied(),
        });
        match best {
            Some(d) => wrap(d, self.usable_key(d)),
            None => Placement::Unknown,
        }
    }

    /// Chooses for a request that is not pinned. `requested` is a resolved
    /// model name or `None` for `auto`.
    pub fn choose(
        &self,
        profile: &Profile,
        requested: Option<&str>,
        f: &RequestFeatures,
    ) -> Result<Choice, PolicyError> {
        if let Some(name) = requested {
            // The app named a model: honour it; needs are the app's call.
            let (deployment, key) =
                self.place(profile, name, None)
                    .any()
                    .ok_or_else(|| PolicyError::NoCandidate {
                        profile: profile.name.clone(),
                        needs: format!("model {name}"),
                    })?;
            return Ok(Choice {
                deployment,
                key,
                reason: format!("requested model {name} ({})", profile.name),
            });
        }
        let ranked = self.ranked(profile, f);
        let first = *ranked.first().ok_or_else(|| PolicyError::NoCandidate {
            profile: profile.name.clone(),
            needs: needs(f, profile.quality_floor),
        })?;
        let d = &self.catalog.deployments()[first];
        let (deployment, key) = self
            .place(profile, &d.name, None)
            .any()
            .unwrap_or((first, 0));
        let reason = match profile.objective {
            Objective::Quality => format!(
                "best tier {} at or above floor {} ({})",
                d.tier, profile.quality_floor, profile.name
            ),
            Objective::Cost => format!(
                "cheapest meeting tier {} ({})",
                profile.quality_floor, profile.name
            ),
            Objective::Spread => format!("cheapest, spread across keys ({})", profile.name),
            Objective::Latency => format!(
                "lowest expected ttft {:.0} ms ({})",
                self.expected_ttft(first),
                profile.name
            ),
        };
        Ok(Choice {
            deployment,
            key,
            reason,
        })
    }

    /// Ordered fallbacks after `(deployment, key)`: the same model through
    /// other keys and providers first, then, only when `may_switch_model`,
    /// the next-ranked other models. Open deployments and parked keys are
    /// left out.
    pub fn fallbacks(
        &self,
        primary: (usize, usize),
        may_switch_model: Option<(&Profile, &RequestFeatures)>,
        max: usize,
    ) -> Vec<(usize, usize)> {
        let all = self.catalog.deployments();
        let name = &all[primary.0].name;
        let mut out = Vec::new();
        let parked = |d: usize, k: usize| self.signals.key_parked(all[d].provider, k);
        for k in 0..self.keys_of(primary.0) {
            if k != primary.1 && !parked(primary.0, k) {
                out.push((primary.0, k));
            }
        }
        for &d in self.catalog.deployments_of(name) {
            if d != primary.0 && self.signals.available(d) {
                out.extend(
                    (0..self.keys_of(d))
                        .filter(|&k| !parked(d, k))
                        .map(|k| (d, k)),
                );
            }
        }
        if let Some((profile, f)) = may_switch_model {
            let mut seen = vec![name.as_str()];
            for d in self.ranked(profile, f) {
                if !seen.contains(&all[d].name.as_str()) && self.signals.available(d) {
                    seen.push(&all[d].name);
                    out.push((d, self.usable_key(d)));
                }
            }
        }
        out.truncate(max);
        out
    }
}
