//! Router profiles: data, not code. The four built-ins can be tuned and new
//! ones defined in `[profiles.NAME]`.

use std::collections::HashMap;

use super::{
    RawProfile,
    error::{ConfigError, invalid},
    validate::validate_budgets,
};
use crate::{budget::Caps, catalog::Catalog};

/// How a profile ranks candidate models (`objective`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Highest tier at or above the floor; ties go to the cheaper model.
    Quality,
    /// Cheapest model.
    Cost,
    /// Lowest expected time to first token.
    Latency,
    /// Cheapest model, spread across keys and providers.
    Spread,
    /// Cheapest model whose tier meets the request's estimated difficulty
    /// (and the floor).
    Savings,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quality => "quality",
            Self::Cost => "cost",
            Self::Latency => "latency",
            Self::Spread => "spread",
            Self::Savings => "savings",
        }
    }
}

/// `shed_priority`: 0 never shed, 1 shed when a key is full, 2 shed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "u8")]
pub struct ShedPriority(pub u8);

impl TryFrom<u8> for ShedPriority {
    type Error = String;

    fn try_from(p: u8) -> Result<Self, String> {
        if p > 2 {
            return Err(format!(
                "shed_priority must be 0 (never shed), 1 or 2 (shed first), got {p}"
            ));
        }
        Ok(Self(p))
    }
}

/// A router profile: data, not code.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub session_lock: bool,
    pub quality_floor: u32,
    pub objective: Objective,
    pub allowed_models: Option<Vec<String>>,
    /// 0: never shed (capacity goes here first); 1: shed when a key is
    /// full; 2: shed first, when a key is within the reserve of full.
    pub shed_priority: u8,
    /// Caps overriding `[budgets]` for this profile, key by key.
    pub budgets: Caps,
}

impl Profile {
    pub(super) fn builtin(
        name: &str,
        session_lock: bool,
        objective: Objective,
        shed_priority: u8,
    ) -> Self {
        Self {
            name: name.to_owned(),
            session_lock,
            quality_floor: 0,
            objective,
            allowed_models: None,
            shed_priority,
            budgets: Caps::default(),
        }
    }
}

pub(super) fn validate_profiles(
    raw: std::collections::BTreeMap<String, RawProfile>,
    catalog: &Catalog,
) -> Result<HashMap<String, Profile>, ConfigError> {
    let mut profiles: HashMap<String, Profile> = [
        Profile::builtin("CHAT", false, Objective::Latency, 1),
        Profile::builtin("AGENT", true, Objective::Quality, 0),
        Profile::builtin("BATCH", false, Objective::Spread, 2),
        Profile::builtin("SAVINGS", false, Objective::Savings, 1),
    ]
    .into_iter()
    .map(|p| (p.name.clone(), p))
    .collect();
    for (name, r) in raw {
        let key = |field: &str| format!("profiles.{name}.{field}");
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !valid_name {
            return Err(invalid(
                format!("profiles.{name}"),
                "profile names are letters, digits, `-` and `_`",
            ));
        }
        let profile = profiles
            .entry(name.clone())
            .or_insert_with(|| Profile::builtin(&name, false, Objective::Quality, 1));
        if let Some(lock) = r.session_lock {
            profile.session_lock = lock;
        }
        if let Some(floor) = r.quality_floor {
            profile.quality_floor = floor;
        }
        if let Some(o) = r.objective {
            profile.objective = o;
        }
        if let Some(p) = r.shed_priority {
            profile.shed_priority = p.0;
        }
        if let Some(b) = &r.budgets {
            profile.budgets = validate_budgets(&format!("profiles.{name}.budgets"), b)?;
        }
        if let Some(allowed) = r.allowed_models {
            for (j, m) in allowed.iter().enumerate() {
                if catalog.deployments_of(m).is_empty() {
                    return Err(invalid(
                        format!("profiles.{name}.allowed_models[{j}]"),
                        format!("no model named `{m}` in [[models]]"),
                    ));
                }
            }
            profile.allowed_models = Some(allowed);
        }
        if !catalog.deployments().is_empty()
            && !catalog
                .deployments()
                .iter()
                .any(|d| d.tier >= profile.quality_floor && profile.allows(&d.name))
        {
            return Err(invalid(
                key("quality_floor"),
                format!(
                    "no allowed model has tier >= {} in [[models]]",
                    profile.quality_floor
                ),
            ));
        }
    }
    Ok(profiles)
}

impl Profile {
    /// Whether the profile may route to model `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == name))
    }
}
