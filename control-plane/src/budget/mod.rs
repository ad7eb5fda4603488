//! Budgets that pause instead of kill: caps on a conversation's spend and
//! turns and on a tenant's spend per UTC day. Caps come from `[budgets]`, a
//! profile's `budgets` table, and run-time overrides set through
//! `Admin.SetBudgets` (stored in the session store): for every profile, per
//! profile, and for one conversation (kept in its session, checked first).
//! A request over a cap gets RESOURCE_EXHAUSTED with `keel-budget`
//! metadata; the conversation resumes as soon as the cap is raised.

mod tenant;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, sync::RwLock};

use serde::{Deserialize, Serialize};

pub use tenant::{TenantDay, TenantSpend, utc_day};

/// Budget caps; `None` means no cap. In run-time overrides, `Some(0)`
/// removes a cap that a less specific scope sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Caps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_conversation_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_conversation_turns: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_tenant_usd_per_day: Option<f64>,
}

impl Caps {
    /// Field by field: this scope's cap, else `other`'s.
    fn or(self, other: Caps) -> Caps {
        Caps {
            per_conversation_usd: self.per_conversation_usd.or(other.per_conversation_usd),
            per_conversation_turns: self.per_conversation_turns.or(other.per_conversation_turns),
            per_tenant_usd_per_day: self.per_tenant_usd_per_day.or(other.per_tenant_usd_per_day),
        }
    }

    /// Zero (an override's "no cap") becomes `None`.
    fn normalized(self) -> Caps {
        Caps {
            per_conversation_usd: self.per_conversation_usd.filter(|v| *v > 0.0),
            per_conversation_turns: self.per_conversation_turns.filter(|v| *v > 0),
            per_tenant_usd_per_day: self.per_tenant_usd_per_day.filter(|v| *v > 0.0),
        }
    }

    /// This scope's caps over a less specific scope's, key by key, with
    /// zeros ("no cap") removed.
    pub fn over(self, less_specific: Caps) -> Caps {
        self.or(less_specific).normalized()
    }

    /// `other`'s set fields replace this one's.
    pub fn merge(&mut self, other: Caps) {
        *self = other.or(*self);
    }

    pub fn is_empty(&self) -> bool {
        *self == Caps::default()
    }

    /// Whether a per-conversation cap (USD or turns) is set.
    pub fn limits_conversation(&self) -> bool {
        self.per_conversation_usd.is_some() || self.per_conversation_turns.is_some()
    }
}

/// Run-time caps: for every profile and per profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    #[serde(default)]
    pub global: Caps,
    #[serde(default)]
    pub profiles: BTreeMap<String, Caps>,
}

/// Which cap a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    ConversationUsd,
    ConversationTurns,
    TenantUsdPerDay,
}

impl Cap {
    /// The `keel-budget` metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConversationUsd => "conversation_usd",
            Self::ConversationTurns => "conversation_turns",
            Self::TenantUsdPerDay => "tenant_usd_per_day",
        }
    }
}

/// A request refused by a budget cap, with what is left under each cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub cap: Cap,
    pub limit: f64,
    pub used: f64,
    /// USD left under the tightest USD cap (absent: no USD cap).
    pub remaining_usd: Option<f64>,
    /// Turns left under the turn cap (absent: no turn cap).
    pub remaining_turns: Option<u32>,
}

impl std::fmt::Display for Exceeded {
    /// The refusal's message: the cap, what was used, what is left.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.cap {
            Cap::ConversationUsd => format!(
                "conversation spend ${:.4} has reached its cap of ${:.4}",
                self.used, self.limit
            ),
            Cap::ConversationTurns => format!(
                "conversation has used {} of its {} turns",
                self.used, self.limit
            ),
            Cap::TenantUsdPerDay => format!(
                "tenant spend today ${:.4} has reached its cap of ${:.4}",
                self.used, self.limit
            ),
        };
        let mut left = Vec::with_capacity(2);
        if let Some(usd) = self.remaining_usd {
            left.push(format!("${usd:.4}"));
        }
        if let Some(turns) = self.remaining_turns {
            left.push(format!("{turns} turns"));
        }
        let left = if left.is_empty() {
            String::new()
        } else {
            format!("; remaining: {}", left.join(", "))
        };
        write!(
            f,
            "budget exceeded ({}): {what}{left}; the conversation is paused until the cap is raised",
            self.cap.as_str()
        )
    }
}

