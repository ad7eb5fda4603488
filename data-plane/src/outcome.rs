//! The outcome of one app request, filled in along the request path and
//! handed to the reporter exactly once: by [`Pending::finish`], or, when the
//! request is dropped first (the app hung up), by `Drop` as cancelled.

use std::time::Instant;

use keel::pb;

use crate::{report::Reporter, translate::Usage};

/// Error class of an attempt the app went away during.
pub const CANCELLED: &str = "cancelled";
/// Error class of an attempt whose answer broke off or went idle after the
/// response head (the control plane counts it against the deployment).
pub const STREAM_BROKEN: &str = "stream_broken";

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The whole answer reached the app.
    Completed,
    /// The provider's answer broke off, went idle or could not be read after
    /// its head arrived: the last attempt is marked [`STREAM_BROKEN`].
    Broken,
    /// No attempt produced an answer (each attempt says why).
    Failed,
    /// The app went away before the answer was complete.
    Cancelled,
}

/// An outcome not yet reported.
pub struct Pending {
    reporter: Reporter,
    outcome: pb::Outcome,
    reported: bool,
    started: Instant,
    /// The request's estimated prompt tokens, counted as its input when the
    /// provider's usage never arrives.
    prompt_tokens: u32,
    /// Output tokens relayed to the app so far, by the sidecar's estimate.
    relayed_tokens: u32,
    /// The request's slot under `--max-concurrency`, held until the outcome
    /// is settled (for a stream: until it ends or the app goes away).
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// When the last recorded attempt was sent, for its duration in metrics.
    last_attempt_started: Option<Instant>,
    /// The answer is relayed as a stream (its first chunk is measured).
    streamed: bool,
    /// The calls' times, for their spans (when traces are exported).
    spans: Option<crate::genai_span::CallTimes>,
    /// Why the served answer ended, as the provider said it
    /// ([`crate::translate::reason_as_sent`]), for its span.
    finish_reason: Option<&'static str>,
}

impl Pending {
    pub fn new(reporter: Reporter, outcome: pb::Outcome, started: Instant) -> Self {
        Self {
            reporter,
            outcome,
            reported: false,
            started,
            prompt_tokens: 0,
            relayed_tokens: 0,
            slot: None,
            last_attempt_started: None,
            streamed: false,
            spans: crate::genai_span::CallTimes::start(),
            finish_reason: None,
        }
    }

    /// Holds the request's concurrency slot for as long as the outcome is
    /// pending.
    pub fn holding(mut self, slot: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        self.slot = slot;
        self
    }

    /// The request's estimated prompt size, for counting a turn whose usage
    /// never arrives.
    pub fn estimating(mut self, prompt_tokens: u32) -> Self {
        self.prompt_tokens = prompt_tokens;
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

    /// Starts an attempt on `target`. Until [`Self::last_attempt`] fills it
    /// in, it stands as [`CANCELLED`]: if the app goes away meanwhile, that
    /// is what is reported (and the key is released).
    pub fn begin_attempt(&mut self, target: &pb::Target) {
        self.last_attempt_started = Some(Instant::now());
        if let Some(s) = &mut self.spans {
            s.begin();
        }
        self.outcome.attempts.push(pb::Attempt {
            target: Some(target.clone()),
            error_class: CANCELLED.to_owned(),
            ..Default::default()
        });
    }

    /// The attempt under way (or the last one).
    pub fn last_attempt(&mut self) -> Option<&mut pb::Attempt> {
        self.outcome.attempts.last_mut()
    }

    /// Names the catalog model that served the request.
    pub fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.outcome.model);
    }

    /// Marks the time to the first streamed event on the last attempt.
    pub fn first_byte(&mut self, attempt_started: Instant) {
        if let Some(a) = self.last_attempt() {
            a.ttft_ms = crate::upstream::ms_since(attempt_started);
        }
    }

    /// Records why the served answer ended (when the provider said).
    pub fn set_finish_reason(&mut self, reason: Option<&'static str>) {
        self.finish_reason = reason;
    }

    /// Counts `tokens` more output tokens relayed to the app (an estimate).
    pub fn relayed(&mut self, tokens: u32) {
        self.relayed_tokens = self.relayed_tokens.saturating_add(tokens);
    }

    /// Reports the outcome: `usage` as read from the provider (default when
    /// none arrived).
    pub fn finish(mut self, usage: Usage, ending: Ending) {
        self.report(usage, ending);
    }

    fn report(&mut self, usage: Usage, ending: Ending) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let mut outcome = std::mem::take(&mut self.outcome);
        let (counted, estimated) = counted(usage, self.prompt_tokens, self.relayed_tokens, ending);
        outcome.usage = Some(pb::Usage {
            input_tokens: counted.input_tokens,
            output_tokens: counted.output_tokens,
            cached_input_tokens: counted.cached_input_tokens,
            cache_creation_tokens: counted.cache_creation_tokens,
            estimated,
        });
        outcome.success = ending == Ending::Completed;
        outcome.stream_completed = ending == Ending::Completed;
        outcome.cancelled = ending == Ending::Cancelled;
        if ending == Ending::Broken
            && let Some(a) = outcome.attempts.last_mut()
        {
            STREAM_BROKEN.clone_into(&mut a.error_class);
        }
        outcome.total_latency_ms = crate::upstream::ms_since(self.started);
        if outcome.cancelled {
            tracing::debug!(
                decision_id = %outcome.decision_id,
                attempts = outcome.attempts.len(),
                "the app went away; reported cancelled"
            );
        }
        self.slot = None;
        self.reporter.metrics.outcome(
            &outcome,
            self.last_attempt_started.map(|t| t.elapsed()),
            self.streamed,
        );
        if let Some(s) = self.spans.take() {
            s.emit(&outcome, self.finish_reason);
        }
        self.reporter.send(outcome);
    }
}

