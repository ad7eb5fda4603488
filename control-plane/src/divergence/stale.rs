//! Staleness of action steps: did a step bring anything new, and if not, how strongly
//! does it repeat what came before? The loop patterns in `signals.rs` read these classes.
//!
//! Classes, from the strongest evidence down (weights in quarters of a repeat; a run of
//! stale steps worth `stale_run` repeats is a loop):
//! * `Same`: the same action as one of the last few (`cycle_max_period`) action steps,
//!   with the same result (4; 2 for a short successful output coming back after other
//!   steps, which is what polling looks like);
//! * `SameNear`: the same action right after itself, the output identical but for its
//!   numbers (a file that grows by the same block: the same view, a new line count) (4;
//!   2 when short);
//! * `Error`: a failure with a signature (digits folded) or output seen before: the same
//!   call among the last few (4), a variant described in near-identical prose (4, or 3
//!   when older), a variant with near-identical arguments (3), a failure without a
//!   message or another command (2);
//! * `Echo`: another action among the last few answered with the very same message (a
//!   harness rejection) (4; 1 for near-identical arguments);
//! * `NearFailure`: a failure close in arguments and output to an earlier one (2);
//! * `Fresh`: anything else; it ends a run of stale steps.
//!
//! Not repeats: a silent command (an edit) answered with the same empty output as another,
//! and one more variant of a sweep that prints the same substantial report for each
//! argument (`Echo` with weight 0). Steps whose result is tiny and new (a `think` or
//! `calculate` call) are `Neutral`: they neither add to nor break a run.

use super::state::Step;

/// How far back (in steps) a step is compared.
const LOOKBACK: usize = 16;

/// Results shorter than this (bytes, normalized) carry no observation of their own.
const TINY: u32 = 16;

/// Results at least this long are messages, not the empty output of a silent command.
const MESSAGE: u32 = 100;

/// Simhash distances: near-identical results, re-guessed arguments, repeated prose.
pub(crate) struct Near {
    pub result: u32,
    pub args: u32,
    pub prose: u32,
}

const W_PROSE: u32 = 3;
const W_ARGS: u32 = 3;

pub(crate) const NEAR: Near = Near {
    result: 6,
    args: 8,
    prose: 16,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Neutral,
    Fresh,
    Same,
    SameNear,
    Error,
    Echo,
    NearFailure,
}

/// Class and weight (quarters) of a step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stale {
    pub class: Class,
    pub weight: u32,
}

/// Outputs shorter than this (bytes, normalized) are trivial: an empty listing, a
/// "not found", a bare prompt.
pub(crate) const TRIVIAL: u32 = 200;

/// The two turns' prose is near-identical (the agent says the same thing again), within
/// a tighter distance than [`NEAR`]'s: here it is the only evidence besides the repeat.
pub(crate) fn near_prose(a: &Step, b: &Step) -> bool {
    near(a.sim, b.sim, 12)
}

/// A sweep: a variant of the same call with near-identical arguments that returned the
/// very same substantial output (a report). Trying edge cases that all print the same
/// report is work; variants that all come back empty or with the same short failure
/// are not (see [`echo_weight`], [`error_weight`]).
fn same_report_sweep(o: &Step, s: &Step) -> bool {
    o.act != s.act && near(o.asim, s.asim, NEAR.args) && s.rsize >= TRIVIAL && o.rshape == s.rshape
}

/// How strongly a failure with the same signature as `o` repeats it: the same action
/// (among the last few), a variant the agent describes in near-identical words, a
/// variant with near-identical arguments, or another variant.
fn error_weight(o: &Step, s: &Step, recent: bool) -> u32 {
    if same_report_sweep(o, s) {
        0
    } else if o.act == s.act && recent {
        4
    } else if s.ekey == 0 {
        // Failures without a message (searches that each find nothing): exploring,
        // until there are many.
        2
    } else if near(o.sim, s.sim, NEAR.prose) {
        if recent { 4 } else { W_PROSE }
    } else if near(o.asim, s.asim, NEAR.args) {
        W_ARGS
    } else {
        2
    }
}

