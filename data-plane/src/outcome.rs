//! The outcome of one app request, filled in along the request path and
//! handed to the reporter exactly once.

use std::time::Instant;

use keel::pb;

use crate::{report::Reporter, translate::Usage};

/// An outcome not yet reported.
pub struct Pending {
    reporter: Reporter,
    outcome: pb::Outcome,
    started: Instant,
    /// The request's slot under `--max-concurrency`, held until the outcome
    /// is settled (for a stream: until it ends or the app goes away).
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// When the last recorded attempt was sent, for its duration in metrics.
    last_attempt_started: Option<Instant>,
    /// The answer is relayed as a stream (its first chunk is measured).
    streamed: bool,
    /// The calls' times, for their spans (when traces are exported).
    spans: Option<crate::genai_span::CallTimes>,
}

impl Pending {
    pub fn new(reporter: Reporter, outcome: pb::Outcome, started: Instant) -> Self {
        Self {
            reporter,
            outcome,
            started,
            slot: None,
            last_attempt_started: None,
            streamed: false,
            spans: crate::genai_span::CallTimes::start(),
        }
    }

    /// Holds the request's concurrency slot for as long as the outcome is
    /// pending.
    pub fn holding(mut self, slot: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        self.slot = slot;
        self
    }

    /// The answer is relayed as a stream.
    pub fn streamed(mut self) -> Self {
        self.streamed = true;
        self
    }

    /// Attempts recorded so far.
    pub fn attempts(&self) -> usize {
        self.outcome.attempts.len()
    }

    /// Records one attempt.
    pub fn attempt(&mut self, attempt: pb::Attempt) {
        if let Some(s) = &mut self.spans {
            s.attempt(attempt.latency_ms);
        }
        self.last_attempt_started =
            Instant::now().checked_sub(std::time::Duration::from_millis(attempt.latency_ms.into()));
        self.outcome.attempts.push(attempt);
    }

    /// Names the catalog model that served the request.
    pub fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.outcome.model);
    }

    /// Marks the time to the first streamed event on the last attempt.
    pub fn first_byte(&mut self, attempt_started: Instant) {
        if let Some(a) = self.outcome.attempts.last_mut() {
            a.ttft_ms = crate::upstream::ms_since(attempt_started);
        }
    }

    /// Reports the outcome.
    pub fn finish(mut self, usage: Usage, success: bool, stream_completed: bool) {
        self.outcome.usage = Some(pb::Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_creation_tokens: usage.cache_creation_tokens,
        });
        self.outcome.success = success;
        self.outcome.stream_completed = stream_completed;
        self.outcome.total_latency_ms = crate::upstream::ms_since(self.started);
        self.slot = None;
        self.reporter.metrics.outcome(
            &self.outcome,
            self.last_attempt_started.map(|t| t.elapsed()),
            self.streamed,
        );
        if let Some(s) = self.spans.take() {
            s.emit(&self.outcome);
        }
        self.reporter.send(self.outcome);
    }
}
