//! Divergence nudges and stops: logged, counted and recorded in the
//! conversation's timeline.

use keel::pb::DecisionKind;

use super::RouterState;
use crate::{
    divergence::{DivergenceEvent, Escalation, Nudge},
    refusal::Refusal,
    store::{DecisionEntry, SessionKey},
};

impl RouterState {
    /// Logs and counts a nudge; returns its timeline event.
    pub(super) fn nudged(
        &self,
        conversation_id: &str,
        n: &Nudge,
        applied: Escalation,
    ) -> DivergenceEvent {
        tracing::info!(
            conversation_id = %conversation_id,
            pattern = %n.pattern,
            turns = ?n.turns,
            escalation = applied.as_str(),
            "divergence nudge"
        );
        self.metrics.nudge(n.pattern, applied);
        DivergenceEvent::new(n, applied)
    }

    /// Escalation `stop`: records the event in the timeline (a decision without a
    /// target) and returns the refusal the caller must end the run on.
    pub(super) async fn stop(
        &self,
        key: SessionKey,
        conversation_id: &str,
        n: &Nudge,
        decision_id: &str,
        turn: u32,
        now: u64,
    ) -> Refusal {
        let event = self.nudged(conversation_id, n, Escalation::Stop);
        let entry = DecisionEntry {
            decision_id: decision_id.to_owned(),
            turn,
            kind: DecisionKind::Unspecified as i32,
            model: String::new(),
            provider: String::new(),
            reason: format!("divergence stop: {}", n.pattern),
            at_ms: now,
            events: vec![event],
            result: None,
        };
        self.decision_log.record(key, entry).await;
        Refusal::DivergenceStop {
            pattern: n.pattern,
            message: format!(
                "divergence stop: {}: the agent kept looping after being nudged (turns {:?}); end this run",
                n.pattern, n.turns
            ),
        }
    }
}
