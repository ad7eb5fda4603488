//! Runs of a fingerprinted conversation. Two runs of the same task share an
//! opening (system prompt + first user message), so the opening alone would
//! merge them into one conversation. A request continues a run only when its
//! history extends what that run last saw; the same history again is a retry
//! of the run's last turn (`repeat`); anything else is a new run with its own
//! conversation id.
//!
//! The runs live in this sidecar's memory (an agent talks to the sidecar on
//! its host), bounded: past [`MAX_OPENINGS`] openings the oldest half is
//! forgotten, and an opening keeps its [`MAX_RUNS`] latest runs. A run this
//! sidecar does not know (after a restart) starts afresh.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

use super::Identity;
use keel::pb::SessionSource;

/// Most openings remembered.
pub const MAX_OPENINGS: usize = 65_536;
/// Most runs remembered per opening (the latest).
pub const MAX_RUNS: usize = 8;

/// What a run last saw.
#[derive(Clone, Copy)]
struct Run {
    /// Distinguishes the run's conversation id from its opening's others.
    tag: u64,
    /// Messages in its latest request, and the hash of them.
    len: usize,
    hash: u128,
    /// Order of last use, for forgetting the oldest openings.
    used: u64,
}

#[derive(Default)]
struct Inner {
    openings: HashMap<String, Vec<Run>>,
    clock: u64,
}

/// The runs of every fingerprinted conversation this sidecar has seen.
#[derive(Default)]
pub struct Runs {
    inner: Mutex<Inner>,
}

/// A request placed in a run.
pub struct Placed {
    pub identity: Identity,
    /// The same history as the run's last request: a retry of that turn.
    pub repeat: bool,
    /// What the run sees once the request is decided (see [`Runs::commit`]).
    pub step: Option<Step>,
}

/// A request's place in its run, to remember once it was decided.
pub struct Step {
    opening: String,
    tag: u64,
    len: usize,
    hash: u128,
}

impl Placed {
    /// An identity that is no step of a run.
    pub fn as_is(identity: Identity) -> Self {
        Self {
            identity,
            repeat: false,
            step: None,
        }
    }
}

impl Runs {
    /// Places a request whose identity came from its opening fingerprint in
    /// a run (other identities come back as they are). Nothing is
    /// remembered until [`Runs::commit`]: a request the control plane
    /// refused is no step of its run, so its retry is not a repeat.
    /// `messages` are the [`message_hash`]es of the request's history.
    pub fn place(&self, identity: Identity, messages: impl IntoIterator<Item = u128>) -> Placed {
        if identity.source != SessionSource::Fingerprint {
            return Placed::as_is(identity);
        }
        let prefixes = prefix_hashes(messages);
        let Some(&hash) = prefixes.last() else {
            return Placed::as_is(identity);
        };
        let len = prefixes.len();
        let found = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            // Of the runs whose history this one extends, the one that saw
            // the most (the latest on a tie): two runs can share a prefix
            // beyond their opening.
            inner
                .openings
                .get(&identity.conversation_id)
                .and_then(|runs| {
                    runs.iter()
                        .enumerate()
                        .filter(|(_, r)| r.len > 0 && r.len <= len && prefixes[r.len - 1] == r.hash)
                        .max_by_key(|(i, r)| (r.len, *i))
                        .map(|(_, r)| (r.tag, r.len == len))
                })
        };
        // Every new run gets a tag of its own, so that a run started after
        // a restart never continues an older one.
        let (tag, repeat) = found.unwrap_or_else(|| (fresh_tag(), false));
        let mut identity = identity;
        let opening = std::mem::take(&mut identity.conversation_id);
        identity.conversation_id = format!("{opening}-r{tag:016x}");
        Placed {
            identity,
            repeat,
            step: Some(Step {
                opening,
                tag,
                len,
                hash,
            }),
        }
    }

    /// Remembers a decided request as the latest step of its run.
    pub fn commit(&self, step: Step) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        inner.clock += 1;
        let used = inner.clock;
        if inner.openings.len() >= MAX_OPENINGS && !inner.openings.contains_key(&step.opening) {
            forget_oldest_half(&mut inner.openings);
        }
        let runs = inner.openings.entry(step.opening).or_default();
        match runs.iter_mut().find(|r| r.tag == step.tag) {
            Some(run) => {
                run.len = step.len;
                run.hash = step.hash;
                run.used = used;
            }
            None => {
                if runs.len() >= MAX_RUNS {
                    runs.remove(0);
                }
                runs.push(Run {
                    tag: step.tag,
                    len: step.len,
                    hash: step.hash,
                    used,
                });
            }
        }
    }
}

/// A tag unlikely to repeat across restarts of this sidecar and its peers.
fn fresh_tag() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tag = xxhash_rust::xxh3::xxh3_64(
        &[nanos.to_le_bytes(), u128::from(counter).to_le_bytes()].concat(),
    );
    tag.max(1)
}

fn forget_oldest_half(openings: &mut HashMap<String, Vec<Run>>) {
    let mut ages: Vec<u64> = openings
        .values()
        .map(|runs| runs.iter().map(|r| r.used).max().unwrap_or(0))
        .collect();
    let mid = ages.len() / 2;
    let (_, &mut cut, _) = ages.select_nth_unstable(mid);
    openings.retain(|_, runs| runs.iter().map(|r| r.used).max().unwrap_or(0) > cut);
}