/// What a request has used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// The conversation's turns and spend (absent without a conversation).
    pub conversation: Option<(u32, f64)>,
    /// The tenant's spend today.
    pub tenant_usd_today: f64,
}

/// Whether one more turn fits under `caps`. A turn may start while spend is
/// below the cap (its own cost is unknown until it is reported) and while
/// fewer turns than the cap were taken.
pub fn check(caps: &Caps, used: Usage) -> Result<(), Exceeded> {
    let tenant_left = caps
        .per_tenant_usd_per_day
        .map(|cap| (cap - used.tenant_usd_today).max(0.0));
    let conv_left = match (used.conversation, caps.per_conversation_usd) {
        (Some((_, spent)), Some(cap)) => Some((cap - spent).max(0.0)),
        _ => None,
    };
    let remaining_usd = match (tenant_left, conv_left) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let remaining_turns = match (used.conversation, caps.per_conversation_turns) {
        (Some((turns, _)), Some(cap)) => Some(cap.saturating_sub(turns)),
        _ => None,
    };
    let refuse = |cap: Cap, limit: f64, used: f64| Exceeded {
        cap,
        limit,
        used,
        remaining_usd,
        remaining_turns,
    };
    if let Some((turns, spent)) = used.conversation {
        if let Some(cap) = caps.per_conversation_turns
            && turns >= cap
        {
            return Err(refuse(
                Cap::ConversationTurns,
                f64::from(cap),
                f64::from(turns),
            ));
        }
        if let Some(cap) = caps.per_conversation_usd
            && spent >= cap
        {
            return Err(refuse(Cap::ConversationUsd, cap, spent));
        }
    }
    if let Some(cap) = caps.per_tenant_usd_per_day
        && used.tenant_usd_today >= cap
    {
        return Err(refuse(Cap::TenantUsdPerDay, cap, used.tenant_usd_today));
    }
    Ok(())
}

/// Caps from config and run time, resolved per profile.
pub struct Budgets {
    config: Caps,
    overrides: RwLock<Overrides>,
}

impl Budgets {
    pub fn new(config: Caps, overrides: Overrides) -> Self {
        Self {
            config,
            overrides: RwLock::new(overrides),
        }
    }

    /// The caps in force for a profile whose config caps are `profile_caps`:
    /// run-time for the profile, config for the profile, run-time for every
    /// profile, config `[budgets]` — first set wins, key by key.
    pub fn effective(&self, profile: &str, profile_caps: Caps) -> Caps {
        let o = self.overrides.read().unwrap_or_else(|e| e.into_inner());
        o.profiles
            .get(profile)
            .copied()
            .unwrap_or_default()
            .or(profile_caps)
            .or(o.global)
            .or(self.config)
            .normalized()
    }

    /// Sets run-time caps in a scope (`""`: every profile); returns the new
    /// overrides to store.
    pub fn set(&self, profile: &str, caps: Caps, reset: bool) -> Overrides {
        let mut o = self.overrides.write().unwrap_or_else(|e| e.into_inner());
        let scope = if profile.is_empty() {
            &mut o.global
        } else {
            o.profiles.entry(profile.to_owned()).or_default()
        };
        if reset {
            *scope = Caps::default();
        }
        scope.merge(caps);
        if !profile.is_empty() && o.profiles.get(profile).is_some_and(Caps::is_empty) {
            o.profiles.remove(profile);
        }
        o.clone()
    }

    /// Replaces the run-time caps (as another replica stored them).
    pub fn replace(&self, overrides: Overrides) {
        *self.overrides.write().unwrap_or_else(|e| e.into_inner()) = overrides;
    }

    /// The run-time caps.
    pub fn overrides(&self) -> Overrides {
        self.overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
