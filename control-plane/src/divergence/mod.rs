//! Loop detection in the control plane.
//!
//! [`DetectorState`] is kept in the session store, one per conversation, and fed the tail
//! window of [`keel::fingerprint::TurnFp`]s on every routed turn (the sidecar computes them,
//! see `keel::fingerprint`). It keeps a bounded ring of recent steps (an assistant turn
//! plus its results), so it survives restarts and the agent's own context compaction, and
//! returns a [`Nudge`] when a loop pattern is current. The router injects the nudge,
//! records a [`DivergenceEvent`] in the decision timeline and counts it in metrics.

mod config;
mod ingest;
mod signals;
mod stale;
mod state;
#[cfg(test)]
mod tests;

pub use config::{DivergenceConfig, Escalation, InvalidSetting, Messages, Thresholds};
pub use state::DetectorState;
pub(crate) use state::{Seen, Step};

use serde::{Deserialize, Serialize};

/// The kind of loop that was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// The same action returned the same result several times in a row.
    RepeatedAction,
    /// The same action failed with the same error several times in a row.
    RepeatedFailure,
    /// Different actions all failed with the same error.
    RepeatedError,
    /// A short sequence of actions (A-B-A-B, A-B-C-A-B-C) repeats with the same results.
    Cycle,
    /// Near-duplicate assistant text (re-asking, re-explaining) without progress between.
    RepeatedText,
    /// Many steps in a row brought no new action/result pair.
    NoProgress,
}

impl Pattern {
    /// Stable, low-cardinality name for events, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::RepeatedAction => "repeated_action",
            Pattern::RepeatedFailure => "repeated_failure",
            Pattern::RepeatedError => "repeated_error",
            Pattern::Cycle => "cycle",
            Pattern::RepeatedText => "repeated_text",
            Pattern::NoProgress => "no_progress",
        }
    }

    /// Every pattern, in the order the detector checks them.
    pub const ALL: [Pattern; 6] = [
        Pattern::RepeatedFailure,
        Pattern::RepeatedAction,
        Pattern::RepeatedError,
        Pattern::Cycle,
        Pattern::RepeatedText,
        Pattern::NoProgress,
    ];
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A nudge as recorded in the conversation's decision timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergenceEvent {
    /// Pattern name ([`Pattern::as_str`]).
    pub pattern: String,
    /// Message indices of the assistant turns involved, oldest first.
    pub turns: Vec<u32>,
    /// Escalation applied with this nudge: `off`, `stronger_model` or `stop`.
    pub escalation: String,
}

impl DivergenceEvent {
    /// The event for `nudge`, with the escalation actually applied.
    pub fn new(nudge: &Nudge, applied: Escalation) -> Self {
        Self {
            pattern: nudge.pattern.as_str().to_owned(),
            turns: nudge.turns.clone(),
            escalation: applied.as_str().to_owned(),
        }
    }

    /// Protobuf form for `DecisionRecord.events`.
    pub fn to_proto(&self) -> keel::pb::DivergenceEvent {
        keel::pb::DivergenceEvent {
            pattern: self.pattern.clone(),
            turns: self.turns.clone(),
            escalation: self.escalation.clone(),
        }
    }
}

/// What the control plane should do this turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nudge {
    /// The loop that was detected.
    pub pattern: Pattern,
    /// Message indices of the assistant turns that form the evidence, oldest first, as
    /// they were numbered when observed (compaction may have renumbered them since).
    pub turns: Vec<u32>,
    /// Corrective system message to inject into this turn's request.
    pub message: String,
    /// Stronger response requested by config; [`Escalation::Off`] on a first nudge.
    pub escalate: Escalation,
}
