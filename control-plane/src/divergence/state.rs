//! Per-conversation detector state and the `observe` entry point.

use super::{DivergenceConfig, Escalation, Nudge, ingest, signals};
use keel::fingerprint::{Role, TurnFp};
use serde::{Deserialize, Serialize};

/// Steps kept. Bounds the stored state (a few KB of JSON) and the work per turn; large
/// enough for the longest configured pattern plus history to judge novelty against.
pub(crate) const STEP_CAP: usize = 32;

/// Message digests kept to recognise the overlap with the previous window; must exceed
/// the sidecar's window (40 by default) so the overlap is always found.
pub(crate) const SEEN_CAP: usize = 64;

/// Detector state for one conversation, stored in the session store after every turn.
/// Bounded in size whatever the conversation length.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorState {
    /// Digests of the last observed window, oldest first: dedupe and compaction alignment.
    pub(crate) seen: Vec<Seen>,
    /// Recent steps, oldest first.
    pub(crate) steps: Vec<Step>,
    /// Assistant turns observed over the whole conversation (never decreases).
    pub(crate) step_count: u32,
    /// `step_count` when the last nudge was issued.
    pub(crate) last_nudge_at: Option<u32>,
    /// Nudges since the agent last made progress; drives escalation.
    pub(crate) streak: u32,
    /// Nudges issued over the conversation.
    pub(crate) nudges: u32,
}

/// One observed message, reduced to what dedupe needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// Message index when observed.
    pub i: u32,
    /// Digest of the fingerprint's content (index excluded).
    pub d: u64,
}

/// An assistant turn and what came back to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Step {
    /// Message index of the assistant turn when observed.
    pub turn: u32,
    /// Order-independent hash of the turn's actions; 0 for a text-only turn.
    pub act: u64,
    /// Hash of the results that followed; 0 until they arrive.
    pub res: u64,
    /// Any result was an error.
    pub err: bool,
    /// Error signature of the failed results; 0 when none was found.
    pub ekey: u64,
    /// Prose hash and simhash.
    pub text: u64,
    pub sim: u64,
    /// Hash of a substantive user reply that followed, 0 if none.
    pub reply: u64,
    /// That reply repeats an earlier one word for word (environment or user stuck too).
    pub reply_rep: bool,
    /// Order-independent hash of the actions' names (tools or programs).
    pub names: u64,
    /// Simhash of the action texts (near-identical arguments).
    pub asim: u64,
    /// Simhash of the first result's words, digits folded (near-identical outputs).
    pub rsim: u64,
    /// Hash of the results with digits folded (the same output but for a number).
    pub rshape: u64,
    /// Size of the results, normalized, in bytes.
    pub rsize: u32,
}

impl Step {
    /// Has actions and their outcome is known.
    pub fn is_action(&self) -> bool {
        self.act != 0 && (self.res != 0 || self.err)
    }
}

impl DetectorState {
    /// Consumes the tail window of fingerprints for the turn being routed and returns a
    /// nudge when a loop is current. Turns already seen are skipped; a rewritten history
    /// (compaction) is realigned by content so nothing is counted twice. Never panics.
    pub fn observe(&mut self, fps: &[TurnFp], cfg: &DivergenceConfig) -> Option<Nudge> {
        if !cfg.enabled || fps.is_empty() {
            return None;
        }
        let fresh = ingest::new_turns(&self.seen, fps);
        let touched = self.absorb(fresh);
        self.remember_window(fps);
        if touched == 0 {
            return None;
        }
        let fresh_from = self.steps.len().saturating_sub(touched);
        let hit = signals::detect(&self.steps, fresh_from, &cfg.thresholds);
        if !self.steps.is_empty() && signals::is_novel(&self.steps, self.steps.len() - 1) {
            self.streak = 0;
        }
        let hit = hit?;
        if let Some(at) = self.last_nudge_at
            && self.step_count < at.saturating_add(cfg.backoff_turns)
        {
            return None;
        }
        self.last_nudge_at = Some(self.step_count);
        self.streak = self.streak.saturating_add(1);
        self.nudges = self.nudges.saturating_add(1);
        let escalate = self.escalation(cfg);
        let turns: Vec<u32> = hit
            .steps
            .iter()
            .filter_map(|&i| self.steps.get(i))
            .map(|s| s.turn)
            .collect();
        let message = cfg
            .messages
            .for_pattern(hit.pattern)
            .replace("{count}", &turns.len().to_string())
            .replace("{turns}", &list(&turns));
        Some(Nudge {
            pattern: hit.pattern,
            turns,
            message,
            escalate,
        })
    }

