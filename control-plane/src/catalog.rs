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
}

impl Catalog {
    /// Builds the indexes; an alias must name a model (error: alias, message).
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
            if !by_name.contains_key(target) {
                return Err((alias.clone(), format!("no model named `{target}`")));
            }
            if by_name.contains_key(alias) {
                return Err((alias.clone(), "an alias cannot shadow a model name".into()));
            }
        }
        Ok(Self {
            providers,
            deployments,
            by_name,
            aliases: aliases.into_iter().collect(),
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

    /// Resolves an alias to its model name; other names come back unchanged.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map(String::as_str).unwrap_or(name)
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
