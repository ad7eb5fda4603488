//! The control plane's one error type: why a request was refused. Every
//! service returns a [`Refusal`]; it becomes a `tonic::Status` in exactly one
//! place (`From<Refusal> for Status`), and metrics label it by
//! [`Refusal::label`], never by re-reading status codes.

use keel::metadata;
use tonic::{Status, metadata::MetadataValue};

use crate::{budget::Exceeded, divergence::Pattern, policy::PolicyError, store::StoreError};

/// A refused request.
#[derive(Debug)]
pub enum Refusal {
    /// The request is malformed (ids, unknown profile, a missing field).
    Invalid(String),
    /// The request names something that does not exist (a model outside the
    /// catalog, an unknown conversation).
    NotFound(String),
    /// No model in the catalog meets the request under its profile.
    NoCandidate(String),
    /// A budget cap is reached: the conversation is paused, not ended.
    Budget(Exceeded),
    /// Shed under load (profiles with a shed priority); wait and retry.
    Shed {
        message: String,
        retry_after_secs: u64,
    },
    /// Every deployment of the conversation's pinned model is down and the
    /// pin is kept; wait and retry.
    PinnedUnavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// The conversation is pinned to a model that left the catalog.
    PinnedGone { model: String },
    /// Divergence escalation `stop`: the caller should end the agent's run.
    DivergenceStop { pattern: Pattern, message: String },
    /// The session store failed (the caller may retry; the cause is logged).
    Store(StoreError),
}

impl Refusal {
    /// Metric labels, in the order [`Refusal::label_index`] numbers them.
    pub const LABELS: [&'static str; 8] = [
        "budget",
        "shed",
        "pinned_unavailable",
        "divergence_stop",
        "invalid",
        "no_candidate",
        "pinned_gone",
        "store",
    ];

    /// The low-cardinality metric label of this refusal.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.label_index()]
    }

    /// Index of [`Self::label`] in [`Self::LABELS`].
    pub fn label_index(&self) -> usize {
        match self {
            Self::Budget(_) => 0,
            Self::Shed { .. } => 1,
            Self::PinnedUnavailable { .. } => 2,
            Self::DivergenceStop { .. } => 3,
            Self::Invalid(_) | Self::NotFound(_) => 4,
            Self::NoCandidate(_) => 5,
            Self::PinnedGone { .. } => 6,
            Self::Store(_) => 7,
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<PolicyError> for Refusal {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::NoCandidate { .. } => Self::NoCandidate(e.to_string()),
            PolicyError::Shed {
                retry_after_secs, ..
            } => Self::Shed {
                message: e.to_string(),
                retry_after_secs,
            },
        }
    }
}

/// The one mapping from a refusal to its gRPC status and metadata (the
/// contract `router.proto` documents).
impl From<Refusal> for Status {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(m) => Status::invalid_argument(m),
            Refusal::NotFound(m) => Status::not_found(m),
            Refusal::NoCandidate(m) => Status::failed_precondition(m),
            Refusal::Budget(e) => budget_status(&e),
            Refusal::Shed {
                message,
                retry_after_secs,
            } => with(
                Status::resource_exhausted(message),
                &[(metadata::RETRY_AFTER, retry_after_secs.to_string())],
            ),
            // Aborted, not Unavailable: the sidecar must not mistake these
            // for an unreachable control plane and fail static.
            Refusal::PinnedUnavailable {
                message,
                retry_after_secs,
            } => with(
                Status::aborted(message),
                &[(metadata::RETRY_AFTER, retry_after_secs.to_string())],
            ),
            Refusal::PinnedGone { model } => Status::aborted(format!(
                "conversation is pinned to model `{model}`, which is no longer in the catalog"
            )),
            Refusal::DivergenceStop { pattern, message } => with(
                Status::failed_precondition(message),
                &[(metadata::DIVERGENCE, pattern.as_str().to_owned())],
            ),
            Refusal::Store(e) => {
                tracing::error!(error = %e, "session store failed");
                Status::internal("session store unavailable")
            }
        }
    }
}

/// RESOURCE_EXHAUSTED with `keel-budget` and the amounts as metadata.
fn budget_status(e: &Exceeded) -> Status {
    let mut md = vec![
        (metadata::BUDGET, e.cap.as_str().to_owned()),
        (metadata::BUDGET_LIMIT, e.limit.to_string()),
        (metadata::BUDGET_USED, e.used.to_string()),
    ];
    if let Some(usd) = e.remaining_usd {
        md.push((metadata::BUDGET_REMAINING_USD, format!("{usd:.6}")));
    }
    if let Some(turns) = e.remaining_turns {
        md.push((metadata::BUDGET_REMAINING_TURNS, turns.to_string()));
    }
    with(Status::resource_exhausted(e.to_string()), &md)
}

fn with(mut status: Status, metadata: &[(&'static str, String)]) -> Status {
    let md = status.metadata_mut();
    for (k, v) in metadata {
        if let Ok(v) = MetadataValue::try_from(v.as_str()) {
            md.insert(*k, v);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Cap;

    #[test]
    fn a_budget_refusal_carries_its_metadata() {
        let s = Status::from(Refusal::Budget(Exceeded {
            cap: Cap::ConversationTurns,
            limit: 2.0,
            used: 2.0,
            remaining_usd: None,
            remaining_turns: Some(0),
        }));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let md = s.metadata();
        assert_eq!(md.get(metadata::BUDGET).unwrap(), "conversation_turns");
        assert_eq!(md.get(metadata::BUDGET_REMAINING_TURNS).unwrap(), "0");
        assert_eq!(md.get(metadata::BUDGET_LIMIT).unwrap(), "2");
        assert!(s.message().contains("2 of its 2 turns"), "{}", s.message());
    }

    #[test]
    fn a_model_that_left_the_catalog_is_not_counted_as_pinned_unavailable() {
        let gone = Refusal::PinnedGone { model: "m".into() };
        assert_eq!(gone.label(), "pinned_gone");
        assert_eq!(Status::from(gone).code(), tonic::Code::Aborted);
        let down = Refusal::PinnedUnavailable {
            message: "down".into(),
            retry_after_secs: 7,
        };
        assert_eq!(down.label(), "pinned_unavailable");
        let s = Status::from(down);
        assert_eq!(s.metadata().get(metadata::RETRY_AFTER).unwrap(), "7");
    }

    #[test]
    fn shed_and_budget_share_a_code_and_differ_by_metadata() {
        let s = Status::from(Refusal::Shed {
            message: "busy".into(),
            retry_after_secs: 3,
        });
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.metadata().get(metadata::BUDGET).is_none());
        assert_eq!(s.metadata().get(metadata::RETRY_AFTER).unwrap(), "3");
    }

    #[test]
    fn every_label_is_distinct() {
        let mut labels = Refusal::LABELS.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::LABELS.len());
    }
}
