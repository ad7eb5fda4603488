//! Detector configuration: parsed with unknown keys rejected, then validated.

use serde::{Deserialize, Serialize};

/// The `[divergence]` table of the control plane's config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DivergenceConfig {
    /// Master switch; when off, `observe` returns `None` and leaves the state untouched.
    pub enabled: bool,
    /// When each pattern fires.
    pub thresholds: Thresholds,
    /// Steps (assistant turns) to wait after a nudge before the next one.
    pub backoff_turns: u32,
    /// What to do when nudges are not heeded. Off by default.
    pub escalation: Escalation,
    /// Nudges in a row (without progress between) before `escalation` applies.
    pub escalate_after_nudges: u32,
    /// Wording of the injected system message, per pattern.
    pub messages: Messages,
}

impl Default for DivergenceConfig {
    fn default() -> Self {
        DivergenceConfig {
            enabled: true,
            thresholds: Thresholds::default(),
            backoff_turns: 4,
            escalation: Escalation::Off,
            escalate_after_nudges: 1,
            messages: Messages::default(),
        }
    }
}

/// Counts at which each pattern fires. Defaults are conservative: a detector that nudges
/// healthy agents is worse than none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// The same action this many times in a row with the same result that tells nothing
    /// new (a failure, a trivial output, or the agent repeating its own words).
    pub repeated_action: u32,
    /// Stale steps in a row (each repeating an earlier action, result or error, weighted
    /// by how closely) before they count as a loop, in repeats' worth.
    pub stale_run: u32,
    /// Accepted for old configs; no longer used (see `stale_run`).
    pub repeated_failure: u32,
    /// Accepted for old configs; no longer used (see `stale_run`).
    pub repeated_error: u32,
    /// Accepted for old configs; no longer used (a cycle is two repeats in a row of
    /// different earlier steps, within `cycle_max_period`).
    pub cycle_repeats: u32,
    /// Accepted for old configs; no longer used.
    pub cycle_min_steps: u32,
    /// How many of the latest action steps a repeat is looked for in: the longest cycle
    /// period recognised (2 = A-B, 4 = edit-test-revert-test).
    pub cycle_max_period: u32,
    /// Near-duplicate assistant texts since the last new action.
    pub repeated_text: u32,
    /// Maximum simhash Hamming distance for two texts to be near-duplicates. Paraphrases
    /// of one question measure 3-15 bits apart, unrelated texts 17 and more.
    pub text_max_distance: u32,
    /// Steps looked back for near-duplicate texts.
    pub text_lookback: u32,
    /// Steps in a row without a new action/result pair.
    pub no_progress: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            repeated_action: 3,
            stale_run: 3,
            repeated_failure: 3,
            repeated_error: 4,
            cycle_repeats: 2,
            cycle_min_steps: 6,
            cycle_max_period: 4,
            repeated_text: 3,
            text_max_distance: 12,
            text_lookback: 12,
            no_progress: 8,
        }
    }
}

/// Stronger response once nudges are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Escalation {
    /// Only nudge.
    #[default]
    Off,
    /// Route the next turns to the strongest allowed model, until the agent makes
    /// progress. Only for profiles without a session lock: a pinned conversation is never
    /// switched (it keeps getting nudges only).
    StrongerModel,
    /// Refuse the turn: `Route` returns `FAILED_PRECONDITION` naming the pattern.
    Stop,
}

impl Escalation {
    /// The config spelling, also used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Escalation::Off => "off",
            Escalation::StrongerModel => "stronger_model",
            Escalation::Stop => "stop",
        }
    }
}

/// System message wording per pattern; `{count}` is replaced by the number of steps
/// involved and `{turns}` by their message indices ("11, 13 and 15"), so the agent can
/// look up what it repeated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Messages {
    /// For [`super::Pattern::RepeatedAction`].
    pub repeated_action: String,
    /// For [`super::Pattern::RepeatedFailure`].
    pub repeated_failure: String,
    /// For [`super::Pattern::RepeatedError`].
    pub repeated_error: String,
    /// For [`super::Pattern::Cycle`].
    pub cycle: String,
    /// For [`super::Pattern::RepeatedText`].
    pub repeated_text: String,
    /// For [`super::Pattern::NoProgress`].
    pub no_progress: String,
}

