//! The loop patterns, evaluated on the step ring after each turn.
//!
//! Every pattern requires a step observed in this call to take part: the detector reacts
//! to a loop that is happening now, never to one the agent already left. Action patterns look at
//! action steps only, so text-only turns and user messages between repeats (a simulated
//! user answering, the agent chatting) neither reset nor pad the counts.

use super::state::Step;
use super::{Pattern, Thresholds};

/// A detected pattern and the positions (in the step ring) of the steps involved.
pub(crate) struct Hit {
    pub pattern: Pattern,
    pub steps: Vec<usize>,
}

/// Checks the patterns from the most specific to the most general. `fresh_from` is the
/// first step position new or changed in this call: action patterns need the latest
/// action step to be fresh (chat after it in the same window does not hide it), the text
/// patterns need the latest step itself to take part.
pub(crate) fn detect(steps: &[Step], fresh_from: usize, t: &Thresholds) -> Option<Hit> {
    steps.len().checked_sub(1)?;
    let acts: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].is_action()).collect();
    if acts.last().is_some_and(|&a| a >= fresh_from) {
        let found = repeated_failure(steps, &acts, t.repeated_failure)
            .or_else(|| repeated_action(steps, &acts, t.repeated_action))
            .or_else(|| repeated_error(steps, &acts, t.repeated_error))
            .or_else(|| cycle(steps, &acts, t));
        if found.is_some() {
            return found;
        }
    }
    repeated_text(steps, t).or_else(|| no_progress(steps, t.no_progress))
}

/// Whether step `i` brought an action/result pair not seen earlier in the ring. Polling a
/// job whose status moves, or re-running tests whose output changed, is progress.
pub(crate) fn is_novel(steps: &[Step], i: usize) -> bool {
    let s = &steps[i];
    s.is_action()
        && !steps[..i]
            .iter()
            .any(|o| o.act == s.act && o.res == s.res && o.err == s.err)
}

/// The last `n` action steps, if there are that many.
fn tail(acts: &[usize], n: u32) -> Option<&[usize]> {
    let n = n as usize;
    (n >= 2 && acts.len() >= n).then(|| &acts[acts.len() - n..])
}

fn hit(pattern: Pattern, steps: &[usize]) -> Option<Hit> {
    Some(Hit {
        pattern,
        steps: steps.to_vec(),
    })
}

fn repeated_failure(steps: &[Step], acts: &[usize], n: u32) -> Option<Hit> {
    let run = tail(acts, n)?;
    let first = &steps[run[0]];
    // Without an error line, the whole result stands in as the signature.
    let sig = |s: &Step| if s.ekey != 0 { s.ekey } else { s.res };
    let all = run
        .iter()
        .map(|&i| &steps[i])
        .all(|s| s.err && s.act == first.act && sig(s) == sig(first));
    if all {
        hit(Pattern::RepeatedFailure, run)
    } else {
        None
    }
}

fn repeated_action(steps: &[Step], acts: &[usize], n: u32) -> Option<Hit> {
    let run = tail(acts, n)?;
    let first = &steps[run[0]];
    let all = run
        .iter()
        .map(|&i| &steps[i])
        .all(|s| !s.err && s.act == first.act && s.res == first.res);
    if all {
        hit(Pattern::RepeatedAction, run)
    } else {
        None
    }
}

fn repeated_error(steps: &[Step], acts: &[usize], n: u32) -> Option<Hit> {
    let run = tail(acts, n)?;
    let first = &steps[run[0]];
    let all = run
        .iter()
        .map(|&i| &steps[i])
        .all(|s| s.err && s.ekey != 0 && s.ekey == first.ekey);
    if all {
        hit(Pattern::RepeatedError, run)
    } else {
        None
    }
}

/// A-B-A-B...: every action step equals the one `p` steps before it, over at least
/// `cycle_repeats` full periods and `cycle_min_steps` steps, with at least two distinct
/// steps in a period (one alone is `repeated_action`).
fn cycle(steps: &[Step], acts: &[usize], t: &Thresholds) -> Option<Hit> {
    let sig = |i: usize| (steps[i].act, steps[i].res, steps[i].err);
    for p in 2..=t.cycle_max_period {
        let need = p.saturating_mul(t.cycle_repeats).max(t.cycle_min_steps);
        let p = p as usize;
        let Some(run) = tail(acts, need) else {
            continue;
        };
        let periodic = (p..run.len()).all(|k| sig(run[k]) == sig(run[k - p]));
        let distinct = (1..p).any(|k| sig(run[k]) != sig(run[0]));
        if periodic && distinct {
            return hit(Pattern::Cycle, run);
        }
    }
    None
}

/// Near-duplicate assistant text since the last step that made progress: re-asking the
/// user, re-explaining, or a monologue. Asking a similar question about each of several
/// records is fine because the action on each record in between is progress.
fn repeated_text(steps: &[Step], t: &Thresholds) -> Option<Hit> {
    let last = steps.len() - 1;
    let s = &steps[last];
    if s.sim == 0 || is_novel(steps, last) {
        return None;
    }
    let mut found = vec![last];
    for j in (0..last).rev().take(t.text_lookback as usize) {
        if is_novel(steps, j) {
            break;
        }
        let o = &steps[j];
        let near =
            o.text == s.text || (o.sim != 0 && (o.sim ^ s.sim).count_ones() <= t.text_max_distance);
        if near && o.act == s.act {
            found.push(j);
        }
    }
    if found.len() >= t.repeated_text as usize {
        found.reverse();
        return hit(Pattern::RepeatedText, &found);
    }
    None
}

/// Many steps without a new action/result pair. Action steps that repeat an earlier pair
/// and text-only steps answered by a word-for-word repeated reply are stale; other
/// text-only steps (talking to the user) are neutral; a novel step ends the run.
fn no_progress(steps: &[Step], n: u32) -> Option<Hit> {
    let mut stale = Vec::new();
    for j in (0..steps.len()).rev() {
        let s = &steps[j];
        let is_stale = if s.is_action() {
            !is_novel(steps, j)
        } else {
            s.reply_rep
        };
        if s.is_action() && !is_stale {
            break;
        }
        if is_stale {
            stale.push(j);
        } else if j == steps.len() - 1 {
            return None;
        }
        if stale.len() >= n as usize {
            stale.reverse();
            return hit(Pattern::NoProgress, &stale);
        }
    }
    None
}