/// How strongly another action answered with the same output as the step just before
/// repeats it: a message returned whatever the agent changed (a rejection) weighs a full
/// repeat; an empty output (silent commands, edits) little; a sweep nothing.
fn echo_weight(o: &Step, s: &Step) -> u32 {
    if same_report_sweep(o, s) {
        0
    } else if near(o.asim, s.asim, NEAR.args) {
        1
    } else {
        4
    }
}

fn near(a: u64, b: u64, max: u32) -> bool {
    a != 0 && b != 0 && (a ^ b).count_ones() <= max
}

/// Classifies action step `k` against the action steps before it; `recent` is how many
/// of the latest earlier action steps count as "just before" (the longest cycle period).
pub(crate) fn classify(steps: &[Step], k: usize, recent: usize) -> Stale {
    let s = &steps[k];
    // Action steps among the LOOKBACK before k, on the stack (this runs for every step of
    // the ring on every turn).
    let mut buf = [0usize; LOOKBACK];
    let mut len = 0;
    for j in (k.saturating_sub(LOOKBACK)..k).filter(|&j| steps[j].is_action()) {
        buf[len] = j;
        len += 1;
    }
    let earlier = &buf[..len];
    let recent_from = earlier.len().saturating_sub(recent);
    let mut best = Stale {
        class: Class::Fresh,
        weight: 0,
    };
    // One more variant of a sweep that keeps printing the same report: stale, but no
    // evidence of a loop, whatever older steps it also repeats.
    if earlier
        .last()
        .is_some_and(|&p| same_report_sweep(&steps[p], s))
    {
        return Stale {
            class: Class::Echo,
            weight: 0,
        };
    }
    for (n, &j) in earlier.iter().enumerate() {
        let o = &steps[j];
        let is_recent = n >= recent_from;
        let same_act = o.act == s.act;
        let same_shape = o.res == s.res || (o.rshape != 0 && o.rshape == s.rshape);
        let same_error = s.err
            && o.err
            && (same_shape
                || (s.ekey != 0
                    && s.ekey == o.ekey
                    && (same_act || (o.names == s.names && near(o.asim, s.asim, NEAR.args)))));
        let consecutive = n + 1 == earlier.len();
        let candidates = [
            // A short output seen again after other steps is what polling looks like.
            (
                is_recent && same_act && o.res == s.res,
                Class::Same,
                if consecutive || s.rsize >= TRIVIAL || s.err {
                    4
                } else {
                    2
                },
            ),
            // Re-run right after itself and only numbers moved in a substantial output
            // (a file that grows by the same block: the same view but its line count).
            // With steps between, an output that changed is progress: a test re-run
            // after an edit, a status polled.
            (
                consecutive && same_act && o.rshape != 0 && o.rshape == s.rshape,
                Class::SameNear,
                if s.rsize >= TRIVIAL { 4 } else { 2 },
            ),
            (same_error, Class::Error, error_weight(o, s, is_recent)),
            // A silent command (an edit, a `cd`) answered with the same empty output as
            // another is not a repeat: it may well have changed something. (Failures
            // without a message are weighed as errors.)
            (
                is_recent && same_shape && s.rsize >= MESSAGE,
                Class::Echo,
                echo_weight(o, s),
            ),
            (
                s.err
                    && o.names == s.names
                    && near(o.asim, s.asim, NEAR.args)
                    && near(o.rsim, s.rsim, NEAR.result),
                Class::NearFailure,
                2,
            ),
        ];
        for (applies, class, weight) in candidates {
            if applies && weight > best.weight {
                best = Stale { class, weight };
            }
        }
    }
    if best.class == Class::Fresh && !s.err && s.rsize < TINY {
        best.class = Class::Neutral;
    }
    best
}