impl Drop for Pending {
    /// The request was dropped before it finished: the app went away. Its
    /// slot is released and the outcome reported as cancelled at once.
    fn drop(&mut self) {
        self.report(Usage::default(), Ending::Cancelled);
    }
}

/// The usage to count for a request, and whether it is an estimate. The
/// provider's own count when the answer completed with one; otherwise what
/// arrived, completed by estimates (the prompt's size, the tokens relayed),
/// so that a turn cut short still counts against budgets. Nothing relayed
/// and nothing reported counts nothing.
pub fn counted(usage: Usage, prompt_tokens: u32, relayed: u32, ending: Ending) -> (Usage, bool) {
    let reported = usage.input_tokens > 0 || usage.output_tokens > 0;
    if (ending == Ending::Completed && usage.output_tokens > 0) || (!reported && relayed == 0) {
        return (usage, false);
    }
    let mut c = usage;
    if c.input_tokens == 0 {
        c.input_tokens = prompt_tokens;
    }
    // A stream cut short reports at most part of its output (Anthropic's
    // `message_start` says 1): what was relayed is at least as good.
    c.output_tokens = c.output_tokens.max(relayed);
    let estimated = c != usage;
    (c, estimated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;

    fn target() -> pb::Target {
        pb::Target {
            model: "m".into(),
            provider: "p".into(),
            key_ref: "k".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_dropped_request_is_reported_cancelled_with_its_attempt_and_frees_its_slot() {
        let (reporter, mut rx) = report::capture(1);
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let slot = slots.clone().try_acquire_owned().unwrap();
        let mut p = Pending::new(reporter, pb::Outcome::default(), Instant::now())
            .holding(Some(slot))
            .estimating(100);
        p.begin_attempt(&target());
        drop(p);
        let o = rx.try_recv().expect("reported on drop");
        assert!(o.cancelled && !o.success);
        assert_eq!(o.attempts.len(), 1);
        assert_eq!(o.attempts[0].error_class, CANCELLED);
        assert_eq!(slots.available_permits(), 1, "slot released at once");
        assert_eq!(
            o.usage.unwrap().input_tokens,
            0,
            "nothing relayed, nothing counted"
        );
        assert!(rx.try_recv().is_err(), "exactly once");
    }

    #[test]
    fn a_finished_request_is_reported_once() {
        let (reporter, mut rx) = report::capture(2);
        let mut p = Pending::new(reporter, pb::Outcome::default(), Instant::now());
        p.begin_attempt(&target());
        p.last_attempt().unwrap().error_class.clear();
        p.finish(
            Usage {
                input_tokens: 5,
                output_tokens: 7,
                ..Default::default()
            },
            Ending::Completed,
        );
        let o = rx.try_recv().unwrap();
        assert!(o.success && !o.cancelled && o.stream_completed);
        assert!(!o.usage.unwrap().estimated);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_broken_stream_marks_its_attempt_and_counts_what_was_relayed() {
        let (reporter, mut rx) = report::capture(1);
        let mut p = Pending::new(reporter, pb::Outcome::default(), Instant::now()).estimating(40);
        p.begin_attempt(&target());
        p.last_attempt().unwrap().error_class.clear();
        p.relayed(3);
        p.finish(Usage::default(), Ending::Broken);
        let o = rx.try_recv().unwrap();
        assert!(!o.success && !o.stream_completed && !o.cancelled);
        assert_eq!(o.attempts[0].error_class, STREAM_BROKEN);
        let u = o.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.estimated),
            (40, 3, true)
        );
    }

    #[test]
    fn counting_prefers_the_providers_usage() {
        let u = |i, o| Usage {
            input_tokens: i,
            output_tokens: o,
            ..Default::default()
        };
        assert_eq!(
            counted(u(10, 20), 99, 5, Ending::Completed),
            (u(10, 20), false)
        );
        assert_eq!(counted(u(0, 0), 99, 0, Ending::Cancelled), (u(0, 0), false));
        assert_eq!(counted(u(0, 0), 99, 4, Ending::Cancelled), (u(99, 4), true));
        // Anthropic's start says input and 1 output: output from the relay.
        assert_eq!(
            counted(u(10, 1), 99, 6, Ending::Cancelled),
            (u(10, 6), true)
        );
        // A completed answer without usage is estimated too.
        assert_eq!(counted(u(0, 0), 50, 8, Ending::Completed), (u(50, 8), true));
    }
}
