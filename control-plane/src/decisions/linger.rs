//! What the decision writer has taken off its queue but not yet written.
//! A record is held for up to [`LINGER`] so that its turn's result (from
//! `Report`) usually joins it first and the record is written once,
//! complete, instead of written and then read, changed and written again.
//! Records ready to go and results for records already written wait for
//! the next write, at most [`WRITE_EVERY`] later; one write takes all of
//! them, off the runtime's workers.

use std::collections::{HashMap, VecDeque};

use tokio::time::{Duration, Instant};

use crate::store::{DecisionEntry, SessionKey, TurnResult};

/// Longest a record waits for its result in memory.
pub const LINGER: Duration = Duration::from_millis(500);

/// Longest anything taken off the queue waits for a write.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);

/// Most records held; past it the oldest is made ready at once.
const MAX_HELD: usize = 8192;

/// A result for a record already written (or never recorded).
pub struct Completion {
    pub key: SessionKey,
    pub turn: u32,
    pub decision_id: String,
    pub result: TurnResult,
}

struct HeldRecord {
    key: SessionKey,
    entry: DecisionEntry,
    due: Instant,
}

/// Where an unwritten record with a decision id is.
#[derive(Clone, Copy)]
enum At {
    /// Sequence number in the held queue.
    Held(u64),
    /// Index in `ready`.
    Ready(usize),
}

/// Records and results not yet written.
#[derive(Default)]
pub struct Unwritten {
    /// Arrival order, so due times grow along it; `None` once a record
    /// left early (its result came). Never starts with `None`.
    held: VecDeque<Option<HeldRecord>>,
    /// Sequence number of `held[0]`.
    first: u64,
    ready: Vec<(SessionKey, DecisionEntry)>,
    completions: Vec<Completion>,
    by_id: HashMap<String, At>,
    /// When the oldest of `ready` and `completions` came.
    waiting_since: Option<Instant>,
}

impl Unwritten {
    /// A record from `Route`: held for its result, or ready if it has one.
    pub fn record(&mut self, key: SessionKey, entry: DecisionEntry, now: Instant) {
        if entry.result.is_some() || entry.decision_id.is_empty() {
            // Nothing to wait for (a turn served while degraded).
            return self.make_ready(key, entry, now);
        }
        if self.held.len() >= MAX_HELD {
            self.release(|_| true, 1, now);
        }
        let seq = self.first + self.held.len() as u64;
        // A repeated id leaves the earlier record to its deadline.
        self.by_id.insert(entry.decision_id.clone(), At::Held(seq));
        self.held.push_back(Some(HeldRecord {
            key,
            entry,
            due: now + LINGER,
        }));
    }

    /// A result from `Report`: joins its record if that is not written yet.
    pub fn complete(&mut self, c: Completion, now: Instant) {
        let matches = |k: &SessionKey, e: &DecisionEntry| *k == c.key && e.turn == c.turn;
        match self.by_id.get(&c.decision_id).copied() {
            Some(At::Held(seq)) => {
                let slot = &mut self.held[(seq - self.first) as usize];
                if let Some(r) = slot.take_if(|r| matches(&r.key, &r.entry)) {
                    self.by_id.remove(&c.decision_id);
                    self.trim();
                    let mut entry = r.entry;
                    entry.result = Some(c.result);
                    return self.make_ready(r.key, entry, now);
                }
            }
            Some(At::Ready(i)) => {
                let (k, e) = &mut self.ready[i];
                if matches(k, e) {
                    e.result = Some(c.result);
                    return;
                }
            }
            None => {}
        }
        self.waiting_since.get_or_insert(now);
        self.completions.push(c);
    }

    /// When the writer must wake up: the oldest held record is due, or
    /// something has waited [`WRITE_EVERY`] for a write.
    pub fn next_wake(&self) -> Option<Instant> {
        let held = self.held.front().and_then(Option::as_ref).map(|r| r.due);
        let waiting = self.waiting_since.map(|t| t + WRITE_EVERY);
        match (held, waiting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a write is due at `now`: the oldest held record is due
    /// (then every record due within [`WRITE_EVERY`] is made ready, so
    /// writes come in batches), something waited long enough, or `enough`
    /// is waiting.
    pub fn write_due(&mut self, now: Instant, enough: usize) -> bool {
        if self.next_wake().is_some_and(|t| t <= now) {
            let horizon = now + WRITE_EVERY;
            self.release(|r| r.due <= horizon, usize::MAX, now);
            return true;
        }
        self.ready.len() + self.completions.len() >= enough
    }

    /// Makes every held record ready.
    pub fn release_all(&mut self, now: Instant) {
        self.release(|_| true, usize::MAX, now);
    }

    /// What to write now: the ready records, then the results of records
    /// written before.
    pub fn take(&mut self) -> (Vec<(SessionKey, DecisionEntry)>, Vec<Completion>) {
        self.by_id.retain(|_, at| matches!(at, At::Held(_)));
        self.waiting_since = None;
        (
            std::mem::take(&mut self.ready),
            std::mem::take(&mut self.completions),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.ready.is_empty() && self.completions.is_empty()
    }

    fn make_ready(&mut self, key: SessionKey, entry: DecisionEntry, now: Instant) {
        if !entry.decision_id.is_empty() {
            // A repeated id keeps pointing at the record it found first.
            self.by_id
                .entry(entry.decision_id.clone())
                .or_insert(At::Ready(self.ready.len()));
        }
        self.waiting_since.get_or_insert(now);
        self.ready.push((key, entry));
    }

    /// Makes up to `most` held records ready from the front while `pred`
    /// holds.
    fn release(&mut self, pred: impl Fn(&HeldRecord) -> bool, most: usize, now: Instant) {
        let mut moved = 0;
        while moved < most
            && let Some(Some(front)) = self.held.front()
            && pred(front)
        {
            let seq = self.first;
            let r = self
                .held
                .pop_front()
                .flatten()
                .expect("front checked above");
            self.first += 1;
            if matches!(self.by_id.get(&r.entry.decision_id), Some(At::Held(s)) if *s == seq) {
                self.by_id.remove(&r.entry.decision_id);
            }
            self.make_ready(r.key, r.entry, now);
            moved += 1;
            self.trim();
        }
    }

    /// Drops records that left early from the front.
    fn trim(&mut self) {
        while let Some(None) = self.held.front() {
            self.held.pop_front();
            self.first += 1;
        }
    }
}
