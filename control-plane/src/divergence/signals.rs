//! The loop patterns, evaluated on the step ring after each turn.
//!
//! Every pattern requires a step observed in this call to take part: the detector reacts
//! to a loop that is happening now, never to one the agent already left. Action patterns look at
//! action steps only, so text-only turns and user messages between repeats (a simulated
//! user answering, the agent chatting) neither reset nor pad the counts.

use super::stale::{self, Class, Stale};
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
    let recent = t.cycle_max_period as usize;
    // Action steps with their staleness, neutral ones (think, calculate) left out.
    let acts: Vec<(usize, Stale)> = (0..steps.len())
        .filter(|&i| steps[i].is_action())
        .map(|i| (i, stale::classify(steps, i, recent)))
        .filter(|(_, c)| c.class != Class::Neutral)
        .collect();
    if acts.last().is_some_and(|&(a, _)| a >= fresh_from) {
        let found = same_in_a_row(steps, &acts, t)
            .or_else(|| cycle(steps, &acts))
            .or_else(|| stale_run(steps, &acts, t))
            .or_else(|| recurring(steps, &acts, t))
            .or_else(|| retried_failure(steps, &acts));
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

fn hit(pattern: Pattern, steps: &[usize]) -> Option<Hit> {
    Some(Hit {
        pattern,
        steps: steps.to_vec(),
    })
}

/// The last `repeated_action - 1` action steps each fully repeat an earlier one (the
/// same action and result, a near-identical re-run, the same failure of the same call,
/// the same rejection), and the repeats tell nothing new: a failure, a trivial output, or
/// the agent saying the same thing each time. Re-reading a substantial output three times
/// is allowed.
fn same_in_a_row(steps: &[Step], acts: &[(usize, Stale)], t: &Thresholds) -> Option<Hit> {
    let n = t.repeated_action as usize;
    let run = acts.get(acts.len().checked_sub(n)?..)?;
    if !run[1..].iter().all(|(_, c)| c.weight >= 4) {
        return None;
    }
    let last = &steps[run[n - 1].0];
    let prose_repeats = run
        .windows(2)
        .all(|w| stale::near_prose(&steps[w[0].0], &steps[w[1].0]));
    let idx: Vec<usize> = run.iter().map(|&(i, _)| i).collect();
    let same_action = run.iter().all(|&(i, _)| steps[i].act == last.act);
    if last.err {
        hit(
            if same_action {
                Pattern::RepeatedFailure
            } else {
                Pattern::RepeatedError
            },
            &idx,
        )
    } else if last.rsize < stale::TRIVIAL || prose_repeats {
        hit(
            if same_action {
                Pattern::RepeatedAction
            } else {
                Pattern::NoProgress
            },
            &idx,
        )
    } else {
        None
    }
}

/// A-B-A-B: the last two action steps each repeat a step of the last few with the same
/// result, and they are different actions (a cycle, not one action re-run).
fn cycle(steps: &[Step], acts: &[(usize, Stale)]) -> Option<Hit> {
    let [.., (a, ca), (b, cb)] = acts else {
        return None;
    };
    // Polling (a status check between waits) cycles over short outputs until they change.
    let substantial = steps[*a].rsize >= stale::TRIVIAL && steps[*b].rsize >= stale::TRIVIAL;
    let cyc = ca.class == Class::Same
        && cb.class == Class::Same
        && steps[*a].act != steps[*b].act
        && substantial;
    if !cyc {
        return None;
    }
    let from = acts.len().saturating_sub(4);
    let idx: Vec<usize> = acts[from..].iter().map(|&(i, _)| i).collect();
    hit(Pattern::Cycle, &idx)
}

/// Stale steps in a row, weighted by how strongly each repeats earlier ones, up to
/// `stale_run` repeats' worth. Named after the evidence that dominates the run.
fn stale_run(steps: &[Step], acts: &[(usize, Stale)], t: &Thresholds) -> Option<Hit> {
    let need = t.stale_run.saturating_mul(4);
    let (mut score, mut idx) = (0u32, Vec::new());
    let (mut same, mut errors) = (0u32, 0u32);
    for (pos, &(i, c)) in acts.iter().enumerate().rev() {
        if c.class == Class::Fresh {
            break;
        }
        score += c.weight;
        idx.push(i);
        match c.class {
            Class::Same | Class::SameNear => same += c.weight,
            Class::Error | Class::NearFailure => errors += c.weight,
            _ => {}
        }
        if score >= need {
            // The step the run started repeating is evidence too.
            if let Some(&(first, _)) = pos.checked_sub(1).and_then(|p| acts.get(p)) {
                idx.push(first);
            }
            idx.reverse();
            let failing = idx.iter().filter(|&&i| steps[i].err).count() * 2 > idx.len();
            let pattern = if same >= errors && same * 2 >= score {
                if failing {
                    Pattern::RepeatedFailure
                } else {
                    Pattern::RepeatedAction
                }
            } else if errors * 2 >= score || failing {
                Pattern::RepeatedError
            } else {
                Pattern::NoProgress
            };
            return hit(pattern, &idx);
        }
    }
    None
}

/// The latest action returned the same result as at least twice before among the last
/// few action steps, with other steps between (edits that change nothing the action
/// observes): whatever the agent does between, the observation stays the same. A short
/// successful output coming back (a status between waits) is polling, not this.
fn recurring(steps: &[Step], acts: &[(usize, Stale)], t: &Thresholds) -> Option<Hit> {
    let &(last_i, _) = acts.last()?;
    let last = &steps[last_i];
    if !last.err && last.rsize < stale::TRIVIAL {
        return None;
    }
    let window = &acts[acts
        .len()
        .saturating_sub(2 * t.cycle_max_period as usize - 2)..];
    let idx: Vec<usize> = window
        .iter()
        .map(|&(i, _)| i)
        .filter(|&i| steps[i].act == last.act && steps[i].res == last.res)
        .collect();
    let consecutive = acts.len() >= 3
        && acts[acts.len() - 3..]
            .iter()
            .all(|&(i, _)| steps[i].act == last.act);
    if idx.len() >= 3 && !consecutive {
        hit(Pattern::NoProgress, &idx)
    } else {
        None
    }
}

/// Failing attempts of one tool or program in a row, all with the same error, and the
/// latest re-sends a call that already failed the same way among them: the agent varied the
/// arguments, got the same error, and went back to a guess it already knew fails (a
/// payment total re-guessed while the customer keeps confirming in between). Neutral
/// steps (`think`, `calculate`) and chat with the user between the attempts are not
/// progress; any other action is. A fresh variant each time (one payment method after
/// another) never returns to a known failure, so it stays quiet.
fn retried_failure(steps: &[Step], acts: &[(usize, Stale)]) -> Option<Hit> {
    let &(last_i, _) = acts.last()?;
    let s = &steps[last_i];
    if !s.err {
        return None;
    }
    let same_failure = |o: &Step| {
        o.err
            && o.names == s.names
            && ((s.ekey != 0 && o.ekey == s.ekey) || (s.rshape != 0 && o.rshape == s.rshape))
    };
    let mut idx = vec![last_i];
    let mut returned = false;
    for &(i, _) in acts[..acts.len() - 1].iter().rev() {
        let o = &steps[i];
        if !same_failure(o) {
            break;
        }
        idx.push(i);
        // The error's numbers may move (a bash line counter): the signature decides.
        returned |= o.act == s.act;
    }
    if returned && idx.len() >= RETRIED_FAILURES {
        idx.reverse();
        hit(Pattern::RepeatedError, &idx)
    } else {
        None
    }
}

/// Failing attempts in a row, one of them a repeat of an earlier one, before
/// [`retried_failure`] calls it a loop: the first try, a variant, the known failure again.
const RETRIED_FAILURES: usize = 3;

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