    /// The escalation in force for this conversation: `cfg.escalation` while more than
    /// `escalate_after_nudges` nudges went unheeded (no progress since), else `Off`. Lets
    /// [`Escalation::StrongerModel`] last for the next turns, not only the nudged one.
    pub fn escalation(&self, cfg: &DivergenceConfig) -> Escalation {
        if cfg.enabled && self.streak > cfg.escalate_after_nudges {
            cfg.escalation
        } else {
            Escalation::Off
        }
    }

    /// One line per step in the ring: turn, staleness class and weight, error flag and
    /// result size. A development aid (the evaluator's `--trace`), not a stable format.
    #[doc(hidden)]
    pub fn trace(&self, cfg: &DivergenceConfig) -> Vec<String> {
        let recent = cfg.thresholds.cycle_max_period as usize;
        (0..self.steps.len())
            .filter(|&i| self.steps[i].is_action())
            .map(|i| {
                let s = &self.steps[i];
                let c = super::stale::classify(&self.steps, i, recent);
                format!(
                    "{}:{:?}{}{}/{}",
                    s.turn,
                    c.class,
                    c.weight,
                    if s.err { "e" } else { "" },
                    s.rsize
                )
            })
            .collect()
    }

    /// Nudges issued over the conversation.
    pub fn nudges(&self) -> u32 {
        self.nudges
    }

    /// Assistant turns observed over the conversation.
    pub fn steps_observed(&self) -> u32 {
        self.step_count
    }

    /// Folds new fingerprints into steps. Returns how many steps at the end of the ring
    /// are new or changed (0: nothing the signals look at changed).
    fn absorb(&mut self, fps: &[TurnFp]) -> usize {
        let mut pushed = 0usize;
        let mut touched_old = false;
        for fp in fps {
            match fp.role {
                Role::Assistant => {
                    if self.steps.len() >= STEP_CAP {
                        self.steps.remove(0);
                    }
                    self.steps.push(Step {
                        turn: fp.index,
                        act: ingest::action_key(&fp.action_hashes),
                        names: ingest::action_key(&fp.action_name_hashes),
                        asim: fp.action_simhash,
                        text: fp.text_hash,
                        sim: fp.text_simhash,
                        ..Step::default()
                    });
                    self.step_count = self.step_count.saturating_add(1);
                    pushed += 1;
                }
                Role::ToolResult => {
                    if let Some(s) = self.steps.last_mut() {
                        s.res = ingest::fold(s.res, fp.result_hash.max(1));
                        s.rshape = ingest::fold(s.rshape, fp.result_shape_hash.max(1));
                        if s.rsim == 0 {
                            s.rsim = fp.result_simhash;
                        }
                        s.rsize = s.rsize.saturating_add(fp.result_size);
                        if fp.is_error {
                            s.err = true;
                            if fp.error_hash != 0 {
                                s.ekey = ingest::fold(s.ekey, fp.error_hash);
                            }
                        }
                        touched_old |= pushed == 0;
                    }
                }
                Role::User => {
                    // Short replies ("yes", "ok") repeat legitimately; only substantive
                    // text (it has a simhash) is tracked.
                    if fp.text_simhash != 0 && fp.text_hash != 0 {
                        let n = self.steps.len();
                        let rep = self.steps[..n.saturating_sub(1)]
                            .iter()
                            .any(|o| o.reply == fp.text_hash);
                        if let Some(s) = self.steps.last_mut() {
                            s.reply = fp.text_hash;
                            s.reply_rep = rep;
                            touched_old |= pushed == 0;
                        }
                    }
                }
            }
        }
        (pushed + usize::from(touched_old)).min(self.steps.len())
    }

    fn remember_window(&mut self, fps: &[TurnFp]) {
        let start = fps.len().saturating_sub(SEEN_CAP);
        self.seen.clear();
        self.seen.extend(fps[start..].iter().map(|f| Seen {
            i: f.index,
            d: ingest::digest(f),
        }));
    }
}

/// `11, 13 and 15`.
fn list(turns: &[u32]) -> String {
    match turns {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(u32::to_string).collect();
            format!("{} and {last}", init.join(", "))
        }
    }
}
