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

impl Policy<'_> {
    fn expected_ttft(&self, d: &Deployment) -> f64 {
        let provider = &self.catalog.provider_of(d).name;
        self.signals
            .ttft_ms(provider, &d.name)
            .or(d.latency.map(|l| l.as_secs_f64() * 1000.0))
            .unwrap_or(self.default_latency_ms)
    }

    /// Candidate deployments for `auto`, best first under the profile.
    pub fn ranked(&self, profile: &Profile, f: &RequestFeatures) -> Vec<usize> {
        let deps = self.catalog.deployments();
        let mut ids: Vec<usize> = (0..deps.len())
            .filter(|&i| {
                let d = &deps[i];
                d.tier >= profile.quality_floor && profile.allows(&d.name) && meets(d, f)
            })
            .collect();
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
                let ttft: Vec<f64> = deps.iter().map(|d| self.expected_ttft(d)).collect();
                ids.sort_by(|&a, &b| ttft[a].total_cmp(&ttft[b]).then(b.cmp(&a).reverse()));
            }
        }
        ids
    }

    /// Picks a deployment and key for model `name` (already chosen or pinned),
    /// preferring `affinity` (a provider name) when it serves the model.
    pub fn place(
        &self,
        profile: &Profile,
        name: &str,
        affinity: Option<&str>,
    ) -> Option<(usize, usize)> {
        let deps = self.catalog.deployments_of(name);
        if deps.is_empty() {
            return None;
        }
        if profile.objective == Objective::Spread {
            // Rotate over every (deployment, key) pair so no key takes it all.
            let pairs: Vec<(usize, usize)> = deps
                .iter()
                .flat_map(|&d| {
                    let keys = self
                        .catalog
                        .provider_of(&self.catalog.deployments()[d])
                        .keys
                        .len();
                    (0..keys).map(move |k| (d, k))
                })
                .collect();
            let n = self.spread.fetch_add(1, Ordering::Relaxed);
            return Some(pairs[n % pairs.len()]);
        }
        if let Some(aff) = affinity {
            for &d in deps {
                if self
                    .catalog
                    .provider_of(&self.catalog.deployments()[d])
                    .name
                    == aff
                {
                    return Some((d, 0));
                }
            }
        }
        let best = match profile.objective {
            Objective::Latency => deps.iter().copied().min_by(|&a, &b| {
                let all = self.catalog.deployments();
                self.expected_ttft(&all[a])
                    .total_cmp(&self.expected_ttft(&all[b]))
            }),
            Objective::Cost => deps.iter().copied().min_by(|&a, &b| {
                let all = self.catalog.deployments();
                all[a].cost_rank().total_cmp(&all[b].cost_rank())
            }),
            _ => deps.first().copied(),
        }?;
        Some((best, 0))
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
        let (deployment, key) = self.place(profile, &d.name, None).unwrap_or((first, 0));
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
                self.expected_ttft(d),
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
    /// the next-ranked other models.
    pub fn fallbacks(
        &self,
        primary: (usize, usize),
        may_switch_model: Option<(&Profile, &RequestFeatures)>,
        max: usize,
    ) -> Vec<(usize, usize)> {
        let all = self.catalog.deployments();
        let name = &all[primary.0].name;
        let mut out = Vec::new();
        let keys_of = |d: usize| self.catalog.provider_of(&all[d]).keys.len();
        for k in 0..keys_of(primary.0) {
            if k != primary.1 {
                out.push((primary.0, k));
            }
        }
        for &d in self.catalog.deployments_of(name) {
            if d != primary.0 {
                out.extend((0..keys_of(d)).map(|k| (d, k)));
            }
        }
        if let Some((profile, f)) = may_switch_model {
            let mut seen = vec![name.as_str()];
            for d in self.ranked(profile, f) {
                if !seen.contains(&all[d].name.as_str()) {
                    seen.push(&all[d].name);
                    out.push((d, 0));
                }
            }
        }
        out.truncate(max);
        out
    }
}