impl Default for Messages {
    fn default() -> Self {
        Messages {
            repeated_action: "Your last {count} actions ran the same command or tool call and got \
                the same output each time (messages {turns}). Running it again will not show \
                anything new: use the output you already have, or do something different."
                .into(),
            repeated_failure: "The same command or tool call has failed {count} times in a row \
                with the same error (messages {turns}). Do not send it again unchanged: read the \
                error, fix what it points at (the path, the arguments, the format of your reply), \
                or take another route."
                .into(),
            repeated_error: "Your last {count} attempts (messages {turns}) were variants that all \
                failed with the same error, or were all rejected with the same message. Changing \
                the arguments is not fixing it: read that error, find its cause and fix the cause \
                first."
                .into(),
            cycle: "You are going round in a cycle: your last {count} actions (messages {turns}) \
                repeat the same few steps with the same results. Stop, write down what those \
                steps showed you, and choose a step you have not taken yet."
                .into(),
            repeated_text: "You have written nearly the same message {count} times (messages \
                {turns}) without making progress. Do not repeat it: act on the information you \
                already have, or ask for something different."
                .into(),
            no_progress: "Your last {count} steps (messages {turns}) brought nothing new: each \
                repeated an earlier command or got the same answer as before, whatever you changed \
                in between. Summarize what you know, then try a different approach or finish."
                .into(),
        }
    }
}

impl Messages {
    /// The wording for `pattern`.
    pub fn for_pattern(&self, pattern: super::Pattern) -> &str {
        use super::Pattern::*;
        match pattern {
            RepeatedAction => &self.repeated_action,
            RepeatedFailure => &self.repeated_failure,
            RepeatedError => &self.repeated_error,
            Cycle => &self.cycle,
            RepeatedText => &self.repeated_text,
            NoProgress => &self.no_progress,
        }
    }
}

/// A configuration value outside its allowed range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSetting {
    /// Dotted key, e.g. `thresholds.repeated_action`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid `divergence.{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for InvalidSetting {}

impl DivergenceConfig {
    /// Checks ranges the detector relies on. Call once after parsing, before serving.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let t = &self.thresholds;
        let ring = super::state::STEP_CAP as u32;
        let checks: [(&'static str, bool, &'static str); 11] = [
            (
                "thresholds.stale_run",
                (2..=ring / 2).contains(&t.stale_run),
                "must be 2..=16",
            ),
            (
                "thresholds.repeated_action",
                (2..=ring).contains(&t.repeated_action),
                "must be 2..=32",
            ),
            (
                "thresholds.repeated_failure",
                (2..=ring).contains(&t.repeated_failure),
                "must be 2..=32",
            ),
            (
                "thresholds.repeated_error",
                (2..=ring).contains(&t.repeated_error),
                "must be 2..=32",
            ),
            (
                "thresholds.cycle_repeats",
                t.cycle_repeats >= 2,
                "must be at least 2",
            ),
            (
                "thresholds.cycle_max_period",
                (2..=4).contains(&t.cycle_max_period)
                    && t.cycle_repeats.saturating_mul(t.cycle_max_period) <= ring,
                "must be 2..=4, with cycle_repeats * cycle_max_period <= 32",
            ),
            (
                "thresholds.cycle_min_steps",
                (4..=ring).contains(&t.cycle_min_steps),
                "must be 4..=32",
            ),
            (
                "thresholds.repeated_text",
                (2..=ring).contains(&t.repeated_text),
                "must be 2..=32",
            ),
            (
                "thresholds.text_max_distance",
                t.text_max_distance <= 16,
                "must be at most 16",
            ),
            (
                "thresholds.text_lookback",
                (t.repeated_text..=ring).contains(&t.text_lookback),
                "must be repeated_text..=32",
            ),
            (
                "thresholds.no_progress",
                (2..=ring).contains(&t.no_progress),
                "must be 2..=32",
            ),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return Err(InvalidSetting { key, reason });
            }
        }
        if self.escalation != Escalation::Off && self.escalate_after_nudges == 0 {
            return Err(InvalidSetting {
                key: "escalate_after_nudges",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}