/// The hash of messages `0..=i` for every `i`, from each message's
/// [`message_hash`].
fn prefix_hashes(messages: impl IntoIterator<Item = u128>) -> Vec<u128> {
    let mut hasher = Xxh3::new();
    messages
        .into_iter()
        .map(|m| {
            hasher.update(&m.to_le_bytes());
            hasher.digest128()
        })
        .collect()
}

/// What a message says (role, text, tool calls and results), not where a
/// harness put its cache markers.
pub(crate) fn message_hash(v: &Value) -> u128 {
    let mut hasher = Xxh3::new();
    hash_value(v, &mut hasher);
    hasher.digest128()
}

fn hash_value(v: &Value, h: &mut Xxh3) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => h.update(&i.to_le_bytes()),
                (None, Some(f)) => h.update(&f.to_bits().to_le_bytes()),
                (None, None) => {}
            }
        }
        Value::String(s) => {
            h.update(b"\"");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            items.iter().for_each(|i| hash_value(i, h));
            h.update(b"]");
        }
        Value::Object(o) => {
            h.update(b"{");
            for (k, v) in o {
                if k == "cache_control" {
                    continue;
                }
                h.update(&(k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                hash_value(v, h);
            }
            h.update(b"}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{Identity, Runs, message_hash};
    use keel::pb::SessionSource;

    fn hashes(messages: Value) -> Vec<u128> {
        messages
            .as_array()
            .unwrap()
            .iter()
            .map(message_hash)
            .collect()
    }

    /// Places a request and remembers it as decided.
    fn place(runs: &Runs, messages: Value) -> (String, bool) {
        let identity = Identity {
            conversation_id: "fp-opening".into(),
            source: SessionSource::Fingerprint,
        };
        let p = runs.place(identity, hashes(messages));
        runs.commit(p.step.expect("a fingerprinted request is a step"));
        (p.identity.conversation_id, p.repeat)
    }

    #[test]
    fn a_refused_request_is_no_step() {
        let runs = Runs::default();
        let t1 = json!([{"role": "user", "content": "task"}]);
        let identity = || Identity {
            conversation_id: "fp-opening".into(),
            source: SessionSource::Fingerprint,
        };
        // Placed but never committed (the control plane refused it).
        let first = runs.place(identity(), hashes(t1.clone()));
        let again = runs.place(identity(), hashes(t1));
        assert!(!again.repeat);
        assert_ne!(
            first.identity.conversation_id,
            again.identity.conversation_id
        );
    }

    #[test]
    fn a_run_continues_while_its_history_grows() {
        let runs = Runs::default();
        let t1 = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]);
        let t2 = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": "step 1"}, {"role": "user", "content": "out 1"}]);
        let (a, r) = place(&runs, t1.clone());
        assert!(a.starts_with("fp-opening-r") && !r, "{a}");
        // A retry of the same turn: the same conversation, flagged.
        assert_eq!(place(&runs, t1.clone()), (a.clone(), true));
        assert_eq!(place(&runs, t2.clone()), (a.clone(), false));
        // A rerun of the task starts from the opening again: a new run.
        let (b, r) = place(&runs, t1.clone());
        assert!(b.starts_with("fp-opening-r") && b != a && !r, "{b}");
        // Each run continues on its own (a rerun's model says other things).
        let b2 = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": "step 1, again"}, {"role": "user", "content": "out 1"}]);
        assert_eq!(place(&runs, b2), (b.clone(), false));
        let a3 = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": "step 1"}, {"role": "user", "content": "out 1"},
            {"role": "assistant", "content": "step 2"}]);
        assert_eq!(place(&runs, a3), (a, false));
    }

    #[test]
    fn of_runs_sharing_a_history_the_longest_match_wins() {
        let runs = Runs::default();
        let turn = |n: usize| {
            let mut m = vec![json!({"role": "user", "content": "task"})];
            for i in 1..n {
                m.push(json!({"role": "assistant", "content": format!("step {i}")}));
                m.push(json!({"role": "user", "content": format!("out {i}")}));
            }
            Value::Array(m)
        };
        let (a, _) = place(&runs, turn(1));
        place(&runs, turn(2));
        place(&runs, turn(3));
        let (b, _) = place(&runs, turn(1));
        assert_ne!(a, b);
        // Both runs' histories are prefixes of turn 4; run a saw more of it.
        assert_eq!(place(&runs, turn(4)), (a, false));
    }

    #[test]
    fn cache_markers_do_not_make_a_new_run() {
        let runs = Runs::default();
        let t1 = json!([{"role": "user", "content": [{"type": "text", "text": "task",
            "cache_control": {"type": "ephemeral"}}]}]);
        let t2 = json!([{"role": "user", "content": [{"type": "text", "text": "task"}]},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]);
        let (a, _) = place(&runs, t1);
        assert_eq!(place(&runs, t2), (a, false));
    }

    #[test]
    fn other_identities_are_untouched() {
        let runs = Runs::default();
        let identity = Identity {
            conversation_id: "abc".into(),
            source: SessionSource::Header,
        };
        let p = runs.place(identity, hashes(json!([{"role": "user", "content": "x"}])));
        assert_eq!(p.identity.conversation_id, "abc");
        assert!(!p.repeat);
    }
}
