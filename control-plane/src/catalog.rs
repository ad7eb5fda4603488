//! The model catalog: providers, their key references, and model deployments.
//! Several deployments may share a model name (one model through several
//! providers); a pin is on the name.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use keel::pb::{self, WireFormat};

/// An LLM provider endpoint.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub api: WireFormat,
    /// Without a trailing slash.
    pub base_url: String,
    pub keys: Vec<Key>,
    /// Serves the OpenAI Responses API too (OpenAI format only).
    pub responses: bool,
    /// OpenTelemetry `gen_ai.provider.name` (config, else by `api`).
    pub gen_ai_name: String,
}

/// A key *reference*; the secret lives on the host that forwards requests.
#[derive(Debug, Clone)]
pub struct Key {
    pub key_ref: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// In-flight requests at which the key is full.
    pub max_in_flight: Option<u32>,
}

/// One model reached through one provider.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    /// Index into [`Catalog::providers`].
    pub provider: usize,
    pub upstream_model: String,
    pub tier: u32,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub context_tokens: u32,
    pub tools: bool,
    pub vision: bool,
    pub latency: Option<Duration>,
}

impl Deployment {
    /// Price of a typical request, used to rank by cost (output weighs more
    /// because agents and chat produce a fair share of it).
    pub fn cost_rank(&self) -> f64 {
        self.input_usd_per_mtok + self.output_usd_per_mtok
    }

    /// USD for the given usage.
    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_usd_per_mtok
            + output_tokens as f64 * self.output_usd_per_mtok)
            / 1_000_000.0
    }
}

/// Providers, deployments and aliases, indexed by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    providers: Vec<Provider>,
    deployments: Vec<Deployment>,
    by_name: HashMap<String, Vec<usize>>,
    aliases: HashMap<String, String>,
    /// Aliases with `*` (pattern, target), most specific first.
    wildcards: Vec<(String, String)>,
}

/// What an alias may name besides a model: let the profile choose.
pub const AUTO: &str = "auto";

impl Catalog {
    /// Builds the indexes; an alias must name a model or `auto` (error:
    /// alias, message). An alias with `*` is a pattern (`*` matches any run
    /// of characters), tried after exact names.
    pub fn new(
        providers: Vec<Provider>,
        deployments: Vec<Deployment>,
        aliases: BTreeMap<String, String>,
    ) -> Result<Self, (String, String)> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in deployments.iter().enumerate() {
            by_name.entry(d.name.clone()).or_default().push(i);
        }
        for (alias, target) in &aliases {
            if target != AUTO && !by_name.contains_key(target) {
                return Err((alias.clone(), format!("no model named `{target}`")));
            }
            if by_name.contains_key(alias) {
                return Err((alias.clone(), "an alias cannot shadow a model name".into()));
            }
            if alias.is_empty() || alias == AUTO {
                return Err((
                    alias.clone(),
                    "an alias must be a name other than `auto`".into(),
                ));
            }
        }
        let (mut wildcards, exact): (Vec<_>, Vec<_>) =
            aliases.into_iter().partition(|(a, _)| a.contains('*'));
        // Most literal characters first: `claude-haiku-*` before `claude-*`.
        wildcards.sort_by_key(|(p, _)| std::cmp::Reverse(p.len() - p.matches('*').count()));
        Ok(Self {
            providers,
            deployments,
            by_name,
            aliases: exact.into_iter().collect(),
            wildcards,
        })
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }

    pub fn provider_of(&self, d: &Deployment) -> &Provider {
        &self.providers[d.provider]
    }

    /// Deployment indexes of model `name` (empty if unknown).
    pub fn deployments_of(&self, name: &str) -> &[usize] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The deployment of model `name` through provider `provider`.
    pub fn deployment_index(&self, name: &str, provider: &str) -> Option<usize> {
        self.deployments_of(name)
            .iter()
            .copied()
            .find(|&d| self.providers[self.deployments[d].provider].name == provider)
    }

    /// Resolves an alias to its model name (or [`AUTO`]): a model name
    /// first, then an exact alias, then the most specific matching pattern;
    /// other names come back unchanged.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        if self.by_name.contains_key(name) {
            return name;
        }
        if let Some(target) = self.aliases.get(name) {
            return target;
        }
        self.wildcards
            .iter()
            .find(|(pattern, _)| glob_match(pattern, name))
            .map_or(name, |(_, target)| target.as_str())
    }

    /// The highest tier among the deployments of model `name`.
    pub fn tier_of(&self, name: &str) -> Option<u32> {
        self.deployments_of(name)
            .iter()
            .map(|&d| self.deployments[d].tier)
            .max()
    }

    /// Every alias and pattern with what it names, for sidecars.
    pub fn aliases_proto(&self) -> Vec<pb::ModelAlias> {
        let mut exact: Vec<_> = self.aliases.iter().collect();
        exact.sort_unstable();
        exact
            .into_iter()
            .chain(self.wildcards.iter().map(|(p, t)| (p, t)))
            .map(|(name, model)| pb::ModelAlias {
                name: name.clone(),
                model: model.clone(),
            })
            .collect()
    }

    /// The deployment as a protobuf target using key `key`.
    pub fn target(&self, deployment: usize, key: usize) -> pb::Target {
        let d = &self.deployments[deployment];
        let p = &self.providers[d.provider];
        pb::Target {
            model: d.name.clone(),
            provider: p.name.clone(),
            upstream_model: d.upstream_model.clone(),
            base_url: p.base_url.clone(),
            wire_format: p.api as i32,
            key_ref: p.keys[key].key_ref.clone(),
            tier: d.tier,
            responses_api: p.responses,
            gen_ai_provider_name: p.gen_ai_name.clone(),
        }
    }

    /// The whole catalog as sent to sidecars.
    pub fn to_proto(&self) -> Vec<pb::CatalogModel> {
        (0..self.deployments.len())
            .map(|i| {
                let d = &self.deployments[i];
                let mut capabilities = Vec::new();
                if d.tools {
                    capabilities.push("tools".to_owned());
                }
                if d.vision {
                    capabilities.push("vision".to_owned());
                }
                pb::CatalogModel {
                    target: Some(self.target(i, 0)),
                    context_tokens: d.context_tokens,
                    capabilities,
                    input_usd_per_mtok: d.input_usd_per_mtok,
                    output_usd_per_mtok: d.output_usd_per_mtok,
                }
            })
            .collect()
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        // No `*`: an exact name.
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn patterns_match_runs_of_characters() {
        assert!(glob_match("claude-*", "claude-opus-4-5-20251101"));
        assert!(glob_match("claude-*", "claude-"));
        assert!(!glob_match("claude-*", "claud"));
        assert!(glob_match("gpt-5*", "gpt-5"));
        assert!(glob_match("gpt-5*", "gpt-5.1-codex"));
        assert!(!glob_match("gpt-5*", "gpt-4o"));
        assert!(glob_match("*haiku*", "claude-haiku-4-5"));
        assert!(glob_match("claude-*-4-5", "claude-haiku-4-5"));
        assert!(!glob_match("claude-*-4-5", "claude-haiku-4-6"));
        assert!(glob_match("a*a", "aa"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("*", "anything"));
    }
}
